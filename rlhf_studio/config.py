"""Job configs: one dataclass per training stage, kept as YAML, mapped onto TRL's own configs.

    config = DPOJobConfig(model="run:sft-20250101-abc", dataset="demo-preference")
    save_config(config, "dpo.yaml")           # the UI saves it; `python -m rlhf_studio train dpo.yaml`
    config = load_config("dpo.yaml")          # unknown keys and wrong types raise ConfigError naming the key
    config_errors(config, workspace)          # ["learning_rate: must be above 0", ...] for the form
    validate(config, workspace)               # raises ConfigError carrying all of them

Field names are TRL's (SFTConfig, RewardConfig, DPOConfig and their TrainingArguments base) wherever TRL has
one, so `rlhf_studio.training` passes them through unchanged. The defaults are ours: sized so that each stage
on the bundled 135M model and the demo data finishes on a 2-core laptop CPU in under ten minutes and visibly
learns (see bench/ and the stage modules). Precision is not a field: it follows the device (fp32 on CPU).
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import types
import typing
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rlhf_studio.models import BUNDLED_MODEL, RUN_PREFIX

QUANTIZATION_CHOICES = ("none", "4bit", "8bit")
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip


class ConfigError(ValueError):
    """A job config that cannot be used; `errors` lists one "field: reason" line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def _field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help string (the UI's tooltip); mutable defaults become factories."""
    if isinstance(default, list) or hasattr(default, "__dataclass_fields__"):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def _override(base: type, name: str, default: Any, **kwargs: Any) -> Any:
    """Redeclare a base-class field with another default, keeping its help string."""
    return _field(default, base.__dataclass_fields__[name].metadata["help"], **kwargs)


@dataclass(kw_only=True)
class LoraSettings:
    """LoRA adapters (peft) instead of full fine-tuning; passed to TRL as `peft_config`."""

    enabled: bool = _field(
        True,
        "Train small LoRA adapters instead of every weight; the run saves an adapter. Off: full fine-tuning, "
        "which wants about a tenth of the learning rate.",
    )
    r: int = _field(16, "LoRA rank: size of the low-rank update matrices.")
    alpha: int = _field(32, "LoRA alpha: the update is scaled by alpha / r.")
    dropout: float = _field(
        0.0,
        "Dropout on the LoRA branch (SFT only: TRL turns dropout off for RM and DPO); costs ~12% on a CPU.",
    )
    target_modules: str | list[str] = _field(
        "auto",
        "Module names that get adapters; 'auto' picks every linear projection of attention and MLP "
        "(q/k/v/o_proj, gate/up/down_proj, c_attn, ...) and leaves out the output head.",
    )


@dataclass(kw_only=True)
class JobConfig:
    """Fields every stage shares. Use a stage's class (SFTJobConfig, RewardJobConfig, DPOJobConfig)."""

    stage: str = _field("", "Training stage: sft, rm (reward model) or dpo.", init=False)
    model: str = _field(
        BUNDLED_MODEL,
        "What training starts from: the bundled model, a hub id (offline: must be cached), a local folder, "
        "or run:<id> for a finished run's model (an adapter run is merged into its base first).",
    )
    dataset: str = _field("", "Name of a dataset in the workspace library (Data tab or `data import`).")
    parent_run: str | None = _field(
        None, "The run this one starts from; filled in from a run:<id> model, for lineage."
    )
    use_eval_split: bool = _field(
        True, "Evaluate on the dataset's eval split (skipped when that split is empty)."
    )
    eval_on_start: bool = _field(True, "Evaluate once before the first step, so the plots show a baseline.")
    seed: int = _field(42, "Random seed for data order, new weights (reward head, LoRA) and dropout.")
    max_steps: int | None = _field(None, "Optimizer steps to train; empty to train num_train_epochs instead.")
    num_train_epochs: float = _field(1.0, "Passes over the training split when max_steps is empty.")
    learning_rate: float = _field(1e-4, "Peak learning rate of AdamW (linear decay to zero).")
    per_device_train_batch_size: int = _field(8, "Examples (or preference pairs) per step on each device.")
    gradient_accumulation_steps: int = _field(1, "Steps whose gradients add up before one optimizer update.")
    max_length: int = _field(
        512, "Longest tokenized example; longer ones are truncated (SFT, DPO) or dropped (RM)."
    )
    gradient_checkpointing: bool = _field(
        False, "Recompute activations in the backward pass: less memory, about 20-30% slower."
    )
    logging_steps: int = _field(5, "Append a metrics row every this many optimizer steps.")
    eval_steps: int = _field(25, "Evaluate on the eval split every this many steps.")
    save_steps: int = _field(50, "Write a resumable checkpoint every this many steps.")
    save_total_limit: int | None = _field(
        2, "Keep at most this many checkpoints (oldest deleted); empty: all."
    )
    lora: LoraSettings = _field(LoraSettings(), "LoRA adapter settings.")
    quantization: str = _field(
        "none", "Load the frozen base in 4bit or 8bit (bitsandbytes, CUDA only; needs LoRA), or none."
    )
    report_to: str = _field(
        "none", "Experiment tracker for TRL to report to as well (e.g. tensorboard), or none."
    )

    def __post_init__(self) -> None:
        if self.model.startswith(RUN_PREFIX) and not self.parent_run:
            self.parent_run = self.model.removeprefix(RUN_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class SFTJobConfig(JobConfig):
    """Supervised fine-tuning (TRL SFTTrainer) on prompt/completion, messages or text rows."""

    stage: str = _override(JobConfig, "stage", "sft", init=False)
    num_train_epochs: float = _override(JobConfig, "num_train_epochs", 2.0)
    learning_rate: float = _override(JobConfig, "learning_rate", 2e-4)
    completion_only_loss: bool | None = _field(
        None,
        "Loss on the completion only (true) or on the whole sequence (false); empty: TRL decides "
        "(completion only for prompt/completion rows).",
    )


@dataclass(kw_only=True)
class RewardJobConfig(JobConfig):
    """Reward model (TRL RewardTrainer): one-output classifier, loss -log sigmoid(r_chosen - r_rejected)."""

    stage: str = _override(JobConfig, "stage", "rm", init=False)
    center_rewards_coefficient: float | None = _field(
        None, "Weight of a penalty that keeps rewards centred on zero (0.01 is typical); empty: off."
    )


@dataclass(kw_only=True)
class DPOJobConfig(JobConfig):
    """Direct preference optimization (TRL DPOTrainer); the reference is the starting model."""

    stage: str = _override(JobConfig, "stage", "dpo", init=False)
    learning_rate: float = _override(JobConfig, "learning_rate", 5e-5)
    per_device_train_batch_size: int = _override(JobConfig, "per_device_train_batch_size", 4)
    eval_steps: int = _override(JobConfig, "eval_steps", 20)
    beta: float = _field(0.1, "How far the model may move from the reference: higher beta, smaller moves.")
    loss_type: str = _field("sigmoid", "DPO loss variant (TRL loss_type): sigmoid is the original DPO loss.")


STAGE_CONFIGS: dict[str, type[JobConfig]] = {"sft": SFTJobConfig, "rm": RewardJobConfig, "dpo": DPOJobConfig}


# ---------------------------------------------------------------- dict / YAML


def config_from_dict(data: Any) -> JobConfig:
    """Build the stage's config from plain data (parsed YAML); ConfigError names every bad or unknown key."""
    if not isinstance(data, dict):
        raise ConfigError([f"config: expected a mapping of field: value, got {type(data).__name__}"])
    stage = data.get("stage")
    if stage not in STAGE_CONFIGS:
        raise ConfigError([f"stage: expected one of {', '.join(STAGE_CONFIGS)}, got {stage!r}"])
    errors: list[str] = []
    values = _fields_from_dict(
        STAGE_CONFIGS[stage], {k: v for k, v in data.items() if k != "stage"}, "", errors
    )
    if errors:
        raise ConfigError(errors)
    return STAGE_CONFIGS[stage](**values)


def _fields_from_dict(cls: type, data: dict, prefix: str, errors: list[str]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    known = {item.name: item for item in fields(cls) if item.init}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            errors.append(f"{name}: unknown key{_did_you_mean(str(key), known)}")
        elif hasattr(hints[key], "__dataclass_fields__"):
            if value is None:
                continue
            if not isinstance(value, dict):
                errors.append(f"{name}: expected a mapping, got {value!r}")
                continue
            values[key] = hints[key](**_fields_from_dict(hints[key], value, f"{name}.", errors))
        else:
            try:
                values[key] = _coerce(value, hints[key])
            except ValueError as error:
                errors.append(f"{name}: {error}")
    return values


def _did_you_mean(key: str, known: dict[str, Field]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, hint: Any) -> Any:
    """Check a YAML value against a field's type hint (YAML reads 1e-5 as a string: accept it as a float)."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError("a value is required")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and not isinstance(value, bool):
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is list and isinstance(value, list):
            if all(isinstance(item, str) for item in value):
                return value
    wanted = " or ".join(_type_name(option) for option in options if option is not type(None))
    raise ValueError(f"expected {wanted}, got {value!r}")


def _type_name(option: Any) -> str:
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text"}
    return names.get(option, "a list of names")


def load_config(path: str | Path) -> JobConfig:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError([f"config: {path} is not valid YAML ({error})"]) from error
    return config_from_dict(data)


def save_config(config: JobConfig, path: str | Path) -> None:
    """Write the config as YAML (field order, nested lora section) via a temp file and a rename."""
    path = Path(path)
    header = f"# RLHF Studio {config.stage} job: python -m rlhf_studio train {path.name}\n"
    text = header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


# ---------------------------------------------------------------- validation


def config_errors(config: JobConfig, workspace=None) -> list[str]:
    """Every problem as "field: reason"; with a workspace, also checks the dataset and the starting model."""
    errors = _range_errors(config) + _lora_errors(config.lora) + _quantization_errors(config)
    if config.report_to != "none" and importlib.util.find_spec(config.report_to) is None:
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
    if isinstance(config, RewardJobConfig) and config.center_rewards_coefficient is not None:
        checks.append(
            ("center_rewards_coefficient", config.center_rewards_coefficient >= 0, "must be 0 or more")
        )
    return [f"{name}: {reason}" for name, ok, reason in checks if not ok]


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
    from rlhf_studio.data import DataError, read_manifest, stage_fit
    from rlhf_studio.models import ModelError, resolve_model

    errors = []
    if config.dataset.strip():
        try:
            manifest = read_manifest(workspace, config.dataset)
        except DataError as error:
            errors.append(f"dataset: {error}")
        else:
            fits, reason = stage_fit(manifest.kind, config.stage, manifest.format)
            if not fits:
                errors.append(f"dataset: {config.dataset}: {reason}")
    if config.model.strip() and config.model != BUNDLED_MODEL:  # resolving the bundled model converts it
        try:
            source = resolve_model(config.model, workspace)
        except ModelError as error:
            errors.append(f"model: {error}")
        else:
            if config.stage != "rm" and is_reward_model(Path(source)):
                errors.append(
                    f"model: {config.model} is a reward model; {config.stage} starts from a language model"
                )
    return errors


def is_reward_model(folder: Path) -> bool:
    """Whether a model folder holds a sequence classifier (a reward model or its adapter)."""
    import json

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
