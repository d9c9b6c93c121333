"""The `export` command: a finished run as a standalone model, zipped or pushed to the Hugging Face Hub.

    python -m rlhf_studio export RUN_ID                        # runs/<id>/export/<id>/
    python -m rlhf_studio export RUN_ID --out DIR --zip        # DIR/, and DIR.zip next to it
    python -m rlhf_studio export RUN_ID --push me/my-model     # a private repo; --public for a public one

Pushing takes the token from HF_TOKEN or from `hf auth login`; a push that cannot work (offline, no token)
is refused before the export starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlhf_studio.export import ExportError, export_model, hub_token, push_to_hub, zip_export
from rlhf_studio.workspace import Workspace


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="a finished run as a standalone model (adapters merged), zipped or pushed to the Hub"
    )
    parser.add_argument("run_id")
    parser.add_argument(
        "--out", type=Path, help="a new folder for the export (default runs/<id>/export/<id>)"
    )
    parser.add_argument("--zip", action="store_true", help="also write <folder>.zip next to the folder")
    parser.add_argument("--push", metavar="REPO_ID", help="upload to this Hub repo (owner/name)")
    parser.add_argument("--public", action="store_true", help="with --push: a public repo (default private)")
    parser.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    def report(fraction: float, desc: str) -> None:
        print(f"[{fraction:4.0%}] {desc}", flush=True)

    try:
        token = hub_token(args.push) if args.push else None
        folder = export_model(Workspace.from_env(), args.run_id, args.out, report)
        if args.zip:
            print(f"zip: {zip_export(folder)}")
        if args.push:
            print(f"pushed: {push_to_hub(folder, args.push, token, private=not args.public)}")
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
