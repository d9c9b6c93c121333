"""The job runner. Slow tests run real training children (SFT on the tiny model, offline); long jobs get a
huge max_steps so that they are still training when the test stops or kills them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from rlhf_studio.config import ConfigError
from rlhf_studio.runner.child import (
    TRAINING_LOCK_ENV,
    describe_failure,
    training_lock,
    training_lock_path,
)
from rlhf_studio.runner.jobs import JobManager
from rlhf_studio.runner.processes import GRACE_SECONDS
from rlhf_studio.runner.runs import (
    CANCELLED,
    COMPLETED,
    CONFIG_FILE,
    FAILED,
    INTERRUPTED,
    LOG_FILE,
    METRICS_FILE,
    MODEL_DIR,
    QUEUED,
    RUNNING,
    STOP_REQUEST_FILE,
    RunError,
    RunStatus,
    create_run_dir,
    lineage,
    read_status,
    run_dir,
    write_status,
)
from rlhf_studio.stages import load_config

LONG_RUN = 100_000  # steps
FINISH_SECONDS = 240  # generous: CI machines with 2 cores run these side by side with other tests
TINY_TRAINING = {
    "max_steps": 2,
    "logging_steps": 1,
    "save_steps": 1000,
    "per_device_train_batch_size": 2,
    "max_length": 64,
    "use_eval_split": False,
    "eval_on_start": False,
}


@pytest.fixture
def dataset(workspace) -> str:
    """A tiny SFT dataset in the library layout: prompt/completion rows in train.jsonl and eval.jsonl."""
    name = "toy-sft"
    folder = workspace.datasets_dir / name
    folder.mkdir()
    rows = [{"prompt": f"What is {i} plus {i}?", "completion": f" It is {2 * i}."} for i in range(12)]
    splits = {"train": rows[:9], "eval": rows[9:]}
    for split, split_rows in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in split_rows))
    manifest = {
        "name": name,
        "source_file": "toy.jsonl",
        "format": "jsonl",
        "kind": "sft",
        "style": "standard",
        "rows_total": len(rows),
        "rows_train": len(splits["train"]),
        "rows_eval": len(splits["eval"]),
        "dropped": 0,
        "created": "2026-11-22T14:15:01+00:00",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return name


@pytest.fixture
def config_file(tmp_path, tiny_model_dir, dataset) -> Callable[..., Path]:
    """Write an SFT config for the tiny model and return its path; keyword arguments override settings."""
    written = []

    def write(**overrides) -> Path:
        values = {
            "stage": "sft",
            "model": str(tiny_model_dir),
            "dataset": dataset,
            **TINY_TRAINING,
            **overrides,
        }
        path = tmp_path / f"config-{len(written)}.yaml"
        path.write_text(yaml.safe_dump(values))
        written.append(path)
        return path

    return write


@pytest.fixture
def config(config_file):
    return lambda **overrides: load_config(config_file(**overrides))


@pytest.fixture
def nan_model_dir(tiny_model_dir, tmp_path) -> Path:
    """The tiny model with a NaN output head: its very first loss is NaN."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    folder = tmp_path / "nan-model"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def wait_until(predicate: Callable[[], object], what: str, timeout: float = FINISH_SECONDS):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.1)
    return result


def training_steps(folder: Path) -> list[dict]:
    path = folder / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_training(folder: Path):
    """Wait until the child runs and has logged at least one metrics row: it is mid-training."""
    wait_until(lambda: training_steps(folder), f"training to start in {folder.name}")
    status = read_status(folder)
    assert status.state == RUNNING and status.pid
    return status


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            members.append(int(stat.parent.name))
    return members


def fake_run(workspace, state: str, pid: int | None, heartbeat_age: float = 0.0) -> str:
    run_id, folder = create_run_dir(workspace, "sft")
    beat = datetime.now().astimezone() - timedelta(seconds=heartbeat_age)
    write_status(
        folder,
        RunStatus(
            run_id=run_id,
            state=state,
            stage="sft",
            pid=pid,
            pgid=pid,
            heartbeat=beat.isoformat(),
            created="x",
        ),
    )
    return run_id


def test_recovery_keeps_live_trainings_and_interrupts_the_rest(workspace):
    finished = subprocess.Popen(["true"])
    finished.wait()
    foreign = subprocess.Popen(["sleep", "60"])
    training = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "rlhf_studio", "train"])
    try:
        dead = fake_run(workspace, RUNNING, finished.pid)
        reused = fake_run(workspace, RUNNING, foreign.pid)
        silent = fake_run(workspace, RUNNING, training.pid, heartbeat_age=600)
        never_started = fake_run(workspace, QUEUED, None)
        alive = fake_run(workspace, RUNNING, training.pid)
        manager = JobManager(workspace)
        try:
            for run_id in (dead, reused, silent, never_started):
                assert manager.status(run_id).state == INTERRUPTED
            assert manager.status(alive).state == RUNNING and manager.running() == alive
            training.kill()
            training.wait()
            ended = manager.wait(alive, timeout=5)  # the app watches a child it did not start
            assert ended.state == INTERRUPTED and "without reporting" in ended.message
        finally:
            manager.shutdown()
    finally:
        foreign.kill()
        training.kill()


def test_a_stopped_training_of_a_previous_app_is_reported_cancelled(workspace):
    """A training that outlived its app is watched by the next one; when a Stop (from this app or `runs
    stop`) had to end it with SIGKILL, the watcher sees it vanish without a word: that is a cancel."""
    ignores_sigterm = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    stubborn = subprocess.Popen(  # a training stuck where SIGTERM cannot reach it (a long C call, say)
        [sys.executable, "-c", ignores_sigterm, "rlhf_studio", "train"], start_new_session=True
    )
    try:
        run_id = fake_run(workspace, RUNNING, stubborn.pid)
        manager = JobManager(workspace)
        try:
            assert manager.running() == run_id  # adopted
            (run_dir(workspace, run_id) / STOP_REQUEST_FILE).touch()  # what a Stop does first ...
            stubborn.kill()  # ... and, the grace time over, last
            stopped = manager.wait(run_id, timeout=5)
        finally:
            manager.shutdown()
    finally:
        stubborn.kill()
        stubborn.wait()
    assert (stopped.state, stopped.message) == (CANCELLED, "Stopped by the user.")


def test_submit_refuses_unusable_configs_before_making_a_folder(workspace, config):
    manager = JobManager(workspace)
    try:
        with pytest.raises(ConfigError, match="dataset"):
            manager.submit(config(dataset="missing"))
        with pytest.raises(ConfigError, match="model"):
            manager.submit(config(model="run:20261122-141501-sft-dead"))
        assert list(workspace.runs_dir.iterdir()) == []
        completed = fake_run(workspace, COMPLETED, None)
        with pytest.raises(RunError, match="nothing to resume"):
            manager.resume(completed)
    finally:
        manager.shutdown()


@pytest.mark.slow
def test_queue_order_positions_and_stop_mid_run(manager, workspace, config):
    long_run = manager.submit(config(max_steps=LONG_RUN))
    short_run = manager.submit(config())
    dropped = manager.submit(config())
    assert len({long_run, short_run, dropped}) == 3
    assert all((run_dir(workspace, run) / CONFIG_FILE).is_file() for run in (long_run, short_run, dropped))
    wait_until(lambda: manager.running() == long_run, "the first job to start")
    assert manager.queue() == [short_run, dropped]
    assert [manager.queue_position(run) for run in (long_run, short_run, dropped)] == [None, 1, 2]
    positions = {row.run_id: row.queue_position for row in manager.runs()}
    assert positions == {long_run: None, short_run: 1, dropped: 2}

    manager.stop(dropped)
    assert manager.queue() == [short_run] and manager.status(dropped).state == CANCELLED

    running = wait_training(run_dir(workspace, long_run))
    asked = time.monotonic()
    manager.stop(long_run)
    stopped = manager.wait(long_run, timeout=10)
    assert time.monotonic() - asked < 10
    assert stopped.state == CANCELLED and stopped.ended
    assert group_members(running.pgid) == []

    finished = manager.wait(short_run, FINISH_SECONDS)
    assert finished.state == COMPLETED, finished.message
    model_dir = run_dir(workspace, short_run) / MODEL_DIR
    saved = (model_dir / "config.json").is_file() or (model_dir / "adapter_config.json").is_file()
    assert saved and finished.summary
    assert manager.status(dropped).pid is None  # removed from the queue: never started


@pytest.mark.slow
def test_stop_kills_a_process_tree_that_ignores_sigterm(workspace, config, tmp_path):
    stubborn = tmp_path / "stubborn-python"  # stands in for the interpreter: ignores SIGTERM, has a child
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\nsleep 60 &\nwait\n")
    stubborn.chmod(0o755)
    manager = JobManager(workspace, python=str(stubborn))
    try:
        run_id = manager.submit(config())
        pgid = wait_until(lambda: manager.status(run_id).pgid, "the job to start")
        wait_until(lambda: len(group_members(pgid)) == 2, "the grandchild")
        asked = time.monotonic()
        manager.stop(run_id)
        stopped = manager.wait(run_id, timeout=10)
        assert GRACE_SECONDS <= time.monotonic() - asked < 10
        assert stopped.state == CANCELLED
        assert group_members(pgid) == []
    finally:
        manager.shutdown()


@pytest.mark.slow
def test_killed_job_fails_with_its_cause_and_the_queue_goes_on(manager, workspace, config):
    parent = manager.submit(config())
    assert manager.wait(parent, FINISH_SECONDS).state == COMPLETED
    victim = manager.submit(config(max_steps=LONG_RUN))
    child = manager.submit(config(model=f"run:{parent}"))

    running = wait_training(run_dir(workspace, victim))
    os.kill(running.pid, signal.SIGKILL)
    killed = manager.wait(victim, 30)
    assert (killed.state, killed.error_type) == (FAILED, "SIGKILL")
    assert "killed by signal SIGKILL" in killed.message and "memory" in killed.message
    assert killed.log_tail

    finished = manager.wait(child, FINISH_SECONDS)
    assert finished.state == COMPLETED, finished.message
    assert finished.parent == parent and lineage(workspace, child) == [child, parent]
    assert manager.status(parent).state == COMPLETED  # the kill touched no other run


def test_the_training_lock_is_one_per_machine_not_per_workspace(monkeypatch):
    monkeypatch.delenv(TRAINING_LOCK_ENV, raising=False)
    default = training_lock_path()
    assert default.parent == Path(tempfile.gettempdir()) and str(os.getuid()) in default.name
    monkeypatch.setenv("RLHF_STUDIO_HOME", "/somewhere/else")
    assert training_lock_path() == default
    monkeypatch.setenv(TRAINING_LOCK_ENV, "/shared/gpu0.lock")
    assert training_lock_path() == Path("/shared/gpu0.lock")


def test_out_of_memory_messages_say_what_to_change():
    import torch

    gpu, detail = describe_failure(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert detail == "OutOfMemoryError"
    assert gpu.startswith("Out of memory (CUDA out of memory. Tried to allocate 2.00 GiB).")
    host, detail = describe_failure(MemoryError())  # host RAM: no message of its own
    assert detail == "MemoryError"
    assert host.startswith("Out of memory (MemoryError). Try a smaller batch size")


@pytest.mark.slow
def test_nan_loss_fails_with_the_reason_after_waiting_for_the_training_lock(
    manager, workspace, config, nan_model_dir
):
    with training_lock(on_wait=lambda: None):  # "another training" holds the machine
        exploding = manager.submit(config(model=str(nan_model_dir), max_steps=20))
        folder = run_dir(workspace, exploding)
        waiting = wait_until(
            lambda: (status := read_status(folder)).message.startswith("Waiting") and status, "the lock wait"
        )
        assert waiting.state == QUEUED and not (folder / METRICS_FILE).exists()
    failed = manager.wait(exploding, FINISH_SECONDS)
    assert (failed.state, failed.error_type) == (FAILED, "NonFiniteLossError")
    assert "NaN/Inf" in failed.message
    assert any("NonFiniteLossError" in line for line in failed.log_tail)


@pytest.mark.slow
def test_cli_train_in_a_terminal_and_runs_stop_from_another(workspace, config_file, tmp_path):
    terminal = tmp_path / "terminal.txt"
    with open(terminal, "wb") as output:
        child = subprocess.Popen(
            [sys.executable, "-m", "rlhf_studio", "train", str(config_file(max_steps=LONG_RUN))],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a shell with job control gives each command its own group
        )
    try:
        folder = wait_until(lambda: next(workspace.runs_dir.iterdir(), None), "the run folder")
        running = wait_training(folder)
        assert running.pgid == child.pid
        stop = subprocess.run(
            [sys.executable, "-m", "rlhf_studio", "runs", "stop", folder.name],
            capture_output=True,
            text=True,
            timeout=15,
        )
        assert stop.returncode == 0, stop.stderr
        assert child.wait(timeout=10) != 0
    finally:
        child.kill()
    assert read_status(folder).state == CANCELLED
    assert group_members(child.pid) == []
    assert f"Run {folder.name}" in terminal.read_text()  # the terminal sees the log ...
    assert f"Run {folder.name}" in (folder / LOG_FILE).read_text()  # ... and so does train.log
    assert [path.name for path in workspace.runs_dir.iterdir()] == [folder.name]


def test_training_children_do_not_inherit_the_sign_in_secrets(workspace, monkeypatch):
    from rlhf_studio.runner.processes import child_env

    monkeypatch.setenv("RLHF_STUDIO_PASSWORD", "s3cret")
    monkeypatch.setenv("RLHF_STUDIO_USERS_FILE", "/etc/studio-users")
    monkeypatch.setenv("HF_TOKEN", "hf_for_gated_models")  # training may need this one
    env = child_env(workspace)
    assert "RLHF_STUDIO_PASSWORD" not in env and "RLHF_STUDIO_USERS_FILE" not in env
    assert env["HF_TOKEN"] == "hf_for_gated_models" and env["RLHF_STUDIO_HOME"] == str(workspace.root)
