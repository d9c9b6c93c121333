"""RLOO (REINFORCE leave-one-out): TRL's RLOOTrainer on prompts, with weighted rewards.

    python -m rlhf_studio train rloo.yaml     # stage: rloo, model: run:<sft run>, reward_model: run:<rm run>

Each prompt gets `num_generations` completions; a completion's advantage is its reward minus the mean reward
of the other completions of its prompt, a baseline that needs no critic. The rewards and their weights are
the shared online fields (stages/online.py); the logs, samples table and alarms are as for GRPO.
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


@dataclass(kw_only=True)
class RLOOJobConfig(OnlineJobConfig):
    """RLOO (TRL RLOOTrainer): sample several completions per prompt, score them, and reinforce each against
    the mean of the others (leave-one-out baseline); no critic."""

    stage: str = _override(OnlineJobConfig, "stage", "rloo", init=False)
    normalize_advantages: bool = _field(False, "Standardise the advantages of each generation batch.")


def checks(config: RLOOJobConfig) -> list[Check]:
    return online_checks(config)


def build_trainer(config: RLOOJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for an RLOO job."""
    from trl import RLOOConfig, RLOOTrainer

    from rlhf_studio.training.online import build_online_trainer

    extra = {"normalize_advantages": config.normalize_advantages}
    return build_online_trainer(RLOOTrainer, RLOOConfig, extra, config, run_dir, workspace, callbacks)


STAGE = online_stage(
    "rloo",
    "RLOO",
    "as GRPO, with a leave-one-out baseline: plain REINFORCE that works with few samples per prompt.",
    RLOOJobConfig,
    build_trainer,
    checks,
)
