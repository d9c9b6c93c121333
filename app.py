"""RLHF Studio in the browser: `python app.py [--host 127.0.0.1] [--port 7860] [--trust-remote-code]
[--allow-reward-code]`.

Reachable beyond this computer (another --host, or as a Hugging Face Space) it needs a login: set
RLHF_STUDIO_USERNAME and RLHF_STUDIO_PASSWORD (or RLHF_STUDIO_USERS_FILE); see rlhf_studio/ui/access.py.

--allow-reward-code lets GRPO / RLOO runs load a Python reward file, which executes that file with the
studio's rights in the training process: UNSAFE with a file you did not write or read yourself (see
rlhf_studio/rewards.py). Off by default.
"""

from __future__ import annotations

import argparse
import os
import sys

from rlhf_studio.models import TRUST_REMOTE_CODE_ENV
from rlhf_studio.rewards import ALLOW_REWARD_CODE_ENV
from rlhf_studio.ui import build_app, launch_options
from rlhf_studio.ui.access import LOGIN_REQUIRED_ENV, AccessError, access_policy
from rlhf_studio.workspace import Workspace, on_space


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    # A Space is reached only through its proxy, which needs the app on every interface of its container.
    default_host = "0.0.0.0" if on_space(os.environ) else "127.0.0.1"
    parser.add_argument("--host", default=os.environ.get("RLHF_STUDIO_HOST", default_host))
    parser.add_argument("--port", type=int, default=int(os.environ.get("RLHF_STUDIO_PORT", "7860")))
    parser.add_argument(
        "--max-upload-mb", type=int, default=int(os.environ.get("RLHF_STUDIO_MAX_UPLOAD_MB", "500"))
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model folders whose config asks to run their own Python code (off by default)",
    )
    parser.add_argument(
        "--allow-reward-code",
        action="store_true",
        help="UNSAFE with untrusted files: let GRPO / RLOO runs load and execute Python reward files "
        "(off by default)",
    )
    parser.add_argument(
        "--no-login",
        action="store_true",
        default=os.environ.get("RLHF_STUDIO_NO_LOGIN") == "1",
        help="UNSAFE: no login even when reachable beyond this computer (anyone may train, delete, export)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    try:
        access = access_policy(args.host, os.environ, no_login=args.no_login)
    except AccessError as error:
        sys.exit(f"RLHF Studio did not start. {error}")
    if access.warning:
        print(f"WARNING: {access.warning}", file=sys.stderr)
    os.environ[LOGIN_REQUIRED_ENV] = "1" if access.login_required else "0"  # read by every guarded handler
    if args.trust_remote_code:
        os.environ[TRUST_REMOTE_CODE_ENV] = "1"  # inherited by training processes
    if args.allow_reward_code:
        os.environ[ALLOW_REWARD_CODE_ENV] = "1"  # inherited by training processes, which load the files
    studio = build_app(Workspace.from_env())
    studio.launch(**launch_options(args.host, args.port, args.max_upload_mb, access))
