"""`python -m rlhf_studio ...`: the command line (rlhf_studio/cli)."""

import sys

from rlhf_studio.cli import main

if __name__ == "__main__":
    sys.exit(main())
