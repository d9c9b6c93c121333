"""Runs never share a folder and deleting one never touches another: ids made by many threads and two
processes at once, a run whose id is a prefix of another's, deleting beside a running job, a deletion cut
short.

The job runner here starts a stand-in for the training interpreter (a shell loop writing to the run's log
until its folder holds a `release` file): a live job that writes into its folder, without a model to load.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_training_common import SFT_ROWS, add_dataset, tiny_config

from rlhf_studio.runner import runs
from rlhf_studio.runner.jobs import JobManager
from rlhf_studio.runner.runs import (
    COMPLETED,
    LOG_FILE,
    RUNNING,
    RunError,
    create_run,
    finish_status,
    init_run_folder,
    list_runs,
    read_status,
    run_dir,
)
from rlhf_studio.stages.sft import SFTJobConfig

CREATOR = """
import random, sys, time
from pathlib import Path
from rlhf_studio.runner import runs
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.workspace import Workspace

root, seed, go, count = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
runs.secrets.token_hex = lambda n: f"{random.randrange(SUFFIXES):04x}"  # ids collide often
while not go.exists():
    time.sleep(0.001)
for _ in range(count):
    print(runs.create_run(Workspace.at(root), SFTJobConfig(model="m", dataset="d", seed=seed)), flush=True)
"""
SUFFIXES = 128  # instead of 65536: many runs made in one second must collide and pick again


def finished_run(workspace, run_id: str) -> Path:
    """A completed run with a model and a checkpoint, under the given id."""
    folder = workspace.runs_dir / run_id
    folder.mkdir()
    init_run_folder(folder, SFTJobConfig(model="m", dataset="d"))
    for part in ("model", "checkpoints/checkpoint-2"):
        (folder / part).mkdir(parents=True)
        (folder / part / "model.safetensors").write_bytes(b"w" * 1000)
    finish_status(folder, COMPLETED)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_many_runs_created_at_once_from_threads_and_two_processes_never_share_a_folder(
    workspace, tmp_path, monkeypatch
):
    go = tmp_path / "go"
    creators = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"SUFFIXES = {SUFFIXES}\n{CREATOR}",
                str(workspace.root),
                str(seed),
                str(go),
                "16",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: f"{random.randrange(SUFFIXES):04x}")
    made: dict[int, list[str]] = {3: []}

    def create_four() -> None:
        while not go.exists():
            time.sleep(0.001)
        for _ in range(4):
            made[3].append(create_run(workspace, SFTJobConfig(model="m", dataset="d", seed=3)))

    threads = [threading.Thread(target=create_four) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every creator is waiting at the line
    go.touch()
    for thread in threads:
        thread.join()
    for seed, creator in zip((1, 2), creators, strict=True):
        out, _ = creator.communicate(timeout=60)
        assert creator.returncode == 0
        made[seed] = out.split()

    every_id = [run_id for ids in made.values() for run_id in ids]
    assert len(every_id) == 64 and len(set(every_id)) == 64
    assert sorted(row.run_id for row in list_runs(workspace)) == sorted(every_id)
    for seed, ids in made.items():  # each folder holds what its own creator wrote, and nobody else's
        for run_id in ids:
            folder = run_dir(workspace, run_id)
            assert read_status(folder).run_id == run_id
            assert f"seed: {seed}\n" in (folder / "config.yaml").read_text()


def test_deleting_runs_beside_a_running_job_touches_only_them(
    workspace, stand_in, tiny_model_dir, monkeypatch
):
    dataset = add_dataset(workspace, "sft-rows", SFT_ROWS)
    jobs = JobManager(workspace, python=stand_in)
    try:
        running = jobs.submit(tiny_config(SFTJobConfig, tiny_model_dir, dataset))
        folder = run_dir(workspace, running)
        wait_for(lambda: (folder / LOG_FILE).is_file() and (folder / LOG_FILE).stat().st_size > 0, "the job")
        prefix = finished_run(workspace, running[:-2])  # 20261122-141501-sft-3f for ...-sft-3f2a
        extended = finished_run(workspace, f"{running}-b")  # ...-sft-3f2a-b
        other = finished_run(workspace, "20261122-141501-dpo-0000")
        before = snapshot(other)

        jobs.delete(prefix.name)
        with pytest.raises(RunError, match="queued or running: stop it before deleting it"):
            jobs.delete(running)
        jobs.delete(extended.name)
        assert not prefix.exists() and not extended.exists()
        assert snapshot(other) == before
        assert read_status(folder).state == RUNNING and jobs.running() == running
        assert sorted(path.name for path in workspace.runs_dir.iterdir()) == sorted([running, other.name])

        real_rmtree = shutil.rmtree

        def slow_rmtree(path, *args, **kwargs):  # gigabytes of checkpoints take a while to remove
            time.sleep(2)
            real_rmtree(path, *args, **kwargs)

        monkeypatch.setattr(shutil, "rmtree", slow_rmtree)
        deleting = threading.Thread(target=jobs.delete, args=(other.name,))
        deleting.start()
        wait_for(lambda: not other.exists(), "the rename")
        asked = time.monotonic()
        assert jobs.queue() == [] and jobs.running() == running  # the runner answers meanwhile
        assert [row.run_id for row in jobs.runs()] == [running]  # and lists no half-deleted run
        assert time.monotonic() - asked < 1.0 and deleting.is_alive()
        log_size = (folder / LOG_FILE).stat().st_size
        deleting.join()
        wait_for(lambda: (folder / LOG_FILE).stat().st_size > log_size, "the job to write on")
        assert sorted(path.name for path in workspace.runs_dir.iterdir()) == [running]
    finally:
        jobs.shutdown()


def test_a_deletion_cut_short_is_finished_by_the_next_app(workspace):
    keep = finished_run(workspace, "20261122-141501-sft-0001")
    half_deleted = workspace.runs_dir / ".deleting-20261122-141501-sft-0002-ab12cd34"
    (half_deleted / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (half_deleted / "checkpoints" / "checkpoint-2" / "model.safetensors").write_bytes(b"w" * 1000)
    before = snapshot(keep)
    JobManager(workspace).shutdown()
    assert [path.name for path in workspace.runs_dir.iterdir()] == [keep.name]
    assert snapshot(keep) == before


def wait_for(predicate, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)
