"""What a chat pane's model picker names, resolved to what has to be loaded.

A pane shows the bundled model, a local folder, a hub id or a finished run (`run:<id>`). A run's `model/`
folder holds either a full model or a LoRA adapter whose `adapter_config.json` names the folder it was trained
on (`base_model_name_or_path`), which may itself be an adapter run: SFT with LoRA, then DPO with LoRA on the
SFT model. Training merges such a chain before it adds the next adapter, so the DPO adapter learned on
W + ΔW_sft. For plain LoRA that merge is a sum, (W + ΔW_sft)·x + ΔW_dpo·x = W·x + ΔW_sft·x + ΔW_dpo·x, so
chat leaves every adapter of the chain unmerged and switches them on together on the root model: base, SFT
and DPO panes then share one copy of the base weights (see `cache.py`).

Adapters whose update is not a plain sum (DoRA, `modules_to_save`, trainable tokens, other PEFT methods) are
loaded the way training loads them instead: merged into a model of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.models import ModelError, Progress, resolve_model
from rlhf_studio.workspace import Workspace

ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
MAX_CHAIN = 16  # adapters on adapters; more than this is a loop in the lineage


@dataclass(frozen=True)
class ModelSource:
    """A picked model, resolved: the full model to hold in memory and the adapters to switch on over it."""

    spec: str  # what the user picked: the bundled model's name, a folder, a hub id or run:<id>
    folder: str  # the picked model's own resolved folder (or hub id)
    weights: str  # the full model to load: the root of an adapter chain, else `folder` itself
    adapters: tuple[str, ...] = ()  # adapter folders to switch on over `weights`, the root's first
    lineage: tuple[str, ...] = ()  # every folder from `folder` down to the root, for finding a tokenizer

    @property
    def is_adapter(self) -> bool:
        return bool(self.adapters)

    @property
    def tokenizer_source(self) -> str:
        """The nearest folder with a tokenizer: training saves one next to each adapter, tests may not."""
        for folder in self.lineage:
            if any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
                return folder
        return self.lineage[-1] if self.lineage else self.folder


def stackable(adapter_config: dict) -> bool:
    """Whether an adapter is plain LoRA: its update adds to the layer's output, so adapters stack."""
    return (
        adapter_config.get("peft_type") == "LORA"
        and not adapter_config.get("use_dora")
        and not adapter_config.get("modules_to_save")
        and not adapter_config.get("trainable_token_indices")
    )


def model_source(spec: str, workspace: Workspace, progress: Progress | None = None) -> ModelSource:
    """Resolve a pane's pick; raises ModelError (one sentence for the user) when it cannot be loaded."""
    folder = resolve_model(spec, workspace, progress)
    lineage, configs = [folder], []
    while (Path(lineage[-1]) / ADAPTER_CONFIG).is_file():
        if len(configs) == MAX_CHAIN:
            raise ModelError(f"{spec} is an adapter on an adapter on ... more than {MAX_CHAIN} deep: a loop?")
        configs.append(json.loads((Path(lineage[-1]) / ADAPTER_CONFIG).read_text()))
        lineage.append(resolve_model(configs[-1]["base_model_name_or_path"], workspace, progress))
    if not configs or not all(stackable(config) for config in configs):
        return ModelSource(spec=spec, folder=folder, weights=folder, lineage=tuple(lineage))
    return ModelSource(
        spec=spec,
        folder=folder,
        weights=lineage[-1],
        adapters=tuple(reversed(lineage[:-1])),
        lineage=tuple(lineage),
    )
