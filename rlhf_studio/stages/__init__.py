"""The training stages, one module each, and the registry that lists them (in the Train tab's order).

    stage = get_stage("dpo")                  # the Stage record (stages/base.py): label, config, data, charts
    stage_names()                             # ["sft", "rm", "dpo", "kto", ..., "rloo"]
    stage_fit("preference", "dpo")            # (True, "dpo trains on preference pairs (...)")
    config = load_config("dpo.yaml")          # the stage's job config; ConfigError names every bad key
    validate(config, workspace)               # shared checks, the stage's own, the dataset's fit, the model

To add a stage, write its module (a config class, its checks, how it trains, one `STAGE = Stage(...)`) and
list it in STAGES (registry.py): the Train tab, the Monitor, the runner, the CLI, report cards, export and
every tab's pickers read it from there. configs.py reads and checks a job config of any stage.
"""

from __future__ import annotations

from rlhf_studio.stages.base import POLICY, REWARD_MODEL, Stage
from rlhf_studio.stages.configs import config_errors, config_from_dict, load_config, validate
from rlhf_studio.stages.registry import (
    all_stages,
    find_stage,
    get_stage,
    rlhf_stages,
    stage_fit,
    stage_label,
    stage_names,
    stages_producing,
)

__all__ = [
    "POLICY",
    "REWARD_MODEL",
    "Stage",
    "all_stages",
    "config_errors",
    "config_from_dict",
    "find_stage",
    "get_stage",
    "load_config",
    "rlhf_stages",
    "stage_fit",
    "stage_label",
    "stage_names",
    "stages_producing",
    "validate",
]
