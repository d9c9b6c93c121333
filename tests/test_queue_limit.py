"""The queue's limit: a flood of submissions is refused with one sentence that names the limit, by the job
runner, the pipeline runner and the Train tab alike; nothing is created for a refused run.

The job runner starts a stand-in for the training interpreter (a shell loop that writes to the log until its
run folder holds a `release` file), so the first job "trains" as long as the test wants and the rest wait.
"""

from __future__ import annotations

import threading
import time

import gradio as gr
import pytest
from test_pipelines import complete
from test_training_common import PREFERENCE_ROWS, SFT_ROWS, add_dataset, tiny_config

from rlhf_studio.runner.jobs import MAX_QUEUED, MAX_QUEUED_ENV, JobManager, QueueFull
from rlhf_studio.runner.monitor import MetricsReader
from rlhf_studio.runner.pipelines import PipelineRunner, load_pipelines
from rlhf_studio.runner.runs import COMPLETED, FAILED, finish_status, list_runs, read_status, run_dir
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.ui.errors import user_errors
from rlhf_studio.ui.train_tab import TrainTab

FULL = (
    "The queue is full: it holds at most {} (RLHF_STUDIO_MAX_QUEUED); "
    "try again once one of them has started or been stopped."
)


@pytest.fixture
def sft(workspace, tiny_model_dir):
    dataset = add_dataset(workspace, "sft-rows", SFT_ROWS)
    return lambda **overrides: tiny_config(SFTJobConfig, tiny_model_dir, dataset, **overrides)


def wait_running(jobs: JobManager, run_id: str) -> None:
    deadline = time.monotonic() + 10
    while jobs.running() != run_id:
        assert time.monotonic() < deadline, "the first job did not start"
        time.sleep(0.05)


def run_count(workspace) -> int:
    return len(list_runs(workspace))


def test_the_limit_defaults_to_32_and_is_set_by_the_environment(workspace, monkeypatch):
    monkeypatch.delenv(MAX_QUEUED_ENV, raising=False)
    jobs = JobManager(workspace)
    jobs.shutdown()
    assert jobs.max_queued == MAX_QUEUED == 32
    monkeypatch.setenv(MAX_QUEUED_ENV, "0")
    with pytest.raises(ValueError, match="RLHF_STUDIO_MAX_QUEUED must be a whole number of at least 1"):
        JobManager(workspace)


def test_a_flooded_queue_refuses_with_the_limit_named(workspace, sft, stand_in, monkeypatch):
    monkeypatch.setenv(MAX_QUEUED_ENV, "3")
    jobs = JobManager(workspace, python=stand_in)
    try:
        running = jobs.submit(sft())
        wait_running(jobs, running)
        waiting = [jobs.submit(sft()) for _ in range(3)]
        assert jobs.queue() == waiting
        with pytest.raises(QueueFull) as refused:
            jobs.submit(sft())
        assert str(refused.value) == FULL.format("3 waiting runs")
        assert run_count(workspace) == 4  # the refused run left no folder behind

        failed = waiting[2]  # made a failed run: resuming one needs a place in the queue too
        jobs.stop(failed)
        finish_status(run_dir(workspace, failed), FAILED, "out of memory", "OutOfMemoryError")
        jobs.submit(sft())
        with pytest.raises(QueueFull, match="at most 3 waiting runs"):
            jobs.resume(failed)
        assert read_status(run_dir(workspace, failed)).state == FAILED

        jobs.stop(waiting[0])  # one free place, twenty submissions at once: exactly one gets it
        outcomes: list[str] = []
        config = sft()
        threads = [
            threading.Thread(target=lambda: outcomes.append(try_submit(jobs, config))) for _ in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (outcomes.count("queued"), outcomes.count("full")) == (1, 19)
        assert len(jobs.queue()) == 3 and run_count(workspace) == 6
    finally:
        jobs.shutdown()


def try_submit(jobs: JobManager, config) -> str:
    try:
        jobs.submit(config)
    except QueueFull:
        return "full"
    return "queued"


@pytest.fixture
def pipeline_configs(workspace, tiny_model_dir, sft):
    preferences = add_dataset(workspace, "pairs", PREFERENCE_ROWS)
    return [sft(), tiny_config(DPOJobConfig, tiny_model_dir, preferences)]


def test_a_full_queue_refuses_a_new_pipeline_and_holds_the_next_stage_of_a_started_one(
    workspace, sft, pipeline_configs, stand_in, tiny_model_dir
):
    jobs = JobManager(workspace, python=stand_in, max_queued=1)
    runner = PipelineRunner(jobs, poll_seconds=None)
    try:
        blocker = jobs.submit(sft())
        wait_running(jobs, blocker)
        pipeline = runner.start("sft-dpo", pipeline_configs)  # its first stage takes the one place
        first = pipeline.stages[0].run_id
        assert jobs.queue() == [first]
        with pytest.raises(QueueFull, match="at most 1 waiting run "):
            runner.start("sft-dpo", pipeline_configs)
        with pytest.raises(QueueFull):
            runner.submit(sft())
        assert list(load_pipelines(workspace)) == [pipeline.pipeline_id] and run_count(workspace) == 2

        complete(workspace, first, tiny_model_dir)  # as if it trained; it still holds its place in the queue
        runner.poll()
        assert pipeline.state == "running" and pipeline.stages[1].run_id is None
        assert pipeline.message.startswith("Stage 2 (dpo) waits to be queued. The queue is full")

        (run_dir(workspace, blocker) / "release").touch()  # the blocker ends; the finished stage leaves
        deadline = time.monotonic() + 10
        while jobs.queue() and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.poll()
        second = pipeline.stages[1].run_id
        assert second is not None and pipeline.state == "running"
        assert read_status(run_dir(workspace, first)).state == COMPLETED
    finally:
        runner.shutdown()
        jobs.shutdown()


def test_the_train_tab_shows_the_queue_full_sentence(workspace, sft, tiny_model_dir, stand_in):
    jobs = JobManager(workspace, python=stand_in, max_queued=1)
    runner = PipelineRunner(jobs, poll_seconds=None)
    try:
        wait_running(jobs, jobs.submit(sft()))
        jobs.submit(sft())
        with gr.Blocks():
            view = TrainTab(runner, MetricsReader())
        shown = view.form.show("sft", view.form.defaults("sft"))
        widgets = set(view.form.widgets.values())
        inputs = {
            widget: update["value"]
            for widget, update in shown.items()
            if widget in widgets and update["visible"]
        }
        inputs.update(
            {
                view.stage: "sft",
                view.editing: "sft",
                view.values: {},
                view.settings_for: "sft",
                view.model: str(tiny_model_dir),
                view.reward: None,
                view.launched: {},
                **{dropdown: "sft-rows" for dropdown in view.datasets.values()},
            }
        )
        with pytest.raises(gr.Error) as refused:
            user_errors(view.on_start)(inputs, None)
        assert refused.value.message == FULL.format("1 waiting run")
        assert len(jobs.queue()) == 1
    finally:
        runner.shutdown()
        jobs.shutdown()
