"""Reward model: TRL's RewardTrainer on preference pairs.

    python -m rlhf_studio train rm.yaml       # stage: rm, model: run:<sft run>, dataset: preference pairs

The model is AutoModelForSequenceClassification with one output (num_labels=1) on the base model or an SFT
run's model, trained with -log sigmoid(r_chosen - r_rejected). TRL logs `accuracy` (share of pairs where the
chosen reply scores higher) and `margin` (mean r_chosen - r_rejected), as `eval_accuracy` / `eval_margin` on
the eval split. Pairs longer than max_length are dropped by TRL, not truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import JobConfig, _field, _override
from rlhf_studio.stages.base import POLICY, PREFERENCE_PAIRS, REWARD_MODEL, UP, Check, Stage
from rlhf_studio.workspace import Workspace


@dataclass(kw_only=True)
class RewardJobConfig(JobConfig):
    """Reward model (TRL RewardTrainer): one-output classifier, loss -log sigmoid(r_chosen - r_rejected)."""

    stage: str = _override(JobConfig, "stage", "rm", init=False)
    center_rewards_coefficient: float | None = _field(
        None, "Weight of a penalty that keeps rewards centred on zero (0.01 is typical); empty: off."
    )


def checks(config: RewardJobConfig) -> list[Check]:
    coefficient = config.center_rewards_coefficient
    return [("center_rewards_coefficient", coefficient is None or coefficient >= 0, "must be 0 or more")]


def build_trainer(config: RewardJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for a reward-model job."""
    from trl import RewardConfig, RewardTrainer

    from rlhf_studio.training.common import REWARD, load_splits, load_starting_point, trainer_inputs
    from rlhf_studio.training.common import training_arguments as shared

    start = load_starting_point(config, workspace, REWARD)
    start.model.config.pad_token_id = start.tokenizer.pad_token_id  # the head reads the last non-pad token
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = RewardConfig(
        **shared(config, run_dir, has_eval=evaluation is not None),
        center_rewards_coefficient=config.center_rewards_coefficient,
    )
    inputs = trainer_inputs(config, start, train, evaluation, callbacks, "SEQ_CLS")  # SEQ_CLS saves the head
    return RewardTrainer(args=args, **inputs), start.source


STAGE = Stage(
    name="rm",
    label="Reward model",
    when="before PPO, GRPO or RLOO: it turns preference pairs into a score to optimise (and judges evals).",
    config=RewardJobConfig,
    data=PREFERENCE_PAIRS,
    produces=REWARD_MODEL,
    charts=("loss", "eval_accuracy", "eval_margin", "accuracy", "margin"),
    learning={"eval_accuracy": UP, "eval_margin": UP},
    build_trainer=build_trainer,
    checks=checks,
    starts_from=(POLICY, REWARD_MODEL),
)
