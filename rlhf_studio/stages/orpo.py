"""ORPO (odds-ratio preference optimisation): TRL's ORPOTrainer on preference pairs, from the base model.

    python -m rlhf_studio train orpo.yaml     # stage: orpo, model: the base, dataset: preference pairs

One stage instead of SFT then DPO: the loss is the SFT loss on the chosen reply plus beta times a log
odds-ratio term that makes the chosen reply more likely than the rejected one. There is no reference model,
so it needs half the forward passes of DPO. TRL logs `nll_loss`, `log_odds_ratio`, `rewards/chosen`,
`rewards/rejected`, `rewards/margins` and `rewards/accuracies` (eval_ prefixed on the eval split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import JobConfig, _field, _override
from rlhf_studio.stages.base import DOWN, POLICY, PREFERENCE_PAIRS, UP, Check, Stage
from rlhf_studio.workspace import Workspace


@dataclass(kw_only=True)
class ORPOJobConfig(JobConfig):
    """ORPO (TRL ORPOTrainer): SFT and preference learning in one stage from the base model, no reference
    model; trains on preference pairs."""

    stage: str = _override(JobConfig, "stage", "orpo", init=False)
    max_steps: int | None = _override(JobConfig, "max_steps", 40)
    learning_rate: float = _override(JobConfig, "learning_rate", 2e-4)
    per_device_train_batch_size: int = _override(JobConfig, "per_device_train_batch_size", 4)
    eval_steps: int = _override(JobConfig, "eval_steps", 20)
    beta: float = _field(
        0.1,
        "Weight of the odds-ratio term beside the SFT loss (lambda in the ORPO paper).",
        label="β (odds-ratio weight)",
        basic=True,
    )


def checks(config: ORPOJobConfig) -> list[Check]:
    return [("beta", config.beta > 0, "must be above 0")]


def build_trainer(config: ORPOJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for an ORPO job."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from rlhf_studio.training.common import CAUSAL, load_splits, load_starting_point, trainer_inputs
    from rlhf_studio.training.common import training_arguments as shared

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = ORPOConfig(**shared(config, run_dir, has_eval=evaluation is not None), beta=config.beta)
    inputs = trainer_inputs(config, start, train, evaluation, callbacks, "CAUSAL_LM")
    return ORPOTrainer(args=args, **inputs), start.source


STAGE = Stage(
    name="orpo",
    label="ORPO",
    when="you have preference pairs and want one stage straight from the base model, without SFT first.",
    config=ORPOJobConfig,
    data=PREFERENCE_PAIRS,
    produces=POLICY,
    charts=(
        "loss",
        "nll_loss",
        "log_odds_ratio",
        "rewards/margins",
        "rewards/accuracies",
        "eval_rewards/margins",
    ),
    learning={"eval_rewards/margins": UP, "eval_rewards/accuracies": UP, "eval_nll_loss": DOWN},
    build_trainer=build_trainer,
    checks=checks,
    rlhf=True,
)
