"""The `train` command: train one stage from a config file, in this process (rlhf_studio.runner.child).

python -m rlhf_studio train CONFIG.yaml                  # a terminal: makes a new run folder
python -m rlhf_studio train RUN/config.yaml --run-dir RUN [--resume]      # what the job runner starts
accelerate launch --num_processes 2 -m rlhf_studio train CONFIG.yaml     # several processes, one run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf_studio.runner.child import TrainRequest, train


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train one stage from a config file into a run folder")
    parser.add_argument("config", type=Path, help="job config (YAML), e.g. a run's config.yaml")
    parser.add_argument("--run-dir", type=Path, help="use this run folder instead of making a new one")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.set_defaults(func=train_command)


def train_command(args: argparse.Namespace) -> int:
    return train(TrainRequest(args.config, args.run_dir, args.resume))
