"""How much memory a model takes to train, from its config alone: no weights are read or loaded.

    shape = model_shape("run:20261122-141501-sft-3f2a", workspace)   # bundled, hub id, folder or run:<id>
    estimate = estimate_memory(shape, "4bit", LoraPlan(r=16, targets="auto"))
    estimate.weight_bytes, estimate.training_bytes, estimate.total_bytes

The model is built on PyTorch's meta device (shapes without storage), so every architecture transformers knows
is counted exactly, tied weights once; bitsandbytes' choice of layers to quantize is transformers' own rule
(`get_keys_to_not_convert`: the output head, tied and last modules stay unquantized).

Bytes a weight, as training loads the base (`load_precision`, training/common.py's `model_load_kwargs`):
  fp32 4, bf16 2;
  8bit  (LLM.int8)  each Linear weight 1 byte + an fp32 scale per output row;
  4bit  (NF4, double quantization) each Linear weight half a byte + its block scales (one byte per 64 weights,
        an fp32 per 256 blocks);
  under 4/8-bit everything else (embeddings, norms, the output head, biases) is in the compute dtype, bf16
  on a GPU with bf16 (without CUDA, where 4/8-bit cannot run, the figures are those of such a GPU).
Training state: LoRA adapters in fp32 with a gradient and two Adam moments (16 bytes a parameter; TRL keeps
them in bf16 on a quantized base, so this is an upper bound there), or, for a full fine-tune, a gradient and
two Adam moments per fp32 weight (12 bytes). Not counted: activations (they grow with batch size x max
length), a frozen reference copy or a reward model, the CUDA context and the allocator's slack.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.models import (
    BUNDLED_FOLDER,
    BUNDLED_MODEL,
    ModelError,
    bundled_gguf_path,
    device_precision,
    trust_remote_code_allowed,
)
from rlhf_studio.training.common import CAUSAL, REWARD, auto_target_modules
from rlhf_studio.workspace import Workspace

PRECISIONS = ("fp32", "bf16", "8bit", "4bit")
WEIGHT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
NF4_BLOCK, NESTED_BLOCK = 64, 256  # bitsandbytes' 4-bit block size; double quantization's block of scales
LORA_STATE_BYTES = 16  # fp32 weight + gradient + two Adam moments
FULL_STATE_BYTES = 12  # gradient + two Adam moments beside an fp32 weight


@dataclass(frozen=True)
class LinearLayer:
    name: str  # "model.layers.0.self_attn.q_proj"
    in_features: int
    out_features: int
    quantized: bool  # bitsandbytes replaces it under 4/8-bit loading

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model: its parameters and its linear layers."""

    parameters: int  # every parameter, tied weights once
    linears: tuple[LinearLayer, ...]
    auto_targets: tuple[str, ...]  # the layer names lora.target_modules="auto" picks


@dataclass(frozen=True)
class LoraPlan:
    r: int
    targets: str | tuple[str, ...] = "auto"  # "auto", or the module names that get adapters


@dataclass(frozen=True)
class MemoryEstimate:
    precision: str  # of the base weights: fp32, bf16, 8bit or 4bit
    parameters: int  # of the base model
    weight_bytes: int
    trainable: int  # LoRA adapter parameters, or every parameter for a full fine-tune
    training_bytes: int  # the trainable parameters' state (see the module docstring)

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.training_bytes


def load_precision(quantization: str, lora: bool, device: str | None = None) -> str:
    """The precision training loads the base in: 4/8-bit when asked, bf16 for a frozen LoRA base on a device
    with bf16, else fp32 master weights (the same choice as training/common.py's `model_load_kwargs`)."""
    if quantization in ("4bit", "8bit"):
        return quantization
    return "bf16" if lora and (device or device_precision()) == "bf16" else "fp32"


def estimate_memory(
    shape: ModelShape, precision: str, lora: LoraPlan | None, compute: str | None = None
) -> MemoryEstimate:
    """The memory of `shape`'s weights at `precision` and of its training state (LoRA, or a full fine-tune).

    `compute` is the dtype of what 4/8-bit loading leaves unquantized (default: `quantized_compute()`).
    """
    if precision in WEIGHT_BYTES:
        weight_bytes = shape.parameters * WEIGHT_BYTES[precision]
    else:
        quantized = [layer for layer in shape.linears if layer.quantized]
        rest = shape.parameters - sum(layer.in_features * layer.out_features for layer in quantized)
        packed = sum(quantized_bytes(layer, precision) for layer in quantized)
        weight_bytes = rest * WEIGHT_BYTES[compute or quantized_compute()] + packed
    if lora is None:
        return MemoryEstimate(
            precision, shape.parameters, weight_bytes, shape.parameters, shape.parameters * FULL_STATE_BYTES
        )
    targets = set(shape.auto_targets if lora.targets == "auto" else lora.targets)
    adapters = sum(
        lora.r * (layer.in_features + layer.out_features) for layer in shape.linears if layer.leaf in targets
    )
    return MemoryEstimate(precision, shape.parameters, weight_bytes, adapters, adapters * LORA_STATE_BYTES)


def quantized_compute() -> str:
    """The dtype 4/8-bit loading leaves the rest of a model in: bf16 on a GPU with bf16, fp32 on one without;
    on a machine without CUDA, where 4/8-bit cannot run, what it would be on a GPU with bf16."""
    import torch

    return device_precision() if torch.cuda.is_available() else "bf16"


def quantized_bytes(layer: LinearLayer, precision: str) -> int:
    """Bytes of one bitsandbytes layer's weight and its scales."""
    weights = layer.in_features * layer.out_features
    if precision == "8bit":
        return weights + 4 * layer.out_features
    if precision == "4bit":
        blocks = math.ceil(weights / NF4_BLOCK)
        return math.ceil(weights / 2) + blocks + 4 * math.ceil(blocks / NESTED_BLOCK)
    raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


# ---------------------------------------------------------------- a model's shape, from its config


def shape_of_config(config, head: str = CAUSAL) -> ModelShape:
    """Build the model of `config` on the meta device (no memory, no weights) and read its shape."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    auto_class = AutoModelForCausalLM
    if head == REWARD:
        auto_class, config = AutoModelForSequenceClassification, copy.deepcopy(config)
        config.num_labels = 1
    with torch.device("meta"):
        model = auto_class.from_config(config, trust_remote_code=trust_remote_code_allowed())
    keep = get_keys_to_not_convert(model)
    linears = []
    for name, module in model.named_modules():
        if type(module) is torch.nn.Linear:  # bitsandbytes replaces exactly these and Conv1D
            in_features, out_features = module.in_features, module.out_features
        elif isinstance(module, Conv1D):  # GPT-2's linear layers, weight stored (in, out)
            in_features, out_features = module.weight.shape
        else:
            continue
        linears.append(LinearLayer(name, in_features, out_features, should_convert_module(name, keep)))
    return ModelShape(
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        linears=tuple(linears),
        auto_targets=tuple(auto_target_modules(model)),
    )


def model_shape(spec: str, workspace: Workspace, head: str = CAUSAL) -> ModelShape:
    """The shape of the model a job starts from; ModelError when its config cannot be read.

    An adapter run counts as the full model at the root of its chain (training merges the chain into it). The
    bundled model not yet converted is read from its GGUF file's header.
    """
    source, gguf_file = config_source(spec, workspace)
    config_file = Path(source) / (gguf_file or "config.json")
    stamp = config_file.stat().st_mtime_ns if config_file.is_file() else None  # a replaced run reads anew
    return _shape(source, gguf_file, stamp, head)


def config_source(spec: str, workspace: Workspace) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None) that holds the config of what `spec` trains."""
    from rlhf_studio.chat.sources import model_source

    gguf = bundled_gguf_path() if spec == BUNDLED_MODEL else None
    if gguf is not None and not (workspace.models_dir / BUNDLED_FOLDER / "model.safetensors").is_file():
        return str(gguf.parent), gguf.name  # resolving would convert it: read the GGUF instead
    return model_source(spec, workspace).lineage[-1], None


@functools.lru_cache(maxsize=32)
def _shape(source: str, gguf_file: str | None, stamp: int | None, head: str) -> ModelShape:
    from transformers import AutoConfig

    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code_allowed(), **extra)
    except (OSError, ValueError) as error:
        raise ModelError(f"Could not read the config of '{source}': {str(error).splitlines()[0]}") from error
    return shape_of_config(config, head)
