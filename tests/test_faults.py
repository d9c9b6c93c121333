"""Faults in real training children, injected from outside: the job runner reports each one truthfully, keeps
the newest complete checkpoint resumable and goes on with the queue.

tests/fault_injection/sitecustomize.py rides on the children's PYTHONPATH and reads a plan file (FaultPlan)
that names, per run id, what goes wrong where: out of memory or a NaN loss in a training step, a SIGKILL in
the middle of writing a checkpoint, a disk-full error while PPO writes one, or a hang in a phase so that Stop
lands inside it. The test holds the training lock while it submits, so every child reads the plan only after
the plan names its run.

Covered elsewhere and not repeated here: kill -9 from outside mid-training (test_jobs, test_ppo_runner:
status, log tail, next job, PPO resume), a NaN loss at the very first step (test_jobs), Stop mid-training
(test_jobs, test_ppo_runner). No GPU here: whether GPU memory returns to its baseline between jobs is not
tested.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import chromium_page, needs_chromium, running_studio
from test_jobs import FINISH_SECONDS, group_members, training_steps, wait_until
from test_ppo_runner import tiny_ppo_job
from test_training_common import SFT_ROWS, add_dataset, tiny_config

from rlhf_studio.config import save_config
from rlhf_studio.data import import_dataset
from rlhf_studio.runner.child import training_lock
from rlhf_studio.runner.jobs import JobManager
from rlhf_studio.runner.runs import (
    ACTIVE_STATES,
    CANCELLED,
    CHECKPOINTS_DIR,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    LOG_FILE,
    MODEL_DIR,
    RUNNING,
    log_tail,
    newest_checkpoint,
    read_status,
    run_dir,
)
from rlhf_studio.stages.ppo import PPOJobConfig
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.training.common import STAGING_DIR
from rlhf_studio.workspace import Workspace, write_json_atomic

FAULT_SITE = Path(__file__).resolve().parent / "fault_injection"
PLAN_ENV = "RLHF_STUDIO_FAULT_PLAN"
HANG = {"action": "sleep", "seconds": 600}
STOP_SECONDS = 10  # Stop ends the whole process group within this
UNWATCHED_STEPS = 24  # at 0.5 s more per step: still training 10 s after the browser closed


class FaultPlan:
    """The plan file the injected sitecustomize reads: run id (or "*") -> faults."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.faults: dict[str, list[dict]] = {}
        self.write()

    def add(self, run_id: str, **fault) -> None:
        self.faults.setdefault(run_id, []).append(fault)
        self.write()

    def clear(self) -> None:
        self.faults = {}
        self.write()

    def write(self) -> None:
        write_json_atomic(self.path, self.faults)

    def reached(self, run_id: str, phase: str) -> bool:
        return Path(f"{self.path}.{run_id}.{phase}").exists()


@pytest.fixture
def faults(tmp_path, monkeypatch) -> FaultPlan:
    """An empty plan; every child the test's job runner starts reads it."""
    paths = [str(FAULT_SITE), os.getenv("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path for path in paths if path))
    monkeypatch.setenv(PLAN_ENV, str(tmp_path / "faults.json"))
    return FaultPlan(tmp_path / "faults.json")


@pytest.fixture
def sft(workspace, tiny_model_dir):
    """Tiny SFT job configs (full fine-tuning, one log row per step); keyword arguments override."""
    dataset = add_dataset(workspace, "sft-rows", SFT_ROWS)
    return lambda **overrides: tiny_config(SFTJobConfig, tiny_model_dir, dataset, **overrides)


def submit_with_faults(manager: JobManager, configs: list, plan: FaultPlan, faulty: dict[int, dict]) -> list:
    """Submit the configs in order; faulty[i] is the fault of the i-th run. The children wait for the
    training lock that this test holds until the plan names them."""
    with training_lock(on_wait=lambda: None):
        run_ids = [manager.submit(config) for config in configs]
        for index, fault in faulty.items():
            plan.add(run_ids[index], **fault)
    return run_ids


def published(folder: Path) -> list[str]:
    """Checkpoint names visible in the run folder (the staging folder is hidden)."""
    return sorted(path.name for path in (folder / CHECKPOINTS_DIR).iterdir() if not path.name.startswith("."))


def assert_complete_trl_checkpoint(checkpoint: Path, step: int) -> None:
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= {
        path.name for path in checkpoint.iterdir()
    }
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == step


def logged_steps(folder: Path) -> list[int]:
    """Steps of the per-step metrics rows (not the Trainer's closing summary row)."""
    return [row["step"] for row in training_steps(folder) if "loss" in row or "objective/kl" in row]


def assert_resumes_to_the_end(manager: JobManager, plan: FaultPlan, run_id: str, checkpoint: str, last: int):
    plan.clear()
    manager.resume(run_id)
    finished = manager.wait(run_id, FINISH_SECONDS)
    assert finished.state == COMPLETED, finished.message
    assert finished.resumed_from == f"{CHECKPOINTS_DIR}/{checkpoint}"
    assert finished.summary["global_step"] == last
    folder = run_dir(manager.workspace, run_id)
    assert logged_steps(folder) == list(range(1, last + 1))  # no step missing or logged twice
    assert not (folder / CHECKPOINTS_DIR / STAGING_DIR).exists()  # the killed attempt's leftovers are gone


# ---------------------------------------------------------------- faults in a job, then the queue goes on


@pytest.mark.slow
def test_five_jobs_in_a_row_one_runs_out_of_memory(manager, workspace, sft, faults):
    configs = [sft(max_steps=2, save_steps=1) for _ in range(5)]
    oom = {"phase": "training_step", "action": "raise", "error": "OutOfMemoryError", "at": 2}
    run_ids = submit_with_faults(manager, configs, faults, {2: oom})
    ended = [manager.wait(run_id, FINISH_SECONDS) for run_id in run_ids]

    assert [status.state for status in ended] == [COMPLETED, COMPLETED, FAILED, COMPLETED, COMPLETED]
    failed = ended[2]
    assert failed.error_type == "OutOfMemoryError"
    assert failed.message.startswith("Out of memory (CUDA out of memory. Tried to allocate 20.00 GiB")
    assert "smaller batch size" in failed.message
    assert any("OutOfMemoryError" in line for line in failed.log_tail)
    folders = [run_dir(workspace, run_id) for run_id in run_ids]
    firsts = [training_steps(folder)[0]["time"] for folder in folders]
    lasts = [training_steps(folder)[-1]["time"] for folder in folders]
    assert all(lasts[i] < firsts[i + 1] for i in range(4)), "the jobs ran one after another, in order"
    for folder, status in zip(folders, ended, strict=True):
        log = (folder / LOG_FILE).read_text()
        assert log.count(f"Run {folder.name} in ") == 1  # each started once, cleanly
        assert ("Traceback" in log) == (status.state == FAILED)
        assert group_members(status.pgid) == []  # no process left behind
    assert published(folders[2]) == ["checkpoint-1"] and not (folders[2] / MODEL_DIR).exists()
    assert_complete_trl_checkpoint(folders[2] / CHECKPOINTS_DIR / "checkpoint-1", 1)
    assert_resumes_to_the_end(manager, faults, run_ids[2], "checkpoint-1", last=2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault, error_type, message",
    [
        (
            {"phase": "training_step", "action": "nan", "at": 3},
            "NonFiniteLossError",
            "NaN/Inf loss: loss is nan at step 3: training stopped; lower the learning rate",
        ),
        (
            {"phase": "checkpoint_save", "action": "kill", "at": 2},
            "SIGKILL",
            "The training process was killed by signal SIGKILL.",
        ),
    ],
    ids=["nan-loss", "killed-during-checkpoint-save"],
)
def test_a_fault_after_a_checkpoint_fails_truthfully_and_the_checkpoint_resumes(
    manager, workspace, sft, faults, fault, error_type, message
):
    """(That the next queued job then starts: test_five_jobs_... after an exception in the child,
    test_jobs' kill test after a SIGKILL.)"""
    (victim,) = submit_with_faults(manager, [sft(max_steps=4, save_steps=2)], faults, {0: fault})
    failed = manager.wait(victim, FINISH_SECONDS)
    assert (failed.state, failed.error_type) == (FAILED, error_type)
    assert failed.message.startswith(message)
    folder = run_dir(workspace, victim)
    assert failed.log_tail and failed.log_tail == log_tail(folder)  # the log's last lines, kept in the status
    if error_type == "NonFiniteLossError":
        assert any("NonFiniteLossError" in line for line in failed.log_tail)
    assert published(folder) == ["checkpoint-2"] and not (folder / MODEL_DIR).exists()
    assert_complete_trl_checkpoint(folder / CHECKPOINTS_DIR / "checkpoint-2", 2)
    if fault["phase"] == "checkpoint_save":  # killed with checkpoint-4 half-written, under the hidden name
        half = folder / CHECKPOINTS_DIR / STAGING_DIR / "checkpoint-4"
        assert (half / "model.safetensors").is_file() and not (half / "optimizer.pt").exists()
    assert_resumes_to_the_end(manager, faults, victim, "checkpoint-2", last=4)


def ppo_config(workspace, model_dir: Path, reward_dir: Path, **overrides) -> PPOJobConfig:
    if not (workspace.datasets_dir / "prompts").exists():
        import_dataset(workspace, "assets/demo/prompts.jsonl", "prompts", eval_fraction=0.0)
    return tiny_ppo_job(model_dir, reward_dir, **overrides)


@pytest.mark.slow
def test_disk_full_while_ppo_writes_a_checkpoint(manager, workspace, faults, tiny_model_dir, tiny_reward_dir):
    config = ppo_config(workspace, tiny_model_dir, tiny_reward_dir, max_steps=3, save_steps=1)
    disk_full = {"phase": "ppo_checkpoint_write", "action": "raise", "error": "ENOSPC", "at": 2}
    (run_id,) = submit_with_faults(manager, [config], faults, {0: disk_full})
    failed = manager.wait(run_id, FINISH_SECONDS)
    assert (failed.state, failed.error_type, failed.message) == (
        FAILED,
        "OSError",
        "[Errno 28] No space left on device",
    )
    assert any("No space left on device" in line for line in failed.log_tail)
    folder = run_dir(workspace, run_id)
    assert published(folder) == ["checkpoint-1"]  # checkpoint-2 was half-written: never under its name
    checkpoint = folder / CHECKPOINTS_DIR / "checkpoint-1"
    expected = {"trainable.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pt", "trainer_state.json"}
    assert {path.name for path in checkpoint.iterdir()} == expected
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 1
    assert_resumes_to_the_end(manager, faults, run_id, "checkpoint-1", last=3)


# ---------------------------------------------------------------- Stop inside each phase


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["model_load", "checkpoint_save", "generation"])
def test_stop_inside_a_phase_ends_the_whole_group(
    manager, workspace, sft, faults, tiny_model_dir, tiny_reward_dir, phase
):
    if phase == "generation":  # the second step's sampling: the first step is logged
        job, fault = ppo_config(workspace, tiny_model_dir, tiny_reward_dir, max_steps=100), {"at": 2}
    else:  # loading the model, or the first checkpoint (step 2) with its weights written
        job, fault = sft(max_steps=100, save_steps=2), {}
    (run_id,) = submit_with_faults(manager, [job], faults, {0: {"phase": phase, **HANG, **fault}})
    wait_until(lambda: faults.reached(run_id, phase), f"the child to hang in {phase}")
    running = manager.status(run_id)
    assert running.state == RUNNING and group_members(running.pgid)
    asked = time.monotonic()
    manager.stop(run_id)
    stopped = manager.wait(run_id, timeout=STOP_SECONDS)
    assert time.monotonic() - asked < STOP_SECONDS
    assert (stopped.state, stopped.message) == (CANCELLED, "Stopped by the user.")
    assert group_members(running.pgid) == []
    folder = run_dir(workspace, run_id)
    assert newest_checkpoint(folder) is None and not (folder / MODEL_DIR).exists()
    assert stopped.log_tail


# ---------------------------------------------------------------- the app restarts mid-job

APP_STAND_IN = """
import sys, time
from rlhf_studio.stages import load_config
from rlhf_studio.runner.jobs import JobManager
from rlhf_studio.workspace import Workspace
manager = JobManager(Workspace.from_env())
for path in sys.argv[1:]:
    print(manager.submit(load_config(path)), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_app_restart_mid_job_interrupts_it_and_resume_ends_where_an_uninterrupted_run_does(
    workspace, sft, faults, tmp_path
):
    """The app and its training die together (a machine or container restart); the next app marks the
    run interrupted; resumed, it ends at the step and loss of the same job run without interruption."""
    paths = [tmp_path / "job.yaml", tmp_path / "next.yaml"]
    save_config(sft(max_steps=6, save_steps=2), paths[0])
    save_config(sft(), paths[1])  # queued behind it
    faults.add("*", phase="training_step", action="sleep", seconds=0.4, every=True)  # mid-run when killed
    app = subprocess.Popen(
        [sys.executable, "-c", APP_STAND_IN, *map(str, paths)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        run_id, waiting = app.stdout.readline().strip(), app.stdout.readline().strip()
        folder = run_dir(workspace, run_id)
        wait_until(lambda: newest_checkpoint(folder) and len(training_steps(folder)) >= 3, "steps past 2")
        child = read_status(folder)
    finally:
        os.killpg(app.pid, signal.SIGKILL)
        app.wait()
    os.killpg(child.pgid, signal.SIGKILL)
    wait_until(lambda: group_members(child.pgid) == [], "the training to die")
    faults.clear()

    manager = JobManager(workspace)  # the restarted app
    try:
        interrupted = manager.status(run_id)
        assert (interrupted.state, interrupted.message) == (
            INTERRUPTED,
            "The training process ended without reporting.",
        )
        assert (manager.status(waiting).state, manager.status(waiting).message) == (
            INTERRUPTED,
            "The app stopped before this run started.",
        )  # not started by itself when the app opens
        checkpoint = newest_checkpoint(folder).name
        manager.resume(run_id)
        reference = manager.submit(sft(max_steps=6, save_steps=2))
        resumed = manager.wait(run_id, FINISH_SECONDS)
        uninterrupted = manager.wait(reference, FINISH_SECONDS)
    finally:
        manager.shutdown()
    assert resumed.state == uninterrupted.state == COMPLETED, resumed.message
    assert resumed.resumed_from == f"{CHECKPOINTS_DIR}/{checkpoint}"
    assert f"Resuming from {folder / CHECKPOINTS_DIR / checkpoint}" in (folder / LOG_FILE).read_text()
    assert resumed.summary["global_step"] == uninterrupted.summary["global_step"] == 6
    reference_folder = run_dir(workspace, reference)
    assert logged_steps(folder) == logged_steps(reference_folder) == [1, 2, 3, 4, 5, 6]
    assert training_steps(folder)[-1]["step"] == training_steps(reference_folder)[-1]["step"] == 6
    assert step_losses(folder)[6] == pytest.approx(step_losses(reference_folder)[6], rel=1e-3)


def step_losses(folder: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in training_steps(folder) if "loss" in row}


# ---------------------------------------------------------------- no browser attached


@pytest.mark.slow
@needs_chromium
def test_closing_every_browser_window_does_not_stop_training(tmp_path, tiny_model_dir, faults):
    from playwright.sync_api import expect
    from test_ui_train_monitor import DEMO_PREFERENCES, TRAINING_MS, choose_dpo, run_ids

    root = tmp_path / "workspace"
    import_dataset(Workspace.at(root), DEMO_PREFERENCES, "demo-prefs")
    faults.add("*", phase="training_step", action="sleep", seconds=0.5, every=True)  # a slower tiny job
    with running_studio(root, env={"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}) as url:
        with chromium_page() as page:
            page.goto(url)
            choose_dpo(page, max_steps=UNWATCHED_STEPS)
            page.locator("#train-start").click()
            expect(page.locator("#train-message")).to_contain_text("Started")
            (run_id,) = run_ids(root)
            status = page.locator("#train-status")
            expect(status).to_contain_text(re.compile(r"step [1-9]"), timeout=TRAINING_MS)
        folder = root / "runs" / run_id
        closed_at = training_steps(folder)[-1]["step"]  # the browser is gone: nobody polls the app
        time.sleep(10)
        assert training_steps(folder)[-1]["step"] >= closed_at + 5
        finished = wait_until(
            lambda: (status := read_status(folder)).state not in ACTIVE_STATES and status, "the run to end"
        )
        assert finished.state == COMPLETED and training_steps(folder)[-1]["step"] == UNWATCHED_STEPS
        with chromium_page() as page:  # a new window shows the run that finished meanwhile
            page.goto(url)
            page.get_by_role("tab", name="Monitor").click()
            expect(page.locator("#monitor-runs")).to_contain_text(run_id)
            expect(page.locator("#monitor-progress")).to_contain_text("completed")
