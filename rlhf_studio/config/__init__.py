"""Job configs: one dataclass per training stage, kept as YAML, mapped onto TRL's own configs.

    config = DPOJobConfig(model="run:sft-20250101-abc", dataset="demo-preference")
    save_config(config, "dpo.yaml")           # the UI saves it; `python -m rlhf_studio train dpo.yaml`
    config = load_config("dpo.yaml")          # unknown keys and wrong types raise ConfigError naming the key
    config_errors(config, workspace)          # ["learning_rate: must be above 0", ...] for the form
    validate(config, workspace)               # raises ConfigError carrying all of them

Field names are TRL's (SFTConfig, RewardConfig, DPOConfig and their TrainingArguments base; TRL 1.12's
PPOConfig for PPO) wherever TRL has one, so `rlhf_studio.training` passes them through unchanged. The defaults
are ours: sized so that each stage on the bundled 135M model and the demo data finishes on a 2-core laptop CPU
in minutes and visibly learns (see bench/ and the stage modules). Precision is not a field: it follows the
device (fp32 on CPU).

base.py (shared fields), stages.py (one class per stage), io.py (dict / YAML), checks.py (validation).
"""

from rlhf_studio.config.base import (
    QUANTIZATION_CHOICES,
    ConfigError,
    JobConfig,
    LoraSettings,
    _field,
    _override,
)
from rlhf_studio.config.checks import (
    config_errors,
    field_help,
    installed_trackers,
    is_reward_model,
    validate,
)
from rlhf_studio.config.io import config_from_dict, load_config, save_config
from rlhf_studio.config.stages import (
    DPO_LOSS_TYPES,
    STAGE_CONFIGS,
    VALUE_MODELS,
    DPOJobConfig,
    PPOJobConfig,
    RewardJobConfig,
    SFTJobConfig,
)

__all__ = [
    "installed_trackers",
    "DPO_LOSS_TYPES",
    "QUANTIZATION_CHOICES",
    "STAGE_CONFIGS",
    "VALUE_MODELS",
    "ConfigError",
    "DPOJobConfig",
    "JobConfig",
    "LoraSettings",
    "PPOJobConfig",
    "RewardJobConfig",
    "SFTJobConfig",
    "_field",
    "_override",
    "config_errors",
    "config_from_dict",
    "field_help",
    "is_reward_model",
    "load_config",
    "save_config",
    "validate",
]
