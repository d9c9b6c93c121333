"""RLHF Studio in the browser: `python app.py [--host 127.0.0.1] [--port 7860] [--trust-remote-code]`."""

from __future__ import annotations

import argparse
import os

from rlhf_studio.models import TRUST_REMOTE_CODE_ENV
from rlhf_studio.ui import build_app, launch_options
from rlhf_studio.workspace import Workspace


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("RLHF_STUDIO_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("RLHF_STUDIO_PORT", "7860")))
    parser.add_argument(
        "--max-upload-mb", type=int, default=int(os.environ.get("RLHF_STUDIO_MAX_UPLOAD_MB", "500"))
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model folders whose config asks to run their own Python code (off by default)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    if args.trust_remote_code:
        os.environ[TRUST_REMOTE_CODE_ENV] = "1"  # inherited by training processes
    studio = build_app(Workspace.from_env())
    studio.launch(**launch_options(args.host, args.port, args.max_upload_mb))
