"""Reward model: TRL's RewardTrainer on preference pairs.

The model is AutoModelForSequenceClassification with one output (num_labels=1) on the base model or an SFT
run's model, trained with -log sigmoid(r_chosen - r_rejected). TRL logs `accuracy` (share of pairs where the
chosen reply scores higher) and `margin` (mean r_chosen - r_rejected), as `eval_accuracy` / `eval_margin` on
the eval split. Pairs longer than max_length are dropped by TRL, not truncated.
"""

from __future__ import annotations

from pathlib import Path

from rlhf_studio.config import RewardJobConfig
from rlhf_studio.training.common import (
    REWARD,
    load_splits,
    load_starting_point,
    lora_config,
    training_arguments,
)
from rlhf_studio.workspace import Workspace


def build_trainer(config: RewardJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for a reward-model job."""
    from trl import RewardConfig, RewardTrainer

    start = load_starting_point(config, workspace, REWARD)
    start.model.config.pad_token_id = start.tokenizer.pad_token_id  # the head reads the last non-pad token
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = RewardConfig(
        **training_arguments(config, run_dir, has_eval=evaluation is not None),
        center_rewards_coefficient=config.center_rewards_coefficient,
    )
    trainer = RewardTrainer(
        model=start.model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=start.tokenizer,
        callbacks=callbacks,
        peft_config=lora_config(config, start.model, "SEQ_CLS"),  # SEQ_CLS also trains and saves the head
    )
    return trainer, start.source
