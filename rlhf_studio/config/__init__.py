"""What every job config shares: the JobConfig base and its fields, the shared checks, and YAML io.

    save_config(config, "dpo.yaml")           # the UI saves it; `python -m rlhf_studio train dpo.yaml`
    shared_errors(config)                     # ["learning_rate: must be above 0", ...]

Each stage's own config class (a JobConfig with its fields and defaults) lives in its stage module, and
reading or checking a config of any stage goes through the registry: rlhf_studio.stages.load_config,
config_from_dict, config_errors and validate.

Field names are TRL's (SFTConfig, RewardConfig, DPOConfig and their TrainingArguments base; TRL 1.12's
PPOConfig for PPO) wherever TRL has one, so the stages pass them through unchanged. The defaults are ours:
sized so that each stage on the bundled 135M model and the demo data finishes on a 2-core laptop CPU in
minutes and visibly learns (see bench/ and the stage modules). Precision is not a field: it follows the
device (fp32 on CPU).

base.py (shared fields, field helpers with the form's help, label and choices), io.py (dict / YAML),
checks.py (shared checks and the dataset / model checks stages use).
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
    field_help,
    installed_trackers,
    is_reward_model,
    setup_errors,
    shared_errors,
)
from rlhf_studio.config.io import save_config

__all__ = [
    "QUANTIZATION_CHOICES",
    "ConfigError",
    "JobConfig",
    "LoraSettings",
    "_field",
    "_override",
    "field_help",
    "installed_trackers",
    "is_reward_model",
    "save_config",
    "setup_errors",
    "shared_errors",
]
