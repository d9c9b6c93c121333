"""GRPO (group relative policy optimisation): TRL's GRPOTrainer on prompts, with weighted rewards.

    python -m rlhf_studio train grpo.yaml     # stage: grpo, model: run:<sft run>, reward_model: run:<rm run>

Each prompt gets `num_generations` completions; a completion's advantage is its reward minus the group's
mean, divided by the group's standard deviation (`scale_rewards`): no critic is trained. The rewards
and their weights are the shared online fields (stages/online.py). TRL logs reward, reward_std,
rewards/<name>/mean, kl (with beta > 0), entropy, completion lengths and clip ratios; the studio adds a
samples table and PPO's health alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import _field, _override
from rlhf_studio.stages.base import Check
from rlhf_studio.stages.online import (
    OnlineJobConfig,
    online_checks,
    online_stage,
)
from rlhf_studio.workspace import Workspace

GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")
SCALINGS = ("group", "batch", "none")


@dataclass(kw_only=True)
class GRPOJobConfig(OnlineJobConfig):
    """GRPO (TRL GRPOTrainer): sample several completions per prompt, score them with a reward model and/or
    rule rewards, and move towards the better ones of each group; no critic."""

    stage: str = _override(OnlineJobConfig, "stage", "grpo", init=False)
    loss_type: str = _field(
        "dapo",
        "GRPO loss normalisation (TRL loss_type): dapo (tokens of the batch), grpo (per sequence), dr_grpo, "
        "bnpo.",
        choices=GRPO_LOSS_TYPES,
    )
    scale_rewards: str = _field(
        "group",
        "Divide advantages by the std of the group, of the batch, or none (Dr. GRPO).",
        choices=SCALINGS,
    )


def checks(config: GRPOJobConfig) -> list[Check]:
    return online_checks(config) + [
        ("loss_type", config.loss_type in GRPO_LOSS_TYPES, f"must be one of {', '.join(GRPO_LOSS_TYPES)}"),
        ("scale_rewards", config.scale_rewards in SCALINGS, f"must be one of {', '.join(SCALINGS)}"),
    ]


def build_trainer(config: GRPOJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for a GRPO job."""
    from trl import GRPOConfig, GRPOTrainer

    from rlhf_studio.training.online import build_online_trainer

    extra = {"loss_type": config.loss_type, "scale_rewards": config.scale_rewards}
    return build_online_trainer(GRPOTrainer, GRPOConfig, extra, config, run_dir, workspace, callbacks)


STAGE = online_stage(
    "grpo",
    "GRPO",
    "your rewards can be checked (answers, formats) or come from a reward model; no critic to train.",
    GRPOJobConfig,
    build_trainer,
    checks,
)
