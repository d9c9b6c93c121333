"""Models kept in memory for chat: shared LoRA bases, least recently used ones evicted beyond a budget.

    cache = ModelCache(workspace, budget_bytes=4 * 2**30)
    pane = cache.load("run:20261122-141501-dpo-3f2a", progress=lambda fraction, text: ...)
    with pane.active() as model:      # the run's adapter switched on, nobody else stepping this module
        outputs = model(input_ids=ids, use_cache=True)

One cache entry holds one full model (the *unit* of memory and of eviction). LoRA runs that share a base
load that base once into one entry and each adds its adapter to it (PEFT multi-adapter: the first with
`PeftModel.from_pretrained`, the others with `load_adapter`); a pane then uses the entry with its own adapter
switched on, and a pane showing the base itself uses it with every adapter switched off (`CacheEntry.use`).
Full fine-tunes and reward models are entries of their own.

Several panes, and several browser sessions, step models concurrently, and switching adapters changes the
shared module: every forward therefore happens inside `LoadedModel.active()`, which holds the entry's lock
while it sets the adapter and runs. The cache's own lock covers lookups, loads and eviction.

Eviction drops the least recently used entries once their parameters exceed `budget_bytes` (never the one just
used). A pane that still holds an evicted model keeps it alive until it lets go; the next load reloads it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rlhf_studio.chat.sources import ModelSource, model_source
from rlhf_studio.config import is_reward_model
from rlhf_studio.models import ModelError, Progress, device_precision, load_tokenizer
from rlhf_studio.training.common import CAUSAL, REWARD, load_model_chain
from rlhf_studio.workspace import Workspace

DEFAULT_BUDGET_BYTES = 4 * 2**30  # about seven copies of the bundled 135M model in fp32


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (tied weights counted once)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


UNKNOWN = ("?",)  # which adapters the LoRA layers point at, right after PEFT added one


@dataclass
class CacheEntry:
    """One full model in memory and the adapters added to it (adapter folder -> PEFT adapter name)."""

    key: tuple[str, str]  # (weights source, head)
    module: Any  # the model as loaded; a PeftModel wrapping it once an adapter was added
    lock: threading.RLock = field(default_factory=threading.RLock)
    adapters: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    lora_layers: list = field(default_factory=list)  # PEFT's tuner layers, to switch adapters
    active: tuple[str, ...] = UNKNOWN  # the adapters the layers use now; (): all switched off

    def use(self, adapters: tuple[str, ...]) -> None:
        """Switch on exactly `adapters` (none: the model as loaded) in every LoRA layer.

        This is what PeftModel.set_adapter and disable_adapter come down to on each layer, minus their
        requires_grad bookkeeping: that costs 12 and 50 ms a call on the bundled model, longer than a token,
        and panes switch at every token. Chat never trains. The tests compare every pane's logits with its
        adapters merged into a fresh base.
        """
        if not self.adapters or adapters == self.active:
            return
        for layer in self.lora_layers:
            layer._disable_adapters = not adapters
            if adapters:
                layer._active_adapter = list(adapters)
        self.active = adapters


@dataclass
class LoadedModel:
    """A pane's model: a cache entry, which of its adapters to switch on (none: the base) and a tokenizer."""

    source: ModelSource
    entry: CacheEntry
    adapters: tuple[str, ...]
    tokenizer: Any

    @property
    def device(self) -> torch.device:
        return next(self.entry.module.parameters()).device

    @property
    def config(self):
        return self.entry.module.config

    @contextmanager
    def active(self) -> Iterator[Any]:
        """The module with this pane's adapters on, locked against every other user of the entry."""
        with self.entry.lock:
            self.entry.use(self.adapters)
            yield self.entry.module


def check_head(source: ModelSource, head: str) -> None:
    """Chat panes need language models, reward scores a sequence classifier: refuse the other kind."""
    if is_reward_model(Path(source.folder)) == (head == REWARD):
        return
    if head == REWARD:
        raise ModelError(f"{source.spec} is a language model; pick a reward-model run to score replies.")
    raise ModelError(
        f"{source.spec} is a reward model (it scores text, it does not write): pick a language model."
    )


class ModelCache:
    """Loaded chat and reward models; safe to use from several threads."""

    def __init__(
        self,
        workspace: Workspace,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        device: str | torch.device | None = None,
    ) -> None:
        self.workspace = workspace
        self.budget_bytes = budget_bytes
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch.bfloat16 if device_precision() == "bf16" else torch.float32
        self._entries: OrderedDict[tuple[str, str], CacheEntry] = OrderedDict()
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self, spec: str, progress: Progress | None = None, head: str = CAUSAL) -> LoadedModel:
        """The model `spec` names (a causal LM; with head=REWARD a reward model), loaded if missing."""
        report = progress or (lambda fraction, text: None)
        with self._lock:
            source = model_source(spec, self.workspace, progress)
            check_head(source, head)
            tokenizer = self._tokenizer(source)
            if head == REWARD:  # scored, never switched: an adapter is merged into an entry of its own
                entry = self._entry((source.folder, REWARD), report)
                entry.module.config.pad_token_id = (
                    tokenizer.pad_token_id
                )  # the head reads the last real token
                adapters = ()
            else:
                entry = self._entry((source.weights, CAUSAL), report)
                adapters = tuple(self._adapter(entry, folder, report) for folder in source.adapters)
            self._evict(keep=entry.key)
            report(1.0, f"{spec} ready")
            return LoadedModel(source=source, entry=entry, adapters=adapters, tokenizer=tokenizer)

    def loaded(self) -> list[tuple[str, str]]:
        """Keys of the entries in memory, least recently used first."""
        with self._lock:
            return list(self._entries)

    def memory_bytes(self) -> int:
        with self._lock:
            return sum(entry.bytes for entry in self._entries.values())

    # ---------------------------------------------------------------- under self._lock

    def _tokenizer(self, source: ModelSource):
        name = source.tokenizer_source
        if name not in self._tokenizers:
            self._tokenizers[name] = load_tokenizer(name, self.workspace)
        return self._tokenizers[name]

    def _entry(self, key: tuple[str, str], report: Progress) -> CacheEntry:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        weights, head = key
        report(0.1, f"Loading {weights}")
        try:
            module = load_model_chain(weights, head, {"dtype": self.dtype}, self.workspace)
            module = module.to(self.device).eval().requires_grad_(False)
        except (torch.OutOfMemoryError, MemoryError) as error:
            raise ModelError(
                f"Not enough memory to load {weights} for chat (a training job may be using it): "
                "close a pane, lower the chat memory budget, or wait for the training to end."
            ) from error
        entry = CacheEntry(key=key, module=module, bytes=module_bytes(module))
        self._entries[key] = entry
        return entry

    def _adapter(self, entry: CacheEntry, folder: str, report: Progress) -> str:
        """The PEFT name of the adapter in `folder` on `entry`, adding the adapter on first use."""
        if folder in entry.adapters:
            return entry.adapters[folder]
        from peft import PeftModel
        from peft.tuners.tuners_utils import BaseTunerLayer

        name = f"adapter{len(entry.adapters)}"  # run ids may hold '.', which module names cannot
        report(0.7, f"Adding adapter {folder}")
        with entry.lock:  # another pane may be stepping this entry right now
            if entry.adapters:
                entry.module.load_adapter(folder, adapter_name=name, is_trainable=False)
            else:
                entry.module = PeftModel.from_pretrained(
                    entry.module, folder, adapter_name=name, is_trainable=False
                )
            entry.module.to(self.device)
            entry.adapters[folder] = name
            entry.bytes = module_bytes(entry.module)
            entry.lora_layers = [
                layer for layer in entry.module.modules() if isinstance(layer, BaseTunerLayer)
            ]
            entry.active = UNKNOWN
        return name

    def _evict(self, keep: tuple[str, str]) -> None:
        total = sum(entry.bytes for entry in self._entries.values())
        for key in list(self._entries):
            if total <= self.budget_bytes:
                return
            if key != keep:
                total -= self._entries.pop(key).bytes
