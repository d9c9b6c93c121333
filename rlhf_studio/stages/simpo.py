"""SimPO (simple preference optimisation): TRL's CPOTrainer with the SimPO loss, on preference pairs.

    python -m rlhf_studio train simpo.yaml    # stage: simpo, model: the base or an SFT run, dataset: pairs

The implicit reward of a reply is its length-normalised log-likelihood times beta; the loss pushes the
chosen reply's reward above the rejected one's by a margin gamma. No reference model. With `cpo_alpha` above
0 an SFT loss on the chosen reply is added (CPO's behaviour-cloning term). TRL logs `rewards/chosen`,
`rewards/rejected`, `rewards/margins`, `rewards/accuracies` and `nll_loss` (eval_ prefixed on the eval split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import JobConfig, _field, _override
from rlhf_studio.stages.base import POLICY, PREFERENCE_PAIRS, UP, Check, Stage
from rlhf_studio.workspace import Workspace


@dataclass(kw_only=True)
class SimPOJobConfig(JobConfig):
    """SimPO (TRL CPOTrainer, SimPO loss): preference pairs, length-normalised rewards and a target margin,
    no reference model."""

    stage: str = _override(JobConfig, "stage", "simpo", init=False)
    max_steps: int | None = _override(JobConfig, "max_steps", 40)
    learning_rate: float = _override(JobConfig, "learning_rate", 1e-4)
    per_device_train_batch_size: int = _override(JobConfig, "per_device_train_batch_size", 4)
    eval_steps: int = _override(JobConfig, "eval_steps", 20)
    beta: float = _field(
        2.0, "Scale of the length-normalised reward (SimPO's beta; 2.0-2.5 in the paper).", basic=True
    )
    simpo_gamma: float = _field(
        1.0, "Target margin between the chosen and rejected rewards (SimPO's gamma).", label="Margin γ"
    )
    cpo_alpha: float = _field(
        0.0, "Weight of an SFT loss on the chosen reply (CPO's behaviour cloning); 0: plain SimPO."
    )


def checks(config: SimPOJobConfig) -> list[Check]:
    return [
        ("beta", config.beta > 0, "must be above 0"),
        ("simpo_gamma", config.simpo_gamma >= 0, "must be 0 or more"),
        ("cpo_alpha", config.cpo_alpha >= 0, "must be 0 or more"),
    ]


def build_trainer(config: SimPOJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for a SimPO job."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from rlhf_studio.training.common import CAUSAL, load_splits, load_starting_point, trainer_inputs
    from rlhf_studio.training.common import training_arguments as shared

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = CPOConfig(
        **shared(config, run_dir, has_eval=evaluation is not None),
        loss_type="simpo",
        beta=config.beta,
        simpo_gamma=config.simpo_gamma,
        cpo_alpha=config.cpo_alpha,
    )
    inputs = trainer_inputs(config, start, train, evaluation, callbacks, "CAUSAL_LM")
    return CPOTrainer(args=args, **inputs), start.source


STAGE = Stage(
    name="simpo",
    label="SimPO",
    when="you have preference pairs and want no reference model, with rewards that do not favour length.",
    config=SimPOJobConfig,
    data=PREFERENCE_PAIRS,
    produces=POLICY,
    charts=("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
    learning={"eval_rewards/margins": UP, "eval_rewards/accuracies": UP, "rewards/margins": UP},
    build_trainer=build_trainer,
    checks=checks,
    rlhf=True,
)
