"""Headless RLHF Studio: the same engine as the browser app, from a terminal.

python -m rlhf_studio data check FILE [--stage STAGE] [--json]
python -m rlhf_studio data import FILE --name NAME
python -m rlhf_studio prepare-model          # convert the bundled model once
python -m rlhf_studio train CONFIG.yaml [--run-dir DIR] [--resume]
python -m rlhf_studio runs list|show ID|stop ID|delete ID
python -m rlhf_studio export ID [--out DIR] [--zip] [--push REPO_ID] [--public]
python -m rlhf_studio eval rm RM_RUN [--data NAME]
python -m rlhf_studio eval winrate RUN --baseline RUN|base --judge RM_RUN --prompts NAME
python -m rlhf_studio report RUN [RUN ...] [--json|--csv]

One module per command group (data, model, train, runs, export, evaluate), each a thin layer over the
engine: it parses arguments, calls the engine function the app calls too, and prints the answer or one
"error: ..." line with a non-zero exit code.
"""

from __future__ import annotations

import argparse

from rlhf_studio.cli.data import add_data_commands
from rlhf_studio.cli.evaluate import add_eval_commands
from rlhf_studio.cli.export import add_export_command
from rlhf_studio.cli.model import add_model_command
from rlhf_studio.cli.runs import add_runs_commands
from rlhf_studio.cli.train import add_train_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlhf_studio", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_data_commands(commands)
    add_train_command(commands)
    add_runs_commands(commands)
    add_export_command(commands)
    add_eval_commands(commands)
    add_model_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
