"""The table of stages, in the order the Train tab shows them, and the lookups every other module uses.

Each lookup reads STAGES when called, so a test can add a stage to the list (monkeypatch) and see it
everywhere. A stage's record is `STAGE` in its module; listing it here is the one edit that registers it.
"""

from __future__ import annotations

from rlhf_studio.config.base import ConfigError
from rlhf_studio.stages import dpo, grpo, kto, orpo, ppo, reward, rloo, sft, simpo
from rlhf_studio.stages.base import Stage

STAGES: list[Stage] = [
    sft.STAGE,
    reward.STAGE,
    dpo.STAGE,
    kto.STAGE,
    orpo.STAGE,
    simpo.STAGE,
    ppo.STAGE,
    grpo.STAGE,
    rloo.STAGE,
]


def all_stages() -> list[Stage]:
    return list(STAGES)


def stage_names() -> list[str]:
    return [stage.name for stage in STAGES]


def find_stage(name: str) -> Stage | None:
    return next((stage for stage in STAGES if stage.name == name), None)


def get_stage(name: str) -> Stage:
    """The stage called `name`; ConfigError (one "stage: ..." line) for a name no stage has."""
    stage = find_stage(name)
    if stage is None:
        raise ConfigError([f"stage: expected one of {', '.join(stage_names())}, got {name!r}"])
    return stage


def stage_label(name: str) -> str:
    """The stage's label ("Reward model"); a name no stage has (a run of a removed stage) as it is."""
    stage = find_stage(name)
    return stage.label if stage else name


def stage_fit(kind: str, stage: str, format_name: str | None = None) -> tuple[bool, str]:
    """(fits, reason) for training `stage` on a dataset of `kind`; `format_name` (the detected layout) tells
    plain-text SFT rows apart, which have no prompts to take."""
    found = find_stage(stage)
    if found is None:
        return False, f"unknown stage {stage!r}; stages: {', '.join(stage_names())}"
    return found.fit(kind, format_name)


def stages_producing(product: str) -> tuple[str, ...]:
    """Names of the stages whose runs hold `product` (POLICY, REWARD_MODEL): what its pickers offer."""
    return tuple(stage.name for stage in STAGES if stage.produces == product)


def rlhf_stages() -> tuple[str, ...]:
    """Names of the stages that tune a policy on feedback (the Chat tab's RLHF pane)."""
    return tuple(stage.name for stage in STAGES if stage.rlhf)
