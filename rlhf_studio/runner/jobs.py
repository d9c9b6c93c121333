"""The job runner: a queue of runs, one training child process at a time, stop, recovery and resume.

    manager = JobManager(workspace)   # recovers runs left by a previous app, starts the supervisor thread
    run_id = manager.submit(config)   # queued; config.yaml and status.json are written now
    manager.queue_position(run_id)    # 1 = next to start, None = not waiting
    manager.runs()                    # the runs table, queue positions included (cheap: poll it)
    manager.stop(run_id)              # the whole process tree ends within GRACE_SECONDS and a poll
    manager.resume(run_id)            # an interrupted/failed/cancelled run again, from its newest checkpoint

Each job is `python -m rlhf_studio train <run>/config.yaml --run-dir <run>` in its own session (its own
process group, so that one signal reaches the workers it spawns), with stdout and stderr appended to
<run>/train.log: no pipe that someone must drain. While it runs the child owns status.json; the supervisor
thread writes it only before the start and after the exit, when it classifies how the child ended:

    exit 0 and the child wrote `completed`       -> completed
    "stop" was requested (STOP_REQUEST_FILE)      -> cancelled
    the child wrote `failed` or `cancelled`       -> kept (Python error, out of memory, NaN/Inf loss)
    killed by a signal (kill -9, the OOM killer)  -> failed, "killed by signal SIGKILL", with the log tail
    any other exit                                -> failed, "exited with code N"

One training at a time also holds across processes and workspaces: the child takes the machine's training
lock first.

Recovery (in the constructor): a queued or running run whose training process is gone (pid dead, pid now
another program, or heartbeat stale) becomes `interrupted`. So do queued runs of a previous app, rather than
being queued again: opening the app must never start hours of training by itself; `resume` queues them.
A child that outlived its app (its own session keeps it alive) is watched until it ends. One app per
workspace: a second one would mark the first one's queue interrupted.

The queue holds at most `max_queued` waiting runs (MAX_QUEUED, or $RLHF_STUDIO_MAX_QUEUED): beyond that,
submit and resume raise QueueFull, one sentence that names the limit, and nothing is created. Each queued
run is a folder and a line in the runs table, so a flood of submissions would otherwise pile up unbounded.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config import JobConfig
from rlhf_studio.runner.processes import (
    GRACE_SECONDS,
    child_command,
    child_env,
    exit_failure,
    process_command,
    signal_group,
    stop_detached,
    training_alive,
)
from rlhf_studio.runner.runs import (
    ACTIVE_STATES,
    CANCELLED,
    COMPLETED,
    DELETING_PREFIX,
    FAILED,
    INTERRUPTED,
    LOG_FILE,
    QUEUED,
    RESUMABLE_STATES,
    RUNNING,
    STOP_REQUEST_FILE,
    RunError,
    RunRow,
    RunStatus,
    create_run,
    finish_status,
    list_runs,
    newest_checkpoint,
    now_iso,
    read_status,
    retire_run,
    run_dir,
    update_status,
)
from rlhf_studio.stages import validate
from rlhf_studio.workspace import Workspace

POLL_SECONDS = 0.25
ENDED_UNREPORTED = "The training process ended without reporting."
MAX_QUEUED = 32  # waiting runs; the running one is not counted
MAX_QUEUED_ENV = "RLHF_STUDIO_MAX_QUEUED"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the manager


class QueueFull(RunError):
    """The queue already holds as many waiting runs as it may; the message names the limit."""


def queue_limit() -> int:
    """MAX_QUEUED, or a positive whole number from $RLHF_STUDIO_MAX_QUEUED."""
    configured = os.environ.get(MAX_QUEUED_ENV, "").strip()
    if not configured:
        return MAX_QUEUED
    if not configured.isdigit() or int(configured) < 1:
        raise ValueError(f"{MAX_QUEUED_ENV} must be a whole number of at least 1, got {configured!r}")
    return int(configured)


@dataclass
class Job:
    run_id: str
    folder: Path
    resume: bool = False
    process: subprocess.Popen | None = None
    kill_at: float | None = None  # time.monotonic() after which the group gets SIGKILL


class JobManager:
    """The app's one owner of job state: the queue, the running child, the supervisor thread."""

    def __init__(
        self, workspace: Workspace, python: str = sys.executable, max_queued: int | None = None
    ) -> None:
        self.workspace = workspace
        self._python = python
        self.max_queued = max_queued or queue_limit()
        self._lock = threading.RLock()
        self._queue: list[Job] = []
        self._current: Job | None = None
        self._adopted: set[str] = set()  # running children of a previous app, watched until they end
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.recover()
        self._thread = threading.Thread(target=self._supervise, name="job-supervisor", daemon=True)
        self._thread.start()

    # -- queries

    def queue(self) -> list[str]:
        """Run ids waiting to start, next first."""
        with self._lock:
            return [job.run_id for job in self._queue]

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start, 2 after it, ...; None when the run is not waiting."""
        queue = self.queue()
        return queue.index(run_id) + 1 if run_id in queue else None

    def runs(self) -> list[RunRow]:
        """The runs table (newest first) with each waiting run's queue position filled in."""
        positions = {run_id: index + 1 for index, run_id in enumerate(self.queue())}
        rows = list_runs(self.workspace)
        for row in rows:
            row.queue_position = positions.get(row.run_id)
        return rows

    def running(self) -> str | None:
        with self._lock:
            if self._current is not None:
                return self._current.run_id
            return next(iter(self._adopted), None)

    def status(self, run_id: str) -> RunStatus | None:
        return read_status(run_dir(self.workspace, run_id))

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id == self.running() or run_id in self.queue()

    def wait(self, run_id: str, timeout: float) -> RunStatus:
        """Block until the run has finished and its process is gone; return its final status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if status is not None and status.state not in ACTIVE_STATES and not self.is_active(run_id):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"Run {run_id} is still {status.state if status else 'missing'}.")
            time.sleep(0.1)

    # -- commands

    def submit(self, config: JobConfig) -> str:
        """Queue a new run; returns its id. ConfigError for an unusable config or an unfinished run:<id>,
        QueueFull when max_queued runs are waiting already (then no folder is made)."""
        validate(config, self.workspace)
        with self._lock:  # the check and the append together: concurrent submits cannot overshoot
            self.check_room()
            run_id = create_run(self.workspace, config)
            self._enqueue(Job(run_id, run_dir(self.workspace, run_id)))
        return run_id

    def check_room(self) -> None:
        """Raise QueueFull if one more waiting run would go past the limit."""
        with self._lock:
            limit = self.max_queued
            if len(self._queue) >= limit:
                raise QueueFull(
                    f"The queue is full: it holds at most {limit} waiting run{'s' if limit > 1 else ''} "
                    f"({MAX_QUEUED_ENV}); try again once one of them has started or been stopped."
                )

    def resume(self, run_id: str) -> None:
        """Queue an interrupted, failed or cancelled run again; it continues from its newest checkpoint."""
        folder = run_dir(self.workspace, run_id)
        with self._lock:
            status = read_status(folder)
            if status is None or status.state not in RESUMABLE_STATES or self.is_active(run_id):
                raise RunError(f"Run {run_id} is {status.state if status else 'unknown'}: nothing to resume.")
            self.check_room()
            checkpoint = newest_checkpoint(folder)
            (folder / STOP_REQUEST_FILE).unlink(missing_ok=True)
            update_status(
                folder,
                state=QUEUED,
                ended=None,
                pid=None,
                pgid=None,
                error_type=None,
                message=f"Resuming from {checkpoint.name}." if checkpoint else "No checkpoint: starts over.",
            )
            self._enqueue(Job(run_id, folder, resume=True))

    def stop(self, run_id: str) -> None:
        """Cancel a run: drop it from the queue, or end its whole process tree (SIGTERM, then SIGKILL)."""
        with self._lock:
            job = next((job for job in self._queue if job.run_id == run_id), None)
            if job is not None:
                self._queue.remove(job)
                finish_status(job.folder, CANCELLED, message="Removed from the queue before it started.")
                return
            job = self._current
            if job is not None and job.run_id == run_id:
                (job.folder / STOP_REQUEST_FILE).touch()
                signal_group(job.process.pid, signal.SIGTERM)
                job.kill_at = time.monotonic() + GRACE_SECONDS
                self._wake.set()
                return
        stop_detached(self.workspace, run_id)  # an adopted child or one from a terminal

    def delete(self, run_id: str) -> None:
        """Remove one run's folder; refused while it is queued or running.

        Only the check and the rename run under the lock: removing gigabytes of checkpoints takes a while,
        and meanwhile the supervisor must still stop, start and classify the other runs.
        """
        with self._lock:
            if self.is_active(run_id):
                raise RunError(f"Run {run_id} is queued or running: stop it before deleting it.")
            doomed = retire_run(self.workspace, run_id)
        shutil.rmtree(doomed)

    def shutdown(self) -> None:
        """Stop supervising: the running child ends and it and the queued runs become interrupted."""
        self._closed.set()
        self._wake.set()
        self._thread.join()
        with self._lock:
            for job in self._queue:
                finish_status(job.folder, INTERRUPTED, message="The app stopped before this run started.")
            self._queue.clear()
            job, self._current = self._current, None
        if job is None:
            return
        signal_group(job.process.pid, signal.SIGTERM)
        try:
            job.process.wait(GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            signal_group(job.process.pid, signal.SIGKILL)
            job.process.wait()
        signal_group(job.process.pid, signal.SIGKILL)
        status = read_status(job.folder)
        if status is not None and status.state != COMPLETED:
            finish_status(job.folder, INTERRUPTED, message="The app stopped during training: resume it.")

    # -- recovery

    def recover(self) -> None:
        """Mark runs whose process is gone as interrupted; keep watching trainings that are still alive.
        Finish removing runs whose deletion the previous app did not complete (hidden .deleting-* folders)."""
        for entry in self.workspace.runs_dir.iterdir():
            if entry.name.startswith(DELETING_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
            status = None if entry.name.startswith(".") else read_status(entry)
            if status is None or status.state not in ACTIVE_STATES:
                continue
            if training_alive(status):
                self._adopted.add(status.run_id)
            elif status.state == QUEUED and not status.pid:
                finish_status(entry, INTERRUPTED, message="The app stopped before this run started.")
            else:
                finish_status(entry, INTERRUPTED, message=ENDED_UNREPORTED)

    # -- the supervisor thread

    def _enqueue(self, job: Job) -> None:
        with self._lock:
            self._queue.append(job)
        self._wake.set()

    def _supervise(self) -> None:
        while not self._closed.is_set():
            try:
                with self._lock:
                    self._check_current()
                    self._check_adopted()
                    if self._current is None and not self._adopted and self._queue:
                        self._start(self._queue.pop(0))
            except Exception:  # one bad run folder must not stop the runner for every other run
                log.exception("job supervisor")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _start(self, job: Job) -> None:
        status = read_status(job.folder)
        if status is None or status.state != QUEUED:
            return  # cancelled or deleted from another terminal while it waited
        (job.folder / STOP_REQUEST_FILE).unlink(missing_ok=True)
        command = child_command(self._python, job.folder, job.resume)
        try:
            with open(job.folder / LOG_FILE, "ab") as log_file:
                job.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=child_env(self.workspace),
                    start_new_session=True,
                )
        except OSError as error:
            finish_status(job.folder, FAILED, f"Could not start the training: {error}", type(error).__name__)
            return
        self._current = job
        pid = job.process.pid
        update_status(job.folder, state=RUNNING, pid=pid, pgid=pid, heartbeat=now_iso(), message="")

    def _check_current(self) -> None:
        job = self._current
        if job is None:
            return
        code = job.process.poll()
        if code is None:
            if job.kill_at is not None and time.monotonic() > job.kill_at:
                signal_group(job.process.pid, signal.SIGKILL)
                job.kill_at = None
            return
        signal_group(job.process.pid, signal.SIGKILL)  # workers the child left behind
        self._current = None
        self._classify(job, code)

    def _classify(self, job: Job, code: int) -> None:
        status = read_status(job.folder)
        if status is None:
            return
        if code == 0 and status.state == COMPLETED:
            return
        if (job.folder / STOP_REQUEST_FILE).exists():
            if status.state != CANCELLED:
                finish_status(job.folder, CANCELLED, message="Stopped by the user.")
            return
        if status.state in (FAILED, CANCELLED):
            return  # the child reported why
        finish_status(job.folder, FAILED, *exit_failure(code))

    def _check_adopted(self) -> None:
        for run_id in list(self._adopted):
            folder = run_dir(self.workspace, run_id)
            status = read_status(folder)
            if status is None or status.state not in ACTIVE_STATES:
                self._adopted.discard(run_id)
            elif status.pid is None or process_command(status.pid) is None:
                self._adopted.discard(run_id)
                if (folder / STOP_REQUEST_FILE).exists():  # a stop that had to end it with SIGKILL
                    finish_status(folder, CANCELLED, message="Stopped by the user.")
                else:
                    finish_status(folder, INTERRUPTED, message=ENDED_UNREPORTED)
