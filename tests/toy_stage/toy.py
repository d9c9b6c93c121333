"""A throwaway stage for tests/test_stage_registry.py: a stage is one module, and listing it registers it.

A few steps of TRL's SFTTrainer under another name, with one field and one check of its own, its own charts
and launch modes. Nothing in rlhf_studio knows about it: sitecustomize.py (in this folder) appends it to the
registry of any Python process started with this folder on PYTHONPATH, and the test adds it to its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_studio.config.base import JobConfig, _field, _override
from rlhf_studio.stages.base import DEMONSTRATIONS, DOWN, POLICY, Stage


@dataclass(kw_only=True)
class ToyJobConfig(JobConfig):
    """Toy stage: a few supervised steps, to show that a stage is one module."""

    stage: str = _override(JobConfig, "stage", "toy", init=False)
    max_steps: int | None = _override(JobConfig, "max_steps", 3)
    logging_steps: int = _override(JobConfig, "logging_steps", 1)
    eval_on_start: bool = _override(JobConfig, "eval_on_start", False)
    toy_weight: float = _field(1.0, "A field only this stage has; must be above 0.", label="Toy weight")


def checks(config: ToyJobConfig):
    return [("toy_weight", config.toy_weight > 0, "must be above 0")]


def build_trainer(config: ToyJobConfig, run_dir, workspace, callbacks):
    from trl import SFTConfig, SFTTrainer

    from rlhf_studio.training.common import CAUSAL, load_splits, load_starting_point, trainer_inputs
    from rlhf_studio.training.common import training_arguments as shared

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = SFTConfig(**shared(config, run_dir, has_eval=evaluation is not None), packing=False)
    inputs = trainer_inputs(config, start, train, evaluation, callbacks, "CAUSAL_LM")
    return SFTTrainer(args=args, **inputs), start.source


STAGE = Stage(
    name="toy",
    label="Toy",
    when="a test needs a stage nobody else knows.",
    config=ToyJobConfig,
    data=DEMONSTRATIONS,
    produces=POLICY,
    charts=("grad_norm", "loss"),
    learning={"loss": DOWN},
    build_trainer=build_trainer,
    checks=checks,
    launch=("ddp", "fsdp"),
)
