"""Direct preference optimization: TRL's DPOTrainer on preference pairs.

    python -m rlhf_studio train dpo.yaml      # stage: dpo, model: run:<sft run>, dataset: preference pairs

The reference model is the starting model. With LoRA, `ref_model=None` and TRL computes reference log-probs
with the adapter disabled, so there is one copy of the weights; a full fine-tune gets a frozen copy made
before training (not reloaded by name: a merged adapter run exists only in memory). TRL logs `rewards/chosen`,
`rewards/rejected`, `rewards/margins` and `rewards/accuracies` (eval_ prefixed on the eval split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import JobConfig, _field, _override
from rlhf_studio.stages.base import POLICY, PREFERENCE_PAIRS, UP, Check, Stage
from rlhf_studio.workspace import Workspace

DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip


@dataclass(kw_only=True)
class DPOJobConfig(JobConfig):
    """Direct preference optimization (TRL DPOTrainer); the reference is the starting model."""

    stage: str = _override(JobConfig, "stage", "dpo", init=False)
    max_steps: int | None = _override(JobConfig, "max_steps", 40)
    learning_rate: float = _override(JobConfig, "learning_rate", 5e-5)
    per_device_train_batch_size: int = _override(JobConfig, "per_device_train_batch_size", 4)
    eval_steps: int = _override(JobConfig, "eval_steps", 20)
    beta: float = _field(
        0.1,
        "How far the model may move from the reference: higher beta, smaller moves.",
        label="β (KL strength)",
        basic=True,
    )
    loss_type: str = _field(
        "sigmoid",
        "DPO loss variant (TRL loss_type): sigmoid is the original DPO loss.",
        choices=DPO_LOSS_TYPES,
    )


def checks(config: DPOJobConfig) -> list[Check]:
    return [
        ("beta", config.beta > 0, "must be above 0"),
        ("loss_type", config.loss_type in DPO_LOSS_TYPES, f"must be one of {', '.join(DPO_LOSS_TYPES)}"),
    ]


def build_trainer(config: DPOJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for a DPO job."""
    from trl import DPOConfig, DPOTrainer

    from rlhf_studio.training.common import (
        CAUSAL,
        frozen_reference,
        load_splits,
        load_starting_point,
        trainer_inputs,
    )
    from rlhf_studio.training.common import training_arguments as shared

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = DPOConfig(
        **shared(config, run_dir, has_eval=evaluation is not None),
        beta=config.beta,
        loss_type=[config.loss_type],
    )
    inputs = trainer_inputs(config, start, train, evaluation, callbacks, "CAUSAL_LM")
    return DPOTrainer(ref_model=frozen_reference(inputs), args=args, **inputs), start.source


STAGE = Stage(
    name="dpo",
    label="DPO",
    when="you have preference pairs and an SFT model: simple, stable preference tuning, no reward model.",
    config=DPOJobConfig,
    data=PREFERENCE_PAIRS,
    produces=POLICY,
    charts=(
        "loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "eval_rewards/accuracies",
    ),
    learning={"eval_rewards/margins": UP, "eval_rewards/accuracies": UP, "rewards/margins": UP},
    build_trainer=build_trainer,
    checks=checks,
    rlhf=True,
)
