"""The Train tab's settings form: one input per config field, built from the engine's config classes.

The form holds the union of the fields of every registered stage's config class; choosing a stage shows that
class's fields with its defaults, and each field's help, label and choices as declared with it (_field), so a
new field or a new stage appears without touching this file. Basic fields stay visible; the rest are folded
into stage, LoRA and schedule sections.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from typing import Any

import gradio as gr

from rlhf_studio.config import QUANTIZATION_CHOICES, JobConfig, field_help, installed_trackers
from rlhf_studio.model_memory import (
    CAUSAL,
    PRECISIONS,
    REWARD,
    LoraPlan,
    MemoryEstimate,
    estimate_memory,
    load_precision,
    model_shape,
)
from rlhf_studio.models import ModelError
from rlhf_studio.runner.commands import gpu_count
from rlhf_studio.stages import REWARD_MODEL, all_stages, get_stage, stage_label
from rlhf_studio.workspace import Workspace

PICKED_ABOVE = {"stage", "model", "dataset", "parent_run", "reward_model"}  # the tab's pickers set these
SECTIONS = ("basic", "stage", "lora", "shared")
AUTO, YES, NO = "auto", "true", "false"
NO_CUDA = "4-bit and 8-bit loading need a CUDA GPU (bitsandbytes); this machine has none, so it stays off."
QUANTIZATION_NEEDS = (
    "Loads the frozen base in 4 or 8 bits with bitsandbytes to save GPU memory; needs LoRA adapters on and a "
    "full model to start from (not an adapter run). The expected memory is below."
)
MEMORY_FIELDS = ("quantization", "lora.enabled", "lora.r", "lora.target_modules")
PRECISION_NAMES = {"fp32": "fp32", "bf16": "bf16", "8bit": "8-bit", "4bit": "4-bit"}


@dataclass(frozen=True)
class FieldSpec:
    name: str  # "learning_rate", or "lora.enabled" for a nested field
    hint: Any  # the type hint of the dataclass field
    meta: Any  # the field's metadata: help, label, choices, basic (config.base._field)
    shared: bool  # a field every stage has (JobConfig's, LoRA's)

    @property
    def options(self) -> tuple[Any, ...]:
        union = typing.get_origin(self.hint) in (typing.Union, types.UnionType)
        return typing.get_args(self.hint) if union else (self.hint,)

    @property
    def base(self) -> Any:
        return next(option for option in self.options if option is not type(None))

    @property
    def optional(self) -> bool:
        return type(None) in self.options

    @property
    def label(self) -> str:
        return self.meta["label"] or self.name.replace("_", " ").capitalize()

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(installed_trackers()) if self.name == "report_to" else self.meta["choices"]


def stage_fields(cls: type[JobConfig]) -> list[FieldSpec]:
    """The fields of one stage's class that the form edits; the fields of a nested settings class (lora,
    a stage's rewards) flattened to <field>.<name>."""
    hints = typing.get_type_hints(cls)
    shared = {item.name for item in fields(JobConfig)}
    specs = []
    for item in fields(cls):
        if item.name in PICKED_ABOVE:
            continue
        nested = hints[item.name]
        if hasattr(nested, "__dataclass_fields__"):
            inner = typing.get_type_hints(nested)
            is_shared = item.name in shared
            specs += [
                FieldSpec(f"{item.name}.{sub.name}", inner[sub.name], sub.metadata, is_shared)
                for sub in fields(nested)
            ]
        else:
            specs.append(FieldSpec(item.name, hints[item.name], item.metadata, item.name in shared))
    return specs


def all_fields() -> dict[str, FieldSpec]:
    """Every field of every registered stage, each once (as the first stage that has it declares it)."""
    union: dict[str, FieldSpec] = {}
    for stage in all_stages():
        union.update({spec.name: spec for spec in stage_fields(stage.config) if spec.name not in union})
    return union


def every_choice(name: str) -> list[str]:
    """The choices of field `name` over every stage that has it (DPO's, KTO's and GRPO's loss_type differ):
    the widget is built with all of them, so a value of any stage is valid, and shows its stage's own."""
    choices: list[str] = []
    for stage in all_stages():
        for spec in stage_fields(stage.config):
            if spec.name == name:
                choices += [choice for choice in spec.choices if choice not in choices]
    return choices


def section(spec: FieldSpec) -> str:
    if spec.meta["basic"]:
        return "basic"
    if spec.name.startswith("lora.") or spec.name == "quantization":
        return "lora"
    return "shared" if spec.shared else "stage"


# ---------------------------------------------------------------- values <-> widgets


def flatten(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A config's dict with each nested mapping (lora, ...) as <field>.<name> keys."""
    values = {}
    for key, value in config_dict.items():
        if isinstance(value, dict):
            values.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            values[key] = value
    return values


def to_widget(spec: FieldSpec, value: Any) -> Any:
    if spec.base is bool and spec.optional:
        return AUTO if value is None else (YES if value else NO)
    if isinstance(value, list):
        return ", ".join(value)
    return value


def from_widget(spec: FieldSpec, value: Any) -> Any:
    """The widget's value as the config expects it; config_from_dict reports anything still wrong."""
    if spec.base is bool and spec.optional:
        return None if value in (AUTO, None) else value == YES
    if spec.base in (int, float) and value in ("", None):
        return None
    if spec.base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if spec.name == "lora.target_modules":
        names = [part.strip() for part in str(value or "").split(",") if part.strip()]
        return names[0] if names == ["auto"] else names
    return value


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """Flat form values to config_from_dict's shape (<field>.<name> back into a <field> mapping)."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        outer, dot, inner = key.partition(".")
        if dot:
            nested.setdefault(outer, {})[inner] = value
        else:
            nested[key] = value
    return nested


# ---------------------------------------------------------------- the form


class SettingsForm:
    """The widgets of every field; `show(stage, values)` and `read(stage, inputs)` move values in and out."""

    def __init__(self) -> None:
        self.specs = all_fields()
        self.widgets: dict[str, gr.components.Component] = {}
        self.cuda = gpu_count() > 0
        self._build()

    def _build(self) -> None:
        by_section = {key: [s for s in self.specs.values() if section(s) == key] for key in SECTIONS}
        with gr.Row(equal_height=True):
            for spec in by_section["basic"]:
                self.widgets[spec.name] = self._widget(spec)
        with gr.Accordion("Stage settings", open=False, elem_id="train-stage-settings") as self.stage_box:
            self._grid(by_section["stage"])
        with gr.Accordion("LoRA and quantization", open=False):
            self._grid(by_section["lora"])
            self.memory = gr.Markdown(elem_id="train-memory")
        with gr.Accordion("Schedule, evaluation and checkpoints", open=False):
            self._grid(by_section["shared"])

    def _grid(self, specs: list[FieldSpec], per_row: int = 4) -> None:
        for start in range(0, len(specs), per_row):
            with gr.Row(equal_height=True):
                for spec in specs[start : start + per_row]:
                    self.widgets[spec.name] = self._widget(spec)

    def _widget(self, spec: FieldSpec) -> gr.components.Component:
        common = {"label": spec.label, "elem_id": "setting-" + spec.name.replace(".", "-").replace("_", "-")}
        if spec.name == "quantization":
            info = QUANTIZATION_NEEDS if self.cuda else NO_CUDA
            return gr.Radio(list(QUANTIZATION_CHOICES), interactive=self.cuda, info=info, **common)
        if spec.choices:
            return gr.Dropdown(every_choice(spec.name), **common)
        if spec.base is bool:
            if spec.optional:
                return gr.Radio([AUTO, YES, NO], **common)
            return gr.Checkbox(**common)
        if spec.base in (int, float):
            step = 1 if spec.base is int else 1e-6
            return gr.Number(precision=0 if spec.base is int else None, step=step, **common)
        return gr.Textbox(max_lines=1, **common)

    def show(self, stage: str, values: dict[str, Any]) -> dict:
        """Updates that show `stage`'s fields with `values`, as its class declares them (help as info, label,
        choices: stages share a widget per field name, e.g. loss_type), and hide the rest."""
        cls = get_stage(stage).config
        own = {spec.name: spec for spec in stage_fields(cls)}
        names = set(own)
        helps = field_help(cls)
        updates: dict = {}
        for name, widget in self.widgets.items():
            if name not in names:
                updates[widget] = gr.update(visible=False)
                continue
            info = helps.get(name, "")
            if name == "quantization":
                info = QUANTIZATION_NEEDS if self.cuda else NO_CUDA
            shown = {"visible": True, "value": to_widget(own[name], values.get(name)), "info": info}
            shown["label"] = own[name].label
            if own[name].choices and name != "quantization":
                shown["choices"] = list(own[name].choices)
            updates[widget] = gr.update(**shown)
        has_own = any(section(self.specs[name]) == "stage" for name in names)
        title = stage_label(stage)
        updates[self.stage_box] = gr.update(visible=has_own, label=f"{title} settings")
        return updates

    def from_config(self, config: JobConfig) -> dict[str, Any]:
        """The flat form values of a config (its stage's fields only)."""
        names = {spec.name for spec in stage_fields(type(config))}
        return {key: value for key, value in flatten(config.to_dict()).items() if key in names}

    def defaults(self, stage: str) -> dict[str, Any]:
        return self.from_config(get_stage(stage).config())

    def read(self, stage: str, inputs: dict) -> dict[str, Any]:
        """The flat values of `stage`'s fields from an event's inputs (a dict keyed by widget)."""
        names = [spec.name for spec in stage_fields(get_stage(stage).config)]
        return {name: from_widget(self.specs[name], inputs[self.widgets[name]]) for name in names}

    def memory_widgets(self) -> list[gr.components.Component]:
        """The widgets whose values change the expected memory."""
        return [self.widgets[name] for name in MEMORY_FIELDS]

    def memory_note(self, model: str, stage: str, inputs: dict, workspace: Workspace) -> str:
        """The expected memory of training `model` at the precision and LoRA settings the form shows."""
        values = {name: from_widget(self.specs[name], inputs[self.widgets[name]]) for name in MEMORY_FIELDS}
        head = REWARD if get_stage(stage).produces == REWARD_MODEL else CAUSAL
        try:
            shape = model_shape(model, workspace, head)
        except ModelError as error:
            return f"Expected memory: unknown until the model can be found ({error})"
        targets = values["lora.target_modules"]
        lora = None
        if values["lora.enabled"]:
            lora = LoraPlan(values["lora.r"] or 0, targets if targets == "auto" else tuple(targets))
        precision = load_precision(values["quantization"], lora is not None)
        weights_at = {name: estimate_memory(shape, name, lora).weight_bytes for name in PRECISIONS}
        return memory_text(estimate_memory(shape, precision, lora), weights_at)


def memory_text(job: MemoryEstimate, weights_at: dict[str, int]) -> str:
    """'Expected memory ... about 0.35 GB for this job: weights 0.27 GB in bf16 + ...' (Markdown)."""
    if job.trainable < job.parameters:
        state = f"the {count(job.trainable)} LoRA parameters with their gradients and Adam state"
    else:
        state = f"the gradients and Adam state of all {count(job.trainable)} weights"
    others = " · ".join(f"{PRECISION_NAMES[name]} {gigabytes(size)}" for name, size in weights_at.items())
    return (
        f"**Expected memory** (from the model's config, nothing loaded; {count(job.parameters)} parameters): "
        f"about **{gigabytes(job.total_bytes)}** for this job: weights {gigabytes(job.weight_bytes)} in "
        f"{PRECISION_NAMES[job.precision]} + {gigabytes(job.training_bytes)} for {state}. Weights alone: "
        f"{others}. Not counted: activations (they grow with batch size × max length), a frozen reference "
        "copy or a reward model, the CUDA context."
    )


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size < 10e9 else f"{size / 1e9:.1f} GB"


def count(parameters: int) -> str:
    return f"{parameters / 1e9:.2f}B" if parameters >= 1e9 else f"{parameters / 1e6:.1f}M"
