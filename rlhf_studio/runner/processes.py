"""A training child from outside, for the job runner and `runs stop`: the command line and environment it
starts with, how its exit reads when it did not report, whether a recorded pid is still this run's training
(its command line and a fresh heartbeat), and how to stop it (SIGTERM to its process group, SIGKILL after
GRACE_SECONDS).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from rlhf_studio.runner.runs import (
    ACTIVE_STATES,
    CANCELLED,
    CONFIG_FILE,
    STOP_REQUEST_FILE,
    RunError,
    RunStatus,
    finish_status,
    read_status,
    run_dir,
    seconds_since,
)
from rlhf_studio.workspace import Workspace

STALE_HEARTBEAT_SECONDS = 60.0  # this much silence means the process is gone or hung
GRACE_SECONDS = 5.0  # a stop sends SIGTERM, then SIGKILL to the whole process group after this
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds rlhf_studio/: the child imports it
APP_SECRETS = ("RLHF_STUDIO_USERNAME", "RLHF_STUDIO_PASSWORD", "RLHF_STUDIO_USERS_FILE")  # the sign-in's


def child_command(python: str, folder: Path, resume: bool) -> list[str]:
    command = [python, "-m", "rlhf_studio", "train", str(folder / CONFIG_FILE), "--run-dir", str(folder)]
    return command + ["--resume"] if resume else command


def child_env(workspace: Workspace) -> dict[str, str]:
    """The training child's environment: the app's, without the sign-in credentials it has no use for."""
    env = {name: value for name, value in os.environ.items() if name not in APP_SECRETS}
    env.update(RLHF_STUDIO_HOME=str(workspace.root), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def exit_failure(code: int) -> tuple[str, str]:
    """(message, error type) for a child that ended without reporting a result."""
    if code < 0:
        name = signal.Signals(-code).name
        message = f"The training process was killed by signal {name}."
        if -code == signal.SIGKILL:
            message += " Unless someone killed it, the system ran out of memory: try a smaller batch size."
        return message, name
    return f"The training process exited with code {code} without reporting a result.", "ExitCode"


def process_command(pid: int) -> str | None:
    """The command line of a live process, or None if it does not exist or is a zombie."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return None
        return None if state in ("Z", "X") else command
    result = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True)
    fields = result.stdout.strip().split(None, 1)
    if result.returncode != 0 or len(fields) < 2 or fields[0].startswith("Z"):
        return None
    return fields[1]


def is_training_command(command: str | None) -> bool:
    return command is not None and "rlhf_studio" in command and " train " in f"{command} "


def training_alive(status: RunStatus) -> bool:
    """Whether the process recorded in a status is still that run's training, beating its heartbeat."""
    if not status.pid or not is_training_command(process_command(status.pid)):
        return False
    age = seconds_since(status.heartbeat)
    return age is not None and age < STALE_HEARTBEAT_SECONDS


def signal_group(pgid: int, signum: int) -> None:
    """Signal every process of a group; a job's child leads its own group."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def signal_run(status: RunStatus, signum: int) -> None:
    """Signal a run started elsewhere: its process group, or only its process if that group is ours
    (a run started from this very shell without job control shares it)."""
    if status.pgid and status.pgid != os.getpgrp():
        signal_group(status.pgid, signum)
        return
    try:
        os.kill(status.pid, signum)
    except ProcessLookupError:
        pass


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_command(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_detached(workspace: Workspace, run_id: str) -> RunStatus:
    """Stop a run that another process started (the CLI's `runs stop`): signal the recorded process group."""
    folder = run_dir(workspace, run_id)
    status = read_status(folder)
    if status is None or status.state not in ACTIVE_STATES:
        raise RunError(f"Run {run_id} is {status.state if status else 'unknown'}, not queued or running.")
    (folder / STOP_REQUEST_FILE).touch()  # the app that owns the child reports cancelled, not "killed"
    if status.pid and process_command(status.pid) is not None:
        signal_run(status, signal.SIGTERM)
        if not wait_gone(status.pid, GRACE_SECONDS):
            signal_run(status, signal.SIGKILL)
            wait_gone(status.pid, GRACE_SECONDS)
    status = read_status(folder)
    if status is not None and status.state in ACTIVE_STATES:
        status = finish_status(folder, CANCELLED, message="Stopped by the user.")
    return status
