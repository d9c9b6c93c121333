"""Headless RLHF Studio: the same engine as the browser app, from a terminal.

python -m rlhf_studio data check FILE [--stage sft|rm|dpo|kto|ppo] [--json]
python -m rlhf_studio data import FILE --name NAME
python -m rlhf_studio prepare-model          # convert the bundled model once
python -m rlhf_studio train CONFIG.yaml [--run-dir DIR] [--resume]
python -m rlhf_studio runs list|show ID|stop ID|delete ID
python -m rlhf_studio export ID [--out DIR] [--zip] [--push REPO_ID] [--public]
python -m rlhf_studio eval rm RM_RUN [--data NAME]
python -m rlhf_studio eval winrate RUN --baseline RUN|base --judge RM_RUN --prompts NAME
python -m rlhf_studio report RUN [RUN ...] [--json|--csv]
"""

from __future__ import annotations

import argparse
import sys

from rlhf_studio.cli_export import add_export_command
from rlhf_studio.cli_runs import add_runs_commands
from rlhf_studio.data.cli import add_data_commands
from rlhf_studio.evaluation.cli import add_eval_commands
from rlhf_studio.models import BUNDLED_MODEL, ModelError, ensure_bundled_model
from rlhf_studio.training_cli import add_train_command
from rlhf_studio.workspace import Workspace


def prepare_model(args: argparse.Namespace) -> int:
    def report(fraction: float, desc: str) -> None:
        print(f"[{fraction:4.0%}] {desc}", flush=True)

    try:
        folder = ensure_bundled_model(Workspace.from_env(), report)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{BUNDLED_MODEL} is ready in {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlhf_studio", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_data_commands(commands)
    add_train_command(commands)
    add_runs_commands(commands)
    add_export_command(commands)
    add_eval_commands(commands)
    prepare = commands.add_parser(
        "prepare-model", help="convert the bundled model to a safetensors cache once"
    )
    prepare.set_defaults(func=prepare_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
