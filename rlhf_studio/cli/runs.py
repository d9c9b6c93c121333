"""The `runs` command: look at, stop and delete runs from a terminal.

    python -m rlhf_studio runs list [--json]
    python -m rlhf_studio runs show RUN_ID [--json]
    python -m rlhf_studio runs stop RUN_ID      # signals the run's process group, marks it cancelled
    python -m rlhf_studio runs delete RUN_ID

`stop` works on runs started by the app or from another terminal alike.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict

from rlhf_studio.runner.processes import stop_detached
from rlhf_studio.runner.runs import (
    LOG_FILE,
    RunError,
    delete_run,
    lineage,
    list_runs,
    log_tail,
    read_status,
    run_dir,
)
from rlhf_studio.workspace import Workspace

COLUMNS = ("run_id", "stage", "state", "model", "dataset", "parent", "started", "duration", "metric")


def add_runs_commands(subparsers: argparse._SubParsersAction) -> None:
    runs = subparsers.add_parser("runs", help="list, show, stop and delete training runs")
    commands = runs.add_subparsers(dest="runs_command", required=True)
    listing = commands.add_parser("list", help="every run, newest first")
    listing.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    listing.set_defaults(func=list_command)
    show = commands.add_parser("show", help="status, lineage and log tail of one run")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true", help="the status as JSON")
    show.set_defaults(func=show_command)
    stop = commands.add_parser("stop", help="stop a queued or running run (from any terminal)")
    stop.add_argument("run_id")
    stop.set_defaults(func=stop_command)
    delete = commands.add_parser("delete", help="delete one finished run's folder")
    delete.add_argument("run_id")
    delete.set_defaults(func=delete_command)


def list_command(args: argparse.Namespace) -> int:
    rows = list_runs(Workspace.from_env())
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return 0
    table = [COLUMNS] + [
        (
            row.run_id,
            row.stage,
            row.state,
            row.model,
            row.dataset,
            row.parent or "-",
            row.started or "-",
            format_duration(row.duration_s),
            f"{row.metric_name}={row.metric_value:.4g}" if row.metric_name else "-",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def reports_refusals(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A refused run operation (unknown id, still running, ...) prints one line and exits 1, no traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except RunError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    return run


@reports_refusals
def show_command(args: argparse.Namespace) -> int:
    workspace = Workspace.from_env()
    folder = run_dir(workspace, args.run_id)
    status = read_status(folder)
    if status is None:
        raise RunError(f"There is no run {args.run_id}.")
    if args.json:
        print(json.dumps(asdict(status), indent=2))
        return 0
    print(f"run       {status.run_id}  ({folder})")
    print(f"state     {status.state}")
    print(f"stage     {status.stage}   model {status.model}   dataset {status.dataset}")
    print(f"lineage   {' <- '.join(lineage(workspace, args.run_id))}")
    print(f"started   {status.started or '-'}   ended {status.ended or '-'}   pid {status.pid or '-'}")
    if status.message:
        print(f"message   {status.error_type + ': ' if status.error_type else ''}{status.message}")
    for name, value in status.summary.items():
        print(f"  {name} = {value}")
    print(f"--- last lines of {LOG_FILE} ---")
    print("\n".join(log_tail(folder)))
    return 0


@reports_refusals
def stop_command(args: argparse.Namespace) -> int:
    status = stop_detached(Workspace.from_env(), args.run_id)
    print(f"{args.run_id}: {status.state}")
    return 0


@reports_refusals
def delete_command(args: argparse.Namespace) -> int:
    delete_run(Workspace.from_env(), args.run_id)
    print(f"deleted {args.run_id}")
    return 0


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
