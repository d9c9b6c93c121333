"""Validation of job configs: every problem as one "field: reason" line, for the form and the CLI."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import MISSING, fields
from pathlib import Path

from rlhf_studio.config.base import QUANTIZATION_CHOICES, ConfigError, JobConfig, LoraSettings
from rlhf_studio.config.stages import (
    DPO_LOSS_TYPES,
    STAGE_CONFIGS,
    VALUE_MODELS,
    DPOJobConfig,
    PPOJobConfig,
    RewardJobConfig,
)
from rlhf_studio.models import BUNDLED_MODEL, RUN_PREFIX

TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "clearml")  # report_to values


def installed_trackers() -> list[str]:
    """ "none" and every tracker whose package is importable here (tensorboard ships with the studio)."""
    return ["none"] + [name for name in TRACKERS[1:] if importlib.util.find_spec(name) is not None]


def config_errors(config: JobConfig, workspace=None) -> list[str]:
    """Every problem as "field: reason"; with a workspace, also checks the dataset and the starting model."""
    errors = _range_errors(config) + _lora_errors(config.lora) + _quantization_errors(config)
    if config.report_to not in TRACKERS:
        errors.append(f"report_to: unknown tracker {config.report_to!r}; choose one of {', '.join(TRACKERS)}")
    elif config.report_to not in installed_trackers():
        errors.append(f"report_to: {config.report_to} is not installed here; install it or set none")
    if config.parent_run and config.model.startswith(RUN_PREFIX):
        if config.model.removeprefix(RUN_PREFIX) != config.parent_run:
            errors.append(f"parent_run: is {config.parent_run} but the model is {config.model}")
    if workspace is not None:
        errors += _workspace_errors(config, workspace)
    return errors


def validate(config: JobConfig, workspace=None) -> None:
    """Raise ConfigError listing every problem found by config_errors; do nothing for a usable config."""
    errors = config_errors(config, workspace)
    if errors:
        raise ConfigError(errors)


def _range_errors(config: JobConfig) -> list[str]:
    checks = [
        ("stage", config.stage in STAGE_CONFIGS, f"must be one of {', '.join(STAGE_CONFIGS)}"),
        ("model", bool(config.model.strip()), "choose a model to start from"),
        ("dataset", bool(config.dataset.strip()), "choose a dataset from the library"),
        ("max_steps", config.max_steps is None or config.max_steps >= 1, "must be at least 1 (or empty)"),
        ("num_train_epochs", config.num_train_epochs > 0, "must be above 0"),
        ("learning_rate", 0 < config.learning_rate < 1, "must be above 0 and below 1"),
        ("per_device_train_batch_size", config.per_device_train_batch_size >= 1, "must be at least 1"),
        ("gradient_accumulation_steps", config.gradient_accumulation_steps >= 1, "must be at least 1"),
        ("max_length", config.max_length >= 16, "must be at least 16 tokens"),
        ("logging_steps", config.logging_steps >= 1, "must be at least 1"),
        ("eval_steps", config.eval_steps >= 1, "must be at least 1"),
        ("save_steps", config.save_steps >= 1, "must be at least 1"),
        (
            "save_total_limit",
            config.save_total_limit is None or config.save_total_limit >= 1,
            "must be at least 1",
        ),
    ]
    if isinstance(config, DPOJobConfig):
        checks += [
            ("beta", config.beta > 0, "must be above 0"),
            ("loss_type", config.loss_type in DPO_LOSS_TYPES, f"must be one of {', '.join(DPO_LOSS_TYPES)}"),
        ]
    if isinstance(config, PPOJobConfig):
        checks += _ppo_checks(config)
    if isinstance(config, RewardJobConfig) and config.center_rewards_coefficient is not None:
        checks.append(
            ("center_rewards_coefficient", config.center_rewards_coefficient >= 0, "must be 0 or more")
        )
    return [f"{name}: {reason}" for name, ok, reason in checks if not ok]


def _ppo_checks(config: PPOJobConfig) -> list[tuple[str, bool, str]]:
    def optional(value, ok) -> bool:
        return value is None or ok(value)

    return [
        ("reward_model", bool(config.reward_model.strip()), "choose a reward-model run (or a local one)"),
        ("value_model", config.value_model in VALUE_MODELS, f"must be one of {', '.join(VALUE_MODELS)}"),
        ("num_mini_batches", config.num_mini_batches >= 1, "must be at least 1"),
        ("num_ppo_epochs", config.num_ppo_epochs >= 1, "must be at least 1"),
        ("response_length", config.response_length >= 1, "must be at least 1 token"),
        (
            "response_length",
            config.response_length <= config.max_length - 8,
            f"must leave at least 8 of max_length ({config.max_length}) tokens for the prompt",
        ),
        ("temperature", config.temperature > 0, "must be above 0"),
        ("top_k", config.top_k >= 0, "must be 0 (off) or more"),
        ("top_p", 0 < config.top_p <= 1, "must be above 0 and at most 1"),
        ("kl_coef", config.kl_coef >= 0, "must be 0 or more"),
        ("target_kl", optional(config.target_kl, lambda v: v > 0), "must be above 0 (or empty)"),
        ("kl_horizon", config.kl_horizon >= 1, "must be at least 1"),
        ("cliprange", config.cliprange > 0, "must be above 0"),
        ("cliprange_value", config.cliprange_value > 0, "must be above 0"),
        ("vf_coef", config.vf_coef >= 0, "must be 0 or more"),
        ("gamma", 0 < config.gamma <= 1, "must be above 0 and at most 1"),
        ("lam", 0 <= config.lam <= 1, "must be between 0 and 1"),
        ("missing_eos_penalty", optional(config.missing_eos_penalty, lambda v: v >= 0), "must be 0 or more"),
        ("ptx_coef", config.ptx_coef >= 0, "must be 0 or more"),
        ("ptx_dataset", config.ptx_coef == 0 or bool(config.ptx_dataset.strip()), "choose an SFT dataset"),
        ("kl_budget", optional(config.kl_budget, lambda v: v > 0), "must be above 0 (or empty)"),
        ("stop_at_kl_budget", not config.stop_at_kl_budget or config.kl_budget is not None, "set kl_budget"),
        ("sample_steps", config.sample_steps >= 1, "must be at least 1"),
        ("local_rollout_forward_batch_size", config.local_rollout_forward_batch_size >= 1, "at least 1"),
        ("max_grad_norm", config.max_grad_norm >= 0, "must be 0 (off) or more"),
    ]


def _lora_errors(lora: LoraSettings) -> list[str]:
    targets = lora.target_modules
    checks = [
        ("lora.r", lora.r >= 1, "must be at least 1"),
        ("lora.alpha", lora.alpha > 0, "must be above 0"),
        ("lora.dropout", 0 <= lora.dropout < 1, "must be at least 0 and below 1"),
        (
            "lora.target_modules",
            targets == "auto" or (isinstance(targets, list) and bool(targets)),
            "'auto' or names",
        ),
    ]
    return [f"{name}: {reason}" for name, ok, reason in checks if not ok]


def _quantization_errors(config: JobConfig) -> list[str]:
    if config.quantization not in QUANTIZATION_CHOICES:
        return [f"quantization: must be one of {', '.join(QUANTIZATION_CHOICES)}"]
    if config.quantization == "none":
        return []
    import torch

    if not torch.cuda.is_available():
        return [
            f"quantization: {config.quantization} loading needs a CUDA GPU (bitsandbytes) and this machine "
            "has none; set it to none (the bundled model trains fine in full precision on a CPU)"
        ]
    errors = []
    if importlib.util.find_spec("bitsandbytes") is None:
        errors.append(f"quantization: {config.quantization} needs bitsandbytes: pip install bitsandbytes")
    if not config.lora.enabled:
        errors.append(
            f"quantization: {config.quantization} weights are frozen; enable LoRA to train adapters"
        )
    return errors


def _workspace_errors(config: JobConfig, workspace) -> list[str]:
    errors = _dataset_errors("dataset", config.dataset, config.stage, workspace)
    if config.model.strip() and config.model != BUNDLED_MODEL:  # resolving the bundled model converts it
        errors += _model_errors("model", config.model, config.stage, workspace, reward_model=False)
    if isinstance(config, PPOJobConfig):
        if config.reward_model.strip():
            errors += _model_errors("reward_model", config.reward_model, "ppo", workspace, reward_model=True)
        if config.ptx_coef > 0:
            errors += _dataset_errors("ptx_dataset", config.ptx_dataset, "sft", workspace)
    return errors


def _dataset_errors(name: str, dataset: str, stage: str, workspace) -> list[str]:
    from rlhf_studio.data import DataError, read_manifest, stage_fit

    if not dataset.strip():
        return []
    try:
        manifest = read_manifest(workspace, dataset)
    except DataError as error:
        return [f"{name}: {error}"]
    fits, reason = stage_fit(manifest.kind, stage, manifest.format)
    return [] if fits else [f"{name}: {dataset}: {reason}"]


def _model_errors(name: str, model: str, stage: str, workspace, reward_model: bool) -> list[str]:
    """Problems with `model`: it must resolve, and be a reward model iff `reward_model` (RM runs: either)."""
    from rlhf_studio.models import ModelError, resolve_model

    try:
        source = resolve_model(model, workspace)
    except ModelError as error:
        return [f"{name}: {error}"]
    if stage == "rm" or is_reward_model(Path(source)) == reward_model:
        return []
    if reward_model:
        return [f"{name}: {model} is a language model; pick a reward-model run (a sequence classifier)"]
    return [f"{name}: {model} is a reward model; {stage} starts from a language model"]


def is_reward_model(folder: Path) -> bool:
    """Whether a model folder holds a sequence classifier (a reward model or its adapter)."""
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        return json.loads(adapter.read_text()).get("task_type") == "SEQ_CLS"
    config = folder / "config.json"
    if not config.is_file():
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    return any(name.endswith("ForSequenceClassification") for name in architectures)


def field_help(cls: type) -> dict[str, str]:
    """Help string of every field of a config class (nested lora fields as lora.<name>), for forms."""
    helps = {}
    for item in fields(cls):
        helps[item.name] = item.metadata.get("help", "")
        default = item.default_factory() if item.default_factory is not MISSING else item.default
        if hasattr(default, "__dataclass_fields__"):
            helps.update({f"{item.name}.{key}": text for key, text in field_help(type(default)).items()})
    return helps
