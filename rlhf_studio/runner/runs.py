"""Run folders: layout, ids, status on disk, listing, deleting and lineage.

One run is one folder, runs/<run_id>/ in the workspace:

    config.yaml     everything needed to run it again (`python -m rlhf_studio train config.yaml`)
    status.json     state, pid, times, heartbeat, error, log tail, summary (always written atomically)
    metrics.jsonl   one JSON object per logged step (written by the training stage)
    train.log       the child's log (stdout and stderr too when the job runner started it)
    checkpoints/    complete checkpoints only under their final names (checkpoint-<step>)
    model/          the final model

A run id reads as `<date>-<time>-<stage>-<4 hex>`, e.g. 20261122-141501-dpo-3f2a: sortable by creation time,
readable, and made unique by creating its folder with `mkdir(exist_ok=False)`.

Nothing here knows about processes: jobs.py runs them, child.py is the child.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from rlhf_studio.config import JobConfig, save_config
from rlhf_studio.workspace import Workspace, write_json_atomic

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
DELETING_PREFIX = ".deleting-"  # a run being deleted: renamed out of sight first, then removed
STOP_REQUEST_FILE = ".stop-requested"  # "stop" was asked for: whoever sees the process end reports cancelled

QUEUED, RUNNING = "queued", "running"
COMPLETED, FAILED, CANCELLED, INTERRUPTED = "completed", "failed", "cancelled", "interrupted"
ACTIVE_STATES = (QUEUED, RUNNING)
RESUMABLE_STATES = (INTERRUPTED, FAILED, CANCELLED)

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
LOG_TAIL_LINES = 20
# The summary value shown in the runs table, first match wins; any other numeric value is the fallback.
KEY_METRICS = ("eval_accuracy", "eval_rewards/accuracies", "eval_loss", "train_loss", "loss")


class RunError(ValueError):
    """A run id or run operation was refused; the message is one sentence for the user."""


@dataclass
class RunStatus:
    """The content of status.json. Unknown keys in the file are ignored when reading."""

    run_id: str
    state: str
    stage: str
    model: str = ""
    dataset: str = ""
    parent: str | None = None
    created: str = ""
    started: str | None = None
    ended: str | None = None
    heartbeat: str | None = None
    pid: int | None = None
    pgid: int | None = None
    resumed_from: str | None = None
    message: str = ""  # one sentence for the user: why it failed, what it waits for, ...
    error_type: str | None = None  # the exception class (or signal name) that ended a failed run
    log_tail: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> RunStatus:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in payload.items() if key in known})


@dataclass
class RunRow:
    """One line of the runs table, built from status.json alone so that listing stays fast."""

    run_id: str
    stage: str
    state: str
    model: str
    dataset: str
    parent: str | None
    started: str | None
    duration_s: float | None
    metric_name: str | None
    metric_value: float | None
    message: str  # why it failed or was interrupted, what it is waiting for, ...
    queue_position: int | None = None  # only the job manager knows it: JobManager.runs() fills it in


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def seconds_since(stamp: str | None, now: datetime | None = None) -> float | None:
    if not stamp:
        return None
    return ((now or datetime.now().astimezone()) - datetime.fromisoformat(stamp)).total_seconds()


# ---------------------------------------------------------------- ids and folders


def check_run_id(run_id: str) -> str:
    """Return the id if it can only name a folder directly inside runs/ (no '/', no '..')."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise RunError(f"'{run_id}' is not a valid run id.")
    return run_id


def run_dir(workspace: Workspace, run_id: str) -> Path:
    folder = workspace.runs_dir / check_run_id(run_id)
    if folder.resolve().parent != workspace.runs_dir.resolve():
        raise RunError(f"'{run_id}' does not name a folder inside {workspace.runs_dir}.")
    return folder


def new_run_id(stage: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "", stage.lower()) or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"


def create_run_dir(workspace: Workspace, stage: str) -> tuple[str, Path]:
    """Make a fresh, empty run folder; creating it is what reserves the id, so two runs never share one."""
    while True:
        run_id = new_run_id(stage)
        folder = workspace.runs_dir / run_id
        try:
            folder.mkdir(parents=False)
        except FileExistsError:
            continue
        return run_id, folder


def create_run(workspace: Workspace, config: JobConfig) -> str:
    """Create the folder of a new run: config.yaml plus a `queued` status. Returns the run id."""
    run_id, folder = create_run_dir(workspace, config.stage)
    init_run_folder(folder, config)
    return run_id


def init_run_folder(folder: Path, config: JobConfig) -> None:
    """Write config.yaml and a `queued` status.json into an existing folder; its name is the run id."""
    save_config(config, folder / CONFIG_FILE)
    write_status(
        folder,
        RunStatus(
            run_id=folder.name,
            state=QUEUED,
            stage=config.stage,
            model=config.model,
            dataset=config.dataset,
            parent=config.parent_run,  # the config fills it in from a `run:<id>` model
            created=now_iso(),
        ),
    )


# ---------------------------------------------------------------- status.json


def read_status(folder: Path) -> RunStatus | None:
    try:
        payload = json.loads((folder / STATUS_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return RunStatus.from_dict(payload)


def write_status(folder: Path, status: RunStatus) -> None:
    write_json_atomic(folder / STATUS_FILE, asdict(status))


def update_status(folder: Path, **changes: Any) -> RunStatus:
    """Read, change and rewrite status.json. Callers make sure only one process writes at a time."""
    status = read_status(folder)
    if status is None:
        raise RunError(f"{folder.name} has no status.json.")
    for name, value in changes.items():
        if not hasattr(status, name):
            raise AttributeError(f"RunStatus has no field {name!r}")
        setattr(status, name, value)
    write_status(folder, status)
    return status


def finish_status(folder: Path, state: str, message: str = "", error_type: str | None = None) -> RunStatus:
    """Record a final state with the end time, why, and the last lines of the log."""
    return update_status(
        folder,
        state=state,
        ended=now_iso(),
        message=message,
        error_type=error_type,
        log_tail=log_tail(folder),
    )


def log_tail(folder: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of train.log, read from its end so that a long log costs nothing."""
    path = folder / LOG_FILE
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    # progress bars rewrite their line with '\r': keep only the last version of each line
    cleaned = (line.rstrip().rsplit("\r", 1)[-1] for line in text.split("\n"))
    return list(deque((line for line in cleaned if line), maxlen=lines))


def newest_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint with the highest step; partial ones never carry the final name."""
    candidates = [
        (int(match.group(1)), path)
        for path in (folder / CHECKPOINTS_DIR).glob("checkpoint-*")
        if (match := CHECKPOINT_NAME.fullmatch(path.name)) and path.is_dir()
    ]
    return max(candidates)[1] if candidates else None


# ---------------------------------------------------------------- listing, deleting, lineage


def key_metric(summary: dict[str, Any]) -> tuple[str, float] | None:
    numeric = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for name in KEY_METRICS:
        if name in numeric:
            return name, float(numeric[name])
    return next(((k, float(v)) for k, v in numeric.items()), None)


def run_row(status: RunStatus, now: datetime) -> RunRow:
    duration = None
    if status.started:
        end = datetime.fromisoformat(status.ended) if status.ended else now
        duration = max(0.0, (end - datetime.fromisoformat(status.started)).total_seconds())
    metric = key_metric(status.summary or {})
    return RunRow(
        run_id=status.run_id,
        stage=status.stage,
        state=status.state,
        model=status.model,
        dataset=status.dataset,
        parent=status.parent,
        started=status.started,
        duration_s=duration,
        metric_name=metric[0] if metric else None,
        metric_value=metric[1] if metric else None,
        message=status.message,
    )


def list_runs(workspace: Workspace) -> list[RunRow]:
    """Every run, newest first. Reads one small status.json per run: cheap enough to poll every 2 s."""
    now = datetime.now().astimezone()
    rows = []
    with os.scandir(workspace.runs_dir) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            status = read_status(Path(entry.path))
            if status is not None:
                rows.append(run_row(status, now))
    return sorted(rows, key=lambda row: row.run_id, reverse=True)


def delete_run(workspace: Workspace, run_id: str) -> None:
    """Remove one run's folder and nothing else; refuse while it is queued or running."""
    shutil.rmtree(retire_run(workspace, run_id))


def retire_run(workspace: Workspace, run_id: str) -> Path:
    """Rename a run's folder to a hidden name, out of every listing and lookup, and return that path for
    removal: a listing running meanwhile never sees a half-deleted run. Refused while it is active."""
    folder = run_dir(workspace, run_id)
    if not folder.is_dir():
        raise RunError(f"There is no run {run_id}.")
    status = read_status(folder)
    if status is not None and status.state in ACTIVE_STATES:
        raise RunError(f"Run {run_id} is {status.state}: stop it before deleting it.")
    doomed = folder.with_name(f"{DELETING_PREFIX}{run_id}-{secrets.token_hex(2)}")
    os.replace(folder, doomed)
    return doomed


def lineage(workspace: Workspace, run_id: str) -> list[str]:
    """The run and its ancestors, newest first: [dpo run, sft run] for a DPO run started from an SFT run."""
    chain = [check_run_id(run_id)]
    while True:
        status = read_status(run_dir(workspace, chain[-1]))
        parent = status.parent if status else None
        if not parent or parent in chain or not RUN_ID.fullmatch(parent):
            return chain
        chain.append(parent)
