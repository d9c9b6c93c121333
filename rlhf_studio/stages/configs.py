"""A job config of any stage: built from plain data or YAML, and checked with everything that applies to it.

    config = load_config("dpo.yaml")          # the stage's class; ConfigError names every bad or unknown key
    config_errors(config, workspace)          # ["learning_rate: must be above 0", ...] for the form
    validate(config, workspace)               # raises ConfigError carrying all of them

The checks, in order: the shared fields (config/checks.py), the stage's own (its module's `checks`), LoRA,
quantization, tracker and lineage; with a workspace, the dataset's fit for the stage, the starting model's
source and kind, and the stage's own workspace checks (PPO: its reward model and PPO-ptx data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf_studio.config.base import ConfigError, JobConfig
from rlhf_studio.config.checks import dataset_errors, failed, model_errors, setup_errors, shared_errors
from rlhf_studio.config.io import fields_from_dict, read_yaml
from rlhf_studio.models import BUNDLED_MODEL
from rlhf_studio.stages.base import POLICY, REWARD_MODEL, Stage
from rlhf_studio.stages.registry import find_stage, get_stage, stage_names


def config_from_dict(data: Any) -> JobConfig:
    """Build the stage's config from plain data (parsed YAML); ConfigError names every bad or unknown key."""
    if not isinstance(data, dict):
        raise ConfigError([f"config: expected a mapping of field: value, got {type(data).__name__}"])
    stage = get_stage(data.get("stage"))
    errors: list[str] = []
    values = fields_from_dict(stage.config, {k: v for k, v in data.items() if k != "stage"}, "", errors)
    if errors:
        raise ConfigError(errors)
    return stage.config(**values)


def load_config(path: str | Path) -> JobConfig:
    return config_from_dict(read_yaml(path))


def config_errors(config: JobConfig, workspace=None) -> list[str]:
    """Every problem as "field: reason"; with a workspace, also the dataset and the models."""
    stage = find_stage(config.stage)
    if stage is None:
        return [f"stage: must be one of {', '.join(stage_names())}"]
    errors = shared_errors(config) + failed(stage.checks(config)) + setup_errors(config)
    if workspace is not None:
        errors += workspace_errors(stage, config, workspace)
    return errors


def validate(config: JobConfig, workspace=None) -> None:
    """Raise ConfigError listing every problem found by config_errors; do nothing for a usable config."""
    errors = config_errors(config, workspace)
    if errors:
        raise ConfigError(errors)


def workspace_errors(stage: Stage, config: JobConfig, workspace) -> list[str]:
    """The dataset must fit the stage; the starting model must resolve and be what the stage starts from."""
    errors = dataset_errors("dataset", config.dataset, stage.data.fit, stage.name, workspace)
    if config.model.strip() and config.model != BUNDLED_MODEL:  # resolving the bundled model converts it
        starts = set(stage.starts_from)
        reward_model = None if starts == {POLICY, REWARD_MODEL} else starts == {REWARD_MODEL}
        errors += model_errors("model", config.model, stage.name, workspace, reward_model)
    return errors + stage.workspace_checks(config, workspace)
