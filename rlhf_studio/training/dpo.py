"""Direct preference optimization: TRL's DPOTrainer on preference pairs.

The reference model is the starting model. With LoRA, `ref_model=None` and TRL computes reference log-probs
with the adapter disabled, so there is one copy of the weights; a full fine-tune gets a frozen copy made
before training (not reloaded by name: a merged adapter run exists only in memory). TRL logs `rewards/chosen`,
`rewards/rejected`, `rewards/margins` and `rewards/accuracies` (eval_ prefixed on the eval split).
"""

from __future__ import annotations

import copy
from pathlib import Path

from rlhf_studio.config import DPOJobConfig
from rlhf_studio.training.common import (
    CAUSAL,
    load_splits,
    load_starting_point,
    lora_config,
    training_arguments,
)
from rlhf_studio.workspace import Workspace


def build_trainer(config: DPOJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for a DPO job."""
    from trl import DPOConfig, DPOTrainer

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = DPOConfig(
        **training_arguments(config, run_dir, has_eval=evaluation is not None),
        beta=config.beta,
        loss_type=[config.loss_type],
    )
    peft_config = lora_config(config, start.model, "CAUSAL_LM")
    trainer = DPOTrainer(
        model=start.model,
        ref_model=None if peft_config else copy.deepcopy(start.model).eval().requires_grad_(False),
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=start.tokenizer,
        callbacks=callbacks,
        peft_config=peft_config,
    )
    return trainer, start.source
