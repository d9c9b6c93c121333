"""The checks every stage shares, as "field: reason" lines, and the helpers stages use for their own.

rlhf_studio.stages.config_errors puts them together with the stage's own checks (its module's `checks`)
and, given a workspace, the dataset's fit and the models' sources.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import MISSING, fields
from pathlib import Path

from rlhf_studio.config.base import QUANTIZATION_CHOICES, JobConfig, LoraSettings
from rlhf_studio.models import RUN_PREFIX

TRACKERS = ("none", "tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "clearml")  # report_to values


def installed_trackers() -> list[str]:
    """ "none" and every tracker whose package is importable here (tensorboard ships with the studio)."""
    return ["none"] + [name for name in TRACKERS[1:] if importlib.util.find_spec(name) is not None]


def setup_errors(config: JobConfig) -> list[str]:
    """Problems with LoRA, quantization, the tracker and the lineage: checked after the stage's own fields."""
    errors = _lora_errors(config.lora) + _quantization_errors(config)
    if config.report_to not in TRACKERS:
        errors.append(f"report_to: unknown tracker {config.report_to!r}; choose one of {', '.join(TRACKERS)}")
    elif config.report_to not in installed_trackers():
        errors.append(f"report_to: {config.report_to} is not installed here; install it or set none")
    if config.parent_run and config.model.startswith(RUN_PREFIX):
        if config.model.removeprefix(RUN_PREFIX) != config.parent_run:
            errors.append(f"parent_run: is {config.parent_run} but the model is {config.model}")
    return errors


def failed(checks: list[tuple[str, bool, str]]) -> list[str]:
    """The "field: reason" lines of the checks that did not pass."""
    return [f"{name}: {reason}" for name, ok, reason in checks if not ok]


def shared_errors(config: JobConfig) -> list[str]:
    """Problems with the values of the fields every stage has (the stage's own checks come after these)."""
    return failed(
        [
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
    )


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
    return failed(checks)


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


def dataset_errors(name: str, dataset: str, fit, stage: str, workspace) -> list[str]:
    """Problems with the library dataset in field `name`: it must exist and `fit(stage, kind, format)`."""
    from rlhf_studio.data import DataError, read_manifest

    if not dataset.strip():
        return []
    try:
        manifest = read_manifest(workspace, dataset)
    except DataError as error:
        return [f"{name}: {error}"]
    fits, reason = fit(stage, manifest.kind, manifest.format)
    return [] if fits else [f"{name}: {dataset}: {reason}"]


def model_errors(name: str, model: str, stage: str, workspace, reward_model: bool | None) -> list[str]:
    """Problems with `model`: it must resolve, and be a reward model iff `reward_model` (None: either)."""
    from rlhf_studio.models import ModelError, resolve_model

    try:
        source = resolve_model(model, workspace)
    except ModelError as error:
        return [f"{name}: {error}"]
    if reward_model is None or is_reward_model(Path(source)) == reward_model:
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
