"""Supervised fine-tuning: TRL's SFTTrainer on prompt/completion, messages or text rows.

Prompt/completion rows train on the completion only (TRL's default for them); with a chat template the rows
are one-turn conversations, the same format chat uses. No packing: rows are short and padding-free packing
needs FlashAttention.
"""

from __future__ import annotations

from pathlib import Path

from rlhf_studio.config import SFTJobConfig
from rlhf_studio.training.common import (
    CAUSAL,
    load_splits,
    load_starting_point,
    lora_config,
    training_arguments,
)
from rlhf_studio.workspace import Workspace


def build_trainer(config: SFTJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for an SFT job."""
    from trl import SFTConfig, SFTTrainer

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = SFTConfig(
        **training_arguments(config, run_dir, has_eval=evaluation is not None),
        completion_only_loss=config.completion_only_loss,
        packing=False,
    )
    trainer = SFTTrainer(
        model=start.model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=start.tokenizer,
        callbacks=callbacks,
        peft_config=lora_config(config, start.model, "CAUSAL_LM"),
    )
    return trainer, start.source
