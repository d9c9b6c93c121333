"""PPO as a stage of the job runner, like any other: a real child process trains the tiny model against a tiny
reward model; stop, kill -9 and resume behave as for the TRL stages; the CLI takes a PPO config file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_jobs import FINISH_SECONDS, group_members, training_steps, wait_training, wait_until

from rlhf_studio.config import LoraSettings, save_config
from rlhf_studio.data import import_dataset
from rlhf_studio.runner.runs import (
    CANCELLED,
    COMPLETED,
    FAILED,
    MODEL_DIR,
    newest_checkpoint,
    read_status,
    run_dir,
)
from rlhf_studio.stages.ppo import PPOJobConfig

LONG_RUN = 100_000  # steps


def tiny_ppo_job(model_dir, reward_dir, **overrides) -> PPOJobConfig:
    """A PPO job on the tiny models and the "prompts" dataset that runs a step in seconds (LoRA, 6 tokens)."""
    values = dict(
        model=str(model_dir),
        reward_model=str(reward_dir),
        dataset="prompts",
        response_length=6,
        per_device_train_batch_size=2,
        num_mini_batches=1,
        max_length=64,
        sample_steps=1,
        lora=LoraSettings(enabled=True, r=4, alpha=8),
    )
    return PPOJobConfig(**{**values, **overrides})


@pytest.fixture
def config(workspace, tiny_model_dir, tiny_reward_dir):
    import_dataset(workspace, "assets/demo/prompts.jsonl", "prompts", eval_fraction=0.0)

    def make(**overrides) -> PPOJobConfig:
        settings = {"max_steps": 2, "save_steps": 1000, **overrides}
        return tiny_ppo_job(tiny_model_dir, tiny_reward_dir, **settings)

    return make


@pytest.mark.slow
def test_ppo_job_trains_in_the_runner_and_stops_within_seconds(manager, workspace, config):
    long_run = manager.submit(config(max_steps=LONG_RUN))
    short_run = manager.submit(config())
    running = wait_training(run_dir(workspace, long_run))
    asked = time.monotonic()
    manager.stop(long_run)
    stopped = manager.wait(long_run, timeout=10)
    assert time.monotonic() - asked < 10
    assert stopped.state == CANCELLED and group_members(running.pgid) == []

    finished = manager.wait(short_run, FINISH_SECONDS)
    assert finished.state == COMPLETED, finished.message
    folder = run_dir(workspace, short_run)
    rows = training_steps(folder)
    assert [row["step"] for row in rows] == [1, 2]
    assert all(isinstance(row["objective/scores"], float) for row in rows)
    assert (folder / MODEL_DIR / "adapter_config.json").is_file()
    assert (folder / "samples.jsonl").read_text().count("\n") >= 2
    assert finished.summary["global_step"] == 2 and "objective/kl" in finished.summary


@pytest.mark.slow
def test_killed_ppo_job_fails_with_its_cause_and_resumes_from_its_checkpoint(manager, workspace, config):
    victim = manager.submit(config(max_steps=LONG_RUN, save_steps=1))
    folder = run_dir(workspace, victim)
    running = wait_training(folder)
    checkpoint = wait_until(lambda: newest_checkpoint(folder), "a PPO checkpoint")
    os.kill(running.pid, signal.SIGKILL)
    killed = manager.wait(victim, 30)
    assert (killed.state, killed.error_type) == (FAILED, "SIGKILL")

    step = int(checkpoint.name.split("-")[1])
    config_path = folder / "config.yaml"
    save_config(config(max_steps=step + 1, save_steps=1), config_path)  # the resumed part stays short
    manager.resume(victim)
    finished = manager.wait(victim, FINISH_SECONDS)
    assert finished.state == COMPLETED, finished.message
    assert finished.resumed_from.startswith("checkpoints/checkpoint-")
    steps = [row["step"] for row in training_steps(folder)]
    assert steps == sorted(set(steps)) and steps[-1] == step + 1  # no step logged twice


@pytest.mark.slow
def test_cli_trains_a_ppo_config_file(workspace, config, tmp_path):
    path = tmp_path / "ppo.yaml"
    save_config(config(max_steps=1), path)
    out = tmp_path / "run"
    finished = subprocess.run(
        [sys.executable, "-m", "rlhf_studio", "train", str(path), "--run-dir", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "RLHF_STUDIO_HOME": str(workspace.root)},
        timeout=FINISH_SECONDS,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert read_status(out).state == COMPLETED
    [row] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 1 and "objective/kl" in row
