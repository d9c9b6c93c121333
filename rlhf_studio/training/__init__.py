"""What runs inside the training child: `run_stage` trains one job config into a run folder.

    summary = run_stage(config, run_dir, workspace, resume_from=None)

run_dir/metrics.jsonl    one JSON line per log (TRL's metric names + step, epoch, time, max_steps)
run_dir/checkpoints/     checkpoint-<step>, each renamed into place only once complete
run_dir/model/           the final model or LoRA adapter, with the tokenizer (safetensors)

The runner owns the folder itself, status.json, logs and the lock; this package owns what happens inside:
the shared loop around a stage's TRL Trainer (the stage's `build_trainer`, from the registry) or the
stage's own loop (its `train`: PPO, in ppo/), and the callbacks and set-up every stage shares.
Under `accelerate launch` every process calls run_stage with the same run_dir; only the main one writes
metrics and the final model. Errors: ConfigError (bad config, before loading anything), ModelError / DataError
(missing model or data), NonFiniteLossError (NaN/Inf loss), TrainingStopped (SIGTERM; a KeyboardInterrupt).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rlhf_studio.config import JobConfig
from rlhf_studio.stages import get_stage, validate
from rlhf_studio.stages.base import TrainingJob
from rlhf_studio.training.callbacks import (
    CheckpointPublisher,
    GracefulStop,
    MetricsLog,
    NonFiniteLossError,
    NonFiniteLossGuard,
    TrainingStopped,
    trim_metrics,
)
from rlhf_studio.training.common import process_state, save_final_model, staging_dir
from rlhf_studio.workspace import Workspace

METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"

__all__ = ["NonFiniteLossError", "TrainingStopped", "run_stage"]


def stage_builder(stage: str):
    """The `build_trainer(config, run_dir, workspace, callbacks) -> (trainer, start source)` of a stage."""
    return get_stage(stage).build_trainer


def run_stage(
    config: JobConfig, run_dir: Path, workspace: Workspace, resume_from: Path | None = None
) -> dict:
    """Train `config` into `run_dir` (continuing from checkpoint `resume_from`); return final metrics."""
    validate(config, workspace)
    run_dir = Path(run_dir)
    process = process_state()
    stop = GracefulStop()
    if config.report_to == "tensorboard":  # by default it writes under output_dir, our hidden staging folder
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))
    if process.is_main_process:
        prepare_run_dir(run_dir, resume_from)
    process.wait_for_everyone()
    metrics = MetricsLog(run_dir / METRICS_FILE, write=process.is_main_process)
    callbacks = [
        metrics,
        NonFiniteLossGuard(),
        CheckpointPublisher(run_dir / CHECKPOINTS_DIR, config.save_total_limit),
        stop,
    ]
    try:
        with stop.installed():
            stage = get_stage(config.stage)
            if stage.train is not None:  # a loop of its own (PPO: TRL 1.16 has no PPO trainer)
                return stage.train(TrainingJob(config, run_dir, workspace, resume_from, metrics, stop))
            trainer, start_source = stage_builder(config.stage)(config, run_dir, workspace, callbacks)
            metrics.write = trainer.is_world_process_zero()  # the Trainer's process view is the final one
            with stop.training_loop():
                trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            if stop.requested:
                raise TrainingStopped(f"Stopped on request at step {trainer.state.global_step}.")
            save_final_model(trainer, run_dir / MODEL_DIR, start_source)
    finally:
        if process.is_main_process:
            shutil.rmtree(staging_dir(run_dir), ignore_errors=True)
    return {**metrics.summary(), "global_step": trainer.state.global_step}


def prepare_run_dir(run_dir: Path, resume_from: Path | None) -> None:
    """Forget what a killed attempt left hidden; on resume, drop metrics logged after the checkpoint."""
    shutil.rmtree(staging_dir(run_dir), ignore_errors=True)
    (run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
    if resume_from is not None:
        step = json.loads((Path(resume_from) / "trainer_state.json").read_text())["global_step"]
        trim_metrics(run_dir / METRICS_FILE, after_step=step)
