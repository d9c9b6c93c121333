"""Supervised fine-tuning: TRL's SFTTrainer on prompt/completion, messages or text rows.

    python -m rlhf_studio train sft.yaml      # stage: sft, dataset: an SFT dataset of the library

Prompt/completion rows train on the completion only (TRL's default for them); with a chat template the rows
are one-turn conversations, the same format chat uses. No packing: rows are short and padding-free packing
needs FlashAttention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import JobConfig, _field, _override
from rlhf_studio.stages.base import DEMONSTRATIONS, DOWN, POLICY, Stage
from rlhf_studio.workspace import Workspace


@dataclass(kw_only=True)
class SFTJobConfig(JobConfig):
    """Supervised fine-tuning (TRL SFTTrainer) on prompt/completion, messages or text rows."""

    stage: str = _override(JobConfig, "stage", "sft", init=False)
    num_train_epochs: float = _override(JobConfig, "num_train_epochs", 2.0)
    learning_rate: float = _override(JobConfig, "learning_rate", 2e-4)
    completion_only_loss: bool | None = _field(
        None,
        "Loss on the completion only (true) or on the whole sequence (false); empty: TRL decides "
        "(completion only for prompt/completion rows).",
    )


def build_trainer(config: SFTJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for an SFT job."""
    from trl import SFTConfig, SFTTrainer

    from rlhf_studio.training.common import CAUSAL, load_splits, load_starting_point, trainer_inputs
    from rlhf_studio.training.common import training_arguments as shared

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = SFTConfig(
        **shared(config, run_dir, has_eval=evaluation is not None),
        completion_only_loss=config.completion_only_loss,
        packing=False,
    )
    inputs = trainer_inputs(config, start, train, evaluation, callbacks, "CAUSAL_LM")
    return SFTTrainer(args=args, **inputs), start.source


STAGE = Stage(
    name="sft",
    label="SFT",
    when="first: it teaches the model the task's format and voice from demonstrations.",
    config=SFTJobConfig,
    data=DEMONSTRATIONS,
    produces=POLICY,
    charts=("loss", "eval_loss", "mean_token_accuracy", "learning_rate"),
    learning={"eval_loss": DOWN, "loss": DOWN},
    build_trainer=build_trainer,
)
