"""Fields every job config shares: the JobConfig base, LoRA settings, and the field helpers with help text."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from rlhf_studio.models import BUNDLED_MODEL, RUN_PREFIX

QUANTIZATION_CHOICES = ("none", "4bit", "8bit")


class ConfigError(ValueError):
    """A job config that cannot be used; `errors` lists one "field: reason" line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def _field(
    default: Any,
    help: str,
    *,
    label: str = "",
    choices: tuple[str, ...] = (),
    basic: bool = False,
    **kwargs: Any,
) -> Any:
    """A dataclass field with what the settings form shows of it: a help string (the tooltip), a label
    (default: the name), choices (a dropdown) and whether it is basic (always in view, not folded away).
    Mutable defaults become factories."""
    metadata = {"help": help, "label": label, "choices": choices, "basic": basic}
    if isinstance(default, list) or hasattr(default, "__dataclass_fields__"):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


def _override(base: type, name: str, default: Any, **kwargs: Any) -> Any:
    """Redeclare a base-class field with another default, keeping its help string, label and choices."""
    metadata = base.__dataclass_fields__[name].metadata
    return _field(
        default,
        metadata["help"],
        label=metadata["label"],
        choices=metadata["choices"],
        basic=metadata["basic"],
        **kwargs,
    )


@dataclass(kw_only=True)
class LoraSettings:
    """LoRA adapters (peft) instead of full fine-tuning; passed to TRL as `peft_config`."""

    enabled: bool = _field(
        True,
        "Train small LoRA adapters instead of every weight; the run saves an adapter. Off: full fine-tuning, "
        "which wants about a tenth of the learning rate.",
        label="LoRA adapters",
        basic=True,
    )
    r: int = _field(16, "LoRA rank: size of the low-rank update matrices.", label="LoRA rank r")
    alpha: int = _field(32, "LoRA alpha: the update is scaled by alpha / r.", label="LoRA alpha")
    dropout: float = _field(
        0.0,
        "Dropout on the LoRA branch (SFT only: TRL turns dropout off for RM and DPO); costs ~12% on a CPU.",
        label="LoRA dropout",
    )
    target_modules: str | list[str] = _field(
        "auto",
        "Module names that get adapters; 'auto' picks every linear projection of attention and MLP "
        "(q/k/v/o_proj, gate/up/down_proj, c_attn, ...) and leaves out the output head.",
        label="LoRA target modules",
    )


@dataclass(kw_only=True)
class JobConfig:
    """Fields every stage shares; each stage's module (rlhf_studio.stages.*) subclasses it with its own."""

    stage: str = _field(
        "", "Training stage: the name of a stage in the registry (rlhf_studio.stages).", init=False
    )
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
    max_steps: int | None = _field(
        None,
        "Optimizer steps to train; empty to train num_train_epochs instead.",
        label="Max steps",
        basic=True,
    )
    num_train_epochs: float = _field(
        1.0, "Passes over the training split when max_steps is empty.", label="Epochs", basic=True
    )
    learning_rate: float = _field(1e-4, "Peak learning rate of AdamW (linear decay to zero).", basic=True)
    per_device_train_batch_size: int = _field(
        8,
        "Examples (or preference pairs) per step on each device.",
        label="Batch size (per device)",
        basic=True,
    )
    gradient_accumulation_steps: int = _field(1, "Steps whose gradients add up before one optimizer update.")
    max_length: int = _field(
        512,
        "Longest tokenized example; longer ones are truncated (SFT, DPO) or dropped (RM).",
        label="Max length (tokens)",
        basic=True,
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
        "none",
        "Load the frozen base in 4bit or 8bit (bitsandbytes, CUDA only; needs LoRA), or none.",
        label="Quantized base (LoRA only)",
        choices=QUANTIZATION_CHOICES,
    )
    report_to: str = _field(
        "none", "Experiment tracker for TRL to report to as well (e.g. tensorboard), or none."
    )

    def __post_init__(self) -> None:
        if self.model.startswith(RUN_PREFIX) and not self.parent_run:
            self.parent_run = self.model.removeprefix(RUN_PREFIX)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
