"""Pipelines: checks before anything starts, stage sequencing with run:<id> links, stop/resume, restart.

The fast tests drive PipelineRunner.poll() over a JobManager stand-in whose runs are real run folders whose
state the test sets; the slow test runs a real SFT -> DPO pipeline on the tiny model.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from rlhf_studio.config import ConfigError
from rlhf_studio.runner.jobs import JobManager
from rlhf_studio.runner.pipelines import (
    RUNNING as PIPELINE_RUNNING,
)
from rlhf_studio.runner.pipelines import (
    PipelineRunner,
    available_pipelines,
    launch_errors,
    load_pipelines,
    pipelines_dir,
)
from rlhf_studio.runner.runs import (
    ACTIVE_STATES,
    CANCELLED,
    COMPLETED,
    CONFIG_FILE,
    FAILED,
    MODEL_DIR,
    QUEUED,
    RUNNING,
    create_run,
    finish_status,
    lineage,
    read_status,
    run_dir,
    update_status,
)
from rlhf_studio.stages import load_config, validate
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.ppo import PPOJobConfig
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.stages.sft import SFTJobConfig

TINY = {"max_steps": 2, "logging_steps": 1, "per_device_train_batch_size": 2, "max_length": 64}


class FakeJobs:
    """The JobManager's interface without processes: submit makes a real queued run folder."""

    def __init__(self, workspace) -> None:
        self.workspace = workspace
        self.stopped: list[str] = []

    def submit(self, config) -> str:
        validate(config, self.workspace)
        return create_run(self.workspace, config)

    def status(self, run_id):
        return read_status(run_dir(self.workspace, run_id))

    def is_active(self, run_id) -> bool:
        status = self.status(run_id)
        return status is not None and status.state in ACTIVE_STATES

    def stop(self, run_id) -> None:
        self.stopped.append(run_id)
        finish_status(run_dir(self.workspace, run_id), CANCELLED, "Stopped by the user.")

    def resume(self, run_id) -> None:
        update_status(run_dir(self.workspace, run_id), state=QUEUED, ended=None, message="")

    def check_room(self) -> None:
        """Never full: the queue's limit is tested in test_queue_limit.py."""


def write_dataset(workspace, name: str, kind: str, rows: list[dict]) -> str:
    folder = workspace.datasets_dir / name
    folder.mkdir()
    for split in ("train", "eval"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    layout = "prompt_completion" if kind == "sft" else kind
    manifest = {
        "name": name, "source_file": f"{name}.jsonl", "format": layout, "kind": kind, "style": "standard",
        "rows_total": 2 * len(rows), "rows_train": len(rows), "rows_eval": len(rows), "dropped": 0,
        "created": "2026-11-22T14:15:01+00:00",
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return name


@pytest.fixture
def datasets(workspace) -> dict[str, str]:
    sft = [{"prompt": f"What is {i} plus {i}?", "completion": f" It is {2 * i}."} for i in range(8)]
    pairs = [{"prompt": f"Say hi {i}", "chosen": " Ahoy matey!", "rejected": " Hello."} for i in range(8)]
    return {
        "sft": write_dataset(workspace, "toy-sft", "sft", sft),
        "preference": write_dataset(workspace, "toy-prefs", "preference", pairs),
    }


@pytest.fixture
def configs(tiny_model_dir, datasets):
    model = str(tiny_model_dir)
    return [
        SFTJobConfig(model=model, dataset=datasets["sft"], **TINY),
        DPOJobConfig(model=model, dataset=datasets["preference"], **TINY),
    ]


def complete(workspace, run_id: str, tiny_model_dir) -> None:
    """Make a run look finished: a model folder and a `completed` status."""
    shutil.copytree(tiny_model_dir, run_dir(workspace, run_id) / MODEL_DIR)
    finish_status(run_dir(workspace, run_id), COMPLETED)


def test_stages_run_in_order_each_from_the_previous_run(workspace, configs, tiny_model_dir):
    runner = PipelineRunner(FakeJobs(workspace), poll_seconds=None)
    pipeline = runner.start("sft-dpo", configs)
    sft_run = pipeline.stages[0].run_id
    assert pipeline.stages[1].run_id is None and read_status(run_dir(workspace, sft_run)).state == QUEUED
    runner.poll()
    assert pipeline.stages[1].run_id is None  # the SFT run has not finished
    complete(workspace, sft_run, tiny_model_dir)
    runner.poll()
    dpo_run = pipeline.stages[1].run_id
    dpo_config = load_config(run_dir(workspace, dpo_run) / CONFIG_FILE)
    assert (dpo_config.model, dpo_config.parent_run) == (f"run:{sft_run}", sft_run)
    assert dpo_config.beta == configs[1].beta and dpo_config.dataset == "toy-prefs"
    assert lineage(workspace, dpo_run) == [dpo_run, sft_run]
    assert load_pipelines(workspace)[pipeline.pipeline_id].stages[1].run_id == dpo_run  # on disk
    complete(workspace, dpo_run, tiny_model_dir)
    runner.poll()
    assert pipeline.state == COMPLETED and dpo_run in pipeline.message


def test_a_failed_stage_stops_the_pipeline_and_says_which(workspace, configs):
    runner = PipelineRunner(FakeJobs(workspace), poll_seconds=None)
    pipeline = runner.start("sft-dpo", configs)
    sft_run = pipeline.stages[0].run_id
    finish_status(run_dir(workspace, sft_run), FAILED, "loss is nan at step 3: training stopped")
    runner.poll()
    assert pipeline.state == FAILED and pipeline.stages[1].run_id is None
    assert f"stage 1 of 2 (sft, run {sft_run})" in pipeline.message and "loss is nan" in pipeline.message
    assert len(list(workspace.runs_dir.iterdir())) == 1  # DPO never started


def test_every_stage_is_checked_before_anything_starts(workspace, configs, datasets):
    configs[1].dataset = datasets["sft"]  # SFT rows cannot train DPO
    configs[0].learning_rate = 0
    runner = PipelineRunner(FakeJobs(workspace), poll_seconds=None)
    with pytest.raises(ConfigError) as refused:
        runner.start("sft-dpo", configs)
    assert "sft learning_rate: must be above 0 and below 1" in refused.value.errors
    assert any(line.startswith("dpo dataset:") and "preference" in line for line in refused.value.errors)
    assert not any(line.startswith("dpo model") for line in refused.value.errors)  # linked: checked later
    assert list(workspace.runs_dir.iterdir()) == [] and not pipelines_dir(workspace).exists()


def test_launch_errors_check_data_fit_and_model(workspace, datasets):
    config = DPOJobConfig(model="/no/such/model", dataset=datasets["sft"])
    errors = launch_errors(config, workspace)
    assert any(line.startswith("model:") and "does not exist" in line for line in errors)
    assert any(line.startswith("dataset:") for line in errors)


def test_stop_cancels_the_current_run_and_resume_continues(workspace, configs, tiny_model_dir):
    jobs = FakeJobs(workspace)
    runner = PipelineRunner(jobs, poll_seconds=None)
    pipeline = runner.start("sft-dpo", configs)
    sft_run = pipeline.stages[0].run_id
    update_status(run_dir(workspace, sft_run), state=RUNNING)
    runner.stop(pipeline.pipeline_id)
    assert jobs.stopped == [sft_run] and pipeline.state == CANCELLED
    assert "stage 1 of 2 (sft" in pipeline.message
    runner.resume_run(sft_run)  # the Monitor's Resume on the stopped stage resumes the pipeline too
    assert pipeline.state == RUNNING and read_status(run_dir(workspace, sft_run)).state == QUEUED
    complete(workspace, sft_run, tiny_model_dir)
    runner.poll()
    assert pipeline.stages[1].run_id is not None


def test_a_restarted_app_goes_on_watching(workspace, configs, tiny_model_dir):
    pipeline = PipelineRunner(FakeJobs(workspace), poll_seconds=None).start("sft-dpo", configs)
    complete(workspace, pipeline.stages[0].run_id, tiny_model_dir)
    again = PipelineRunner(FakeJobs(workspace), poll_seconds=None)
    again.poll()
    reloaded = again.get(pipeline.pipeline_id)
    assert reloaded.stages[1].run_id is not None and reloaded.state == RUNNING
    assert again.pipeline_of(reloaded.stages[1].run_id) is reloaded


def test_every_pipeline_is_offered():
    assert available_pipelines() == ["sft-rm-ppo", "sft-rm-grpo", "sft-rm-rloo", "sft-dpo", "sft-kto"]


@pytest.mark.slow
def test_real_sft_then_dpo_pipeline(workspace, configs):
    jobs = JobManager(workspace)
    runner = PipelineRunner(jobs, poll_seconds=0.2)
    try:
        pipeline = runner.start("sft-dpo", configs)
        sft_run = pipeline.stages[0].run_id
        assert jobs.wait(sft_run, timeout=300).state == COMPLETED
        deadline = time.monotonic() + 10
        while pipeline.stages[1].run_id is None and time.monotonic() < deadline:
            time.sleep(0.1)
        dpo_run = pipeline.stages[1].run_id
        assert jobs.wait(dpo_run, timeout=300).state == COMPLETED
        runner.poll()
        assert pipeline.state == COMPLETED
        assert read_status(run_dir(workspace, dpo_run)).parent == sft_run
    finally:
        runner.shutdown()
        jobs.shutdown()


@pytest.mark.slow
def test_real_sft_rm_ppo_pipeline_links_policy_and_reward_model(workspace, configs, datasets, tiny_model_dir):
    sft, _ = configs
    rm = RewardJobConfig(model=str(tiny_model_dir), dataset=datasets["preference"], **TINY)
    ppo = PPOJobConfig(
        model=str(tiny_model_dir),
        reward_model="",  # filled in with the RM stage's run
        dataset=datasets["preference"],
        max_steps=1,
        response_length=4,
        per_device_train_batch_size=2,
        num_mini_batches=1,
        max_length=64,
    )
    jobs = JobManager(workspace)
    runner = PipelineRunner(jobs, poll_seconds=0.2)
    try:
        pipeline = runner.start("sft-rm-ppo", [sft, rm, ppo])
        deadline = time.monotonic() + 600
        while pipeline.state == PIPELINE_RUNNING and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pipeline.state == COMPLETED, pipeline.message
        sft_run, rm_run, ppo_run = (stage.run_id for stage in pipeline.stages)
        ppo_config = load_config(run_dir(workspace, ppo_run) / "config.yaml")
        assert (ppo_config.model, ppo_config.reward_model) == (f"run:{sft_run}", f"run:{rm_run}")
        assert lineage(workspace, ppo_run) == [ppo_run, sft_run]
        assert "objective/scores" in read_status(run_dir(workspace, ppo_run)).summary
    finally:
        runner.shutdown()
        jobs.shutdown()
