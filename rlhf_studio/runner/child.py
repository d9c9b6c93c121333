"""The training child: the process that trains one run, started by the job runner or from a terminal.

    train(TrainRequest(Path("RUN/config.yaml"), run_dir=Path("RUN"), resume=False))   # the exit code

`python -m rlhf_studio train` (cli/train.py) calls `train`; so does every process of an `accelerate launch`.
While it runs, this process owns RUN/status.json: `running` with its pid and process group, a heartbeat every
HEARTBEAT_SECONDS from a thread, then `completed` with the stage's summary, `failed` with the error class and
a message (Python error, out of memory, NaN/Inf loss) or `cancelled` (SIGTERM or Ctrl-C), each with the last
lines of train.log. Before it loads anything it takes the machine's training lock (one file per user account
in the temp folder, whatever the workspace; $RLHF_STUDIO_TRAINING_LOCK names another), so that a second
training, whoever starts it and from whichever workspace or app, waits for the first.

Under `accelerate launch` only the main process makes the run folder, takes the lock and writes the status;
it then sends the folder to the other ranks, so all of them train into one run. How the process is seen and
stopped from outside (the job runner, `runs stop`) is processes.py.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_studio.config import JobConfig, save_config
from rlhf_studio.runner.runs import (
    CANCELLED,
    COMPLETED,
    CONFIG_FILE,
    FAILED,
    LOG_FILE,
    QUEUED,
    RUNNING,
    RunError,
    create_run,
    finish_status,
    init_run_folder,
    newest_checkpoint,
    now_iso,
    read_status,
    run_dir,
    update_status,
)
from rlhf_studio.stages import load_config, validate
from rlhf_studio.workspace import Workspace

HEARTBEAT_SECONDS = 3.0
TRAINING_LOCK_ENV = "RLHF_STUDIO_TRAINING_LOCK"  # path of the lock file, instead of the default
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("rlhf_studio.train")


@dataclass(frozen=True)
class TrainRequest:
    """What to train: a config file, the run folder (None: a new one) and whether to resume it."""

    config: Path
    run_dir: Path | None = None
    resume: bool = False


class StatusWriter:
    """status.json of this run, written by the main thread and by the heartbeat thread, never both at once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def update(self, **changes: Any) -> None:
        with self._lock:
            update_status(self.folder, **changes)

    def start_heartbeat(self) -> None:
        self._thread.start()

    def finish(self, state: str, message: str = "", error_type: str | None = None) -> None:
        self._stopped.set()
        with self._lock:
            finish_status(self.folder, state, message, error_type)

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.update(heartbeat=now_iso())
            except (OSError, RunError) as error:
                log.warning("could not write the heartbeat: %s", error)


def training_lock_path() -> Path:
    """The lock every training on this machine takes: one GPU (or CPU) trains one job at a time."""
    configured = os.environ.get(TRAINING_LOCK_ENV)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"rlhf-studio-training-{os.getuid()}.lock"


@contextmanager
def training_lock(on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold the machine's training lock; call `on_wait` first if another process holds it."""
    path = training_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the kernel drops the lock when the process dies, however it dies


def train(request: TrainRequest) -> int:
    """Train `request` in this process (and the other ranks of an `accelerate launch`); the exit code."""
    from rlhf_studio.training.common import process_state

    state = process_state()  # joins the processes of an `accelerate launch` (gloo on a CPU), else a no-op
    workspace = Workspace.from_env()
    if state.is_main_process:
        return train_main_process(request, workspace, distributed=state.num_processes > 1)
    return train_other_process(request, workspace)


def train_main_process(request: TrainRequest, workspace: Workspace, distributed: bool) -> int:
    try:
        config, folder = prepare_run(request, workspace)
    except Exception as error:  # a bad config or folder: nothing was trained, say why and stop
        if distributed:
            share_with_other_processes([None, None])
        report_unusable(request.run_dir, error)
        return 2
    setup_logging(folder / LOG_FILE)
    log.info("Run %s in %s", folder.name, folder)
    status = StatusWriter(folder)
    status.update(pid=os.getpid(), pgid=os.getpgrp(), heartbeat=now_iso(), ended=None, message="")
    status.start_heartbeat()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        with training_lock(on_wait=lambda: waiting_for_lock(status)):
            resume_from = newest_checkpoint(folder) if request.resume else None
            start_running(status, folder, resume_from, request.resume)
            if distributed:
                share_with_other_processes([str(folder), str(resume_from) if resume_from else None])
            summary = run_stage_for(config, folder, workspace, resume_from)
    except KeyboardInterrupt:
        log.info("Stopped by the user.")
        status.finish(CANCELLED, message="Stopped by the user.")
        return 130
    except Exception as error:
        log.exception("Training failed")
        status.finish(FAILED, *describe_failure(error))
        return 1
    log.info("Run %s completed", folder.name)
    status.update(summary=summary)
    status.finish(COMPLETED)
    return 0


def train_other_process(request: TrainRequest, workspace: Workspace) -> int:
    setup_logging(None, logging.WARNING)
    config = load_config(request.config)
    folder, resume_from = share_with_other_processes([None, None])
    if folder is None:
        return 2  # the main process could not set the run up and says why
    run_stage_for(config, Path(folder), workspace, Path(resume_from) if resume_from else None)
    return 0


def prepare_run(request: TrainRequest, workspace: Workspace) -> tuple[JobConfig, Path]:
    """Load and check the config, then find (runner) or create (terminal) the run folder."""
    config = load_config(request.config)
    validate(config, workspace)  # before making a folder: a bad dataset or model name is no run
    if request.run_dir is None:
        return config, run_dir(workspace, create_run(workspace, config))
    folder = request.run_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if read_status(folder) is None:
        init_run_folder(folder, config)
    elif request.config.resolve() != folder / CONFIG_FILE:
        save_config(config, folder / CONFIG_FILE)
    return config, folder


def report_unusable(folder: Path | None, error: Exception) -> None:
    print(f"error: {error}", file=sys.stderr)
    if folder is not None and read_status(folder) is not None:
        finish_status(folder, FAILED, str(error), type(error).__name__)


def start_running(status: StatusWriter, folder: Path, resume_from: Path | None, resume: bool) -> None:
    if resume:
        log.info("Resuming from %s", resume_from or "the start: there is no complete checkpoint")
    status.update(
        state=RUNNING,
        started=now_iso(),
        error_type=None,
        message="",
        resumed_from=str(resume_from.relative_to(folder)) if resume_from else None,
    )


def waiting_for_lock(status: StatusWriter) -> None:
    message = "Waiting for another training on this machine to finish."
    log.info(message)
    status.update(state=QUEUED, message=message)


def run_stage_for(config: JobConfig, folder: Path, workspace: Workspace, resume_from: Path | None) -> dict:
    from rlhf_studio.training import run_stage

    return run_stage(config, folder, workspace, resume_from=resume_from)


def describe_failure(error: Exception) -> tuple[str, str]:
    """(one message for the user, error class) for what ended the training."""
    import torch

    from rlhf_studio.training import NonFiniteLossError

    name = type(error).__name__
    detail = (str(error).strip().splitlines() or [name])[0]
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        advice = "Try a smaller batch size or maximum length, LoRA, or 4-bit loading."
        return f"Out of memory ({detail}). {advice}", name
    if isinstance(error, NonFiniteLossError):
        return f"NaN/Inf loss: {detail}", name  # the guard's message names the step and what to change
    return detail, name


def share_with_other_processes(values: list[Any]) -> list[Any]:
    """Broadcast a small list from the main process to every process of an `accelerate launch`."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list(values, from_process=0)


def raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM from `stop` unwinds training like Ctrl-C does


def setup_logging(log_file: Path | None, level: int = logging.INFO) -> None:
    """Log to stderr, and to train.log unless stderr already is train.log (the job runner sends it there)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None and not stderr_is(log_file):
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handlers.append(file_handler)
        logging.getLogger("transformers").addHandler(file_handler)  # it does not propagate to the root
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)


def stderr_is(path: Path) -> bool:
    try:
        mine, theirs = os.fstat(sys.stderr.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
