"""The memory estimate from a model's config (rlhf_studio.model_memory) and the Train tab's line showing it.

Against real loads: the tiny model's parameters and bytes as transformers loads it in fp32 and bf16, the LoRA
parameters PEFT adds; the shape numbers of the bundled SmolLM2-135M-Instruct and of Llama-2-7B; 4/8-bit loads
on a GPU only (bitsandbytes needs CUDA).
"""

from __future__ import annotations

import importlib.util

import gradio as gr
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

from rlhf_studio.config import QUANTIZATION_CHOICES, LoraSettings
from rlhf_studio.model_memory import (
    LoraPlan,
    estimate_memory,
    load_precision,
    model_shape,
    shape_of_config,
)
from rlhf_studio.models import BUNDLED_MODEL, ModelError, bundled_gguf_path
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.training import common
from rlhf_studio.ui.settings_form import SettingsForm, gigabytes

SMOLLM2_135M = dict(
    hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
    intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True,
)  # fmt: skip
LLAMA_7B = dict(
    hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
    intermediate_size=11008, vocab_size=32000, tie_word_embeddings=False,
)  # fmt: skip


def parameter_bytes(model) -> int:
    return sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())


def test_the_tiny_model_is_counted_as_transformers_loads_it(tiny_model_dir, workspace):
    shape = model_shape(str(tiny_model_dir), workspace)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
        assert shape.parameters == sum(parameter.numel() for parameter in model.parameters())
        assert estimate_memory(shape, precision, None).weight_bytes == parameter_bytes(model)
    assert list(shape.auto_targets) == common.auto_target_modules(model)
    reward = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    reward_shape = model_shape(str(tiny_model_dir), workspace, head=common.REWARD)
    assert reward_shape.parameters == sum(parameter.numel() for parameter in reward.parameters())


def test_lora_state_is_what_peft_adds_and_a_full_fine_tune_trains_every_weight(tiny_model_dir, workspace):
    shape = model_shape(str(tiny_model_dir), workspace)
    for targets in ("auto", ("q_proj", "v_proj")):
        estimate = estimate_memory(shape, "bf16", LoraPlan(r=8, targets=targets))
        names = list(shape.auto_targets) if targets == "auto" else list(targets)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        adapted = get_peft_model(model, LoraConfig(r=8, target_modules=names))
        trainable = sum(parameter.numel() for parameter in adapted.parameters() if parameter.requires_grad)
        assert estimate.trainable == trainable
        assert estimate.training_bytes == 16 * trainable  # fp32 weight, gradient, two Adam moments
    full = estimate_memory(shape, "fp32", None)
    assert full.trainable == shape.parameters and full.training_bytes == 12 * shape.parameters
    assert full.total_bytes == full.weight_bytes + full.training_bytes


def test_bundled_model_shape_numbers():
    shape = shape_of_config(LlamaConfig(**SMOLLM2_135M))
    assert shape.parameters == 134_515_008  # SmolLM2-135M-Instruct's published count
    quantized = [layer for layer in shape.linears if layer.quantized]
    assert len(quantized) == 30 * 7 and "lm_head" not in {layer.name for layer in quantized}
    linear = sum(layer.in_features * layer.out_features for layer in quantized)
    assert linear == 30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536)
    rest = shape.parameters - linear  # embeddings (tied to the head) and norms, in bf16
    assert estimate_memory(shape, "bf16", None).weight_bytes == 2 * 134_515_008
    four = estimate_memory(shape, "4bit", None, compute="bf16").weight_bytes
    assert four == pytest.approx(2 * rest + linear * (0.5 + 1 / 64 + 4 / (64 * 256)), rel=1e-3)
    eight = estimate_memory(shape, "8bit", None, compute="bf16").weight_bytes
    rows = sum(layer.out_features for layer in quantized)
    assert eight == 2 * rest + linear + 4 * rows
    assert round(four / 1e9, 2) == 0.11 and round(eight / 1e9, 2) == 0.16


def test_a_7b_llama_in_4bit_is_under_4_gb_of_weights():
    shape = shape_of_config(LlamaConfig(**LLAMA_7B))
    assert shape.parameters == 6_738_415_616
    estimate = estimate_memory(shape, "4bit", LoraPlan(r=16), compute="bf16")
    assert 3.8e9 < estimate.weight_bytes < 3.95e9
    assert estimate.trainable == 32 * 16 * (4 * (4096 + 4096) + 3 * (4096 + 11008))


@pytest.mark.parametrize("device", ["fp32", "bf16"])
@pytest.mark.parametrize("quantization", QUANTIZATION_CHOICES)
@pytest.mark.parametrize("lora", [False, True])
def test_load_precision_is_what_training_loads(monkeypatch, device, quantization, lora):
    monkeypatch.setattr(common, "device_precision", lambda: device)
    kwargs = common.model_load_kwargs(
        SFTJobConfig(lora=LoraSettings(enabled=lora), quantization=quantization)
    )
    if "quantization_config" in kwargs:
        expected = "4bit" if kwargs["quantization_config"].load_in_4bit else "8bit"
    else:
        expected = {torch.float32: "fp32", torch.bfloat16: "bf16"}[kwargs["dtype"]]
    assert load_precision(quantization, lora, device) == expected


def test_an_adapter_run_counts_as_its_base_and_a_missing_model_is_a_model_error(tiny_model_dir, workspace):
    adapted = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4))
    adapted.save_pretrained(workspace.runs_dir / "lora-run" / "model")
    assert model_shape("run:lora-run", workspace) == model_shape(str(tiny_model_dir), workspace)
    with pytest.raises(ModelError):
        model_shape(str(tiny_model_dir / "missing"), workspace)


@pytest.mark.slow
@pytest.mark.skipif(bundled_gguf_path() is None, reason="the bundled model package is not installed")
def test_the_bundled_model_is_read_from_its_gguf_without_converting_it(workspace):
    shape = model_shape(BUNDLED_MODEL, workspace)
    assert shape.parameters == 134_515_008
    assert not (workspace.models_dir / "SmolLM2-135M-Instruct").exists()


def form_inputs(form: SettingsForm, quantization: str = "none", lora: bool = True) -> dict:
    values = {"quantization": quantization, "lora.enabled": lora, "lora.r": 16, "lora.target_modules": "auto"}
    return {form.widgets[name]: value for name, value in values.items()}


def test_the_train_tab_shows_the_expected_memory_at_the_chosen_precision(tmp_path, workspace):
    folder = tmp_path / "smollm2-shape"
    LlamaConfig(**SMOLLM2_135M).save_pretrained(folder)  # a config alone: nothing to load
    with gr.Blocks():
        form = SettingsForm()
    model = str(folder)
    precision = load_precision("none", True)
    job = estimate_memory(model_shape(model, workspace), precision, LoraPlan(16))
    text = form.memory_note(model, "sft", form_inputs(form), workspace)
    assert f"about **{gigabytes(job.total_bytes)}** for this job" in text
    assert f"weights {gigabytes(job.weight_bytes)} in {precision}" in text
    assert "bf16 0.27 GB" in text and "4-bit 0.11 GB" in text and "8-bit 0.16 GB" in text
    assert "weights 0.11 GB in 4-bit" in form.memory_note(model, "sft", form_inputs(form, "4bit"), workspace)
    full = form.memory_note(model, "sft", form_inputs(form, lora=False), workspace)
    assert "weights 0.54 GB in fp32" in full and "Adam state of all 134.5M weights" in full
    missing = form.memory_note(str(tmp_path / "missing"), "sft", form_inputs(form), workspace)
    assert missing.startswith("Expected memory: unknown")


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None,
    reason="4/8-bit loading needs a CUDA GPU and bitsandbytes",
)
@pytest.mark.parametrize("precision", ["8bit", "4bit"])
def test_a_quantized_load_takes_the_estimated_memory(tmp_path, workspace, precision):
    folder = tmp_path / "model"
    config = LlamaConfig(**{**SMOLLM2_135M, "num_hidden_layers": 4, "vocab_size": 4096})
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    job = SFTJobConfig(lora=LoraSettings(enabled=True), quantization=precision)
    before = torch.cuda.memory_allocated()
    model = common.load_model_chain(str(folder), common.CAUSAL, common.model_load_kwargs(job), workspace)
    used = torch.cuda.memory_allocated() - before
    estimate = estimate_memory(model_shape(str(folder), workspace), precision, None)
    assert used == pytest.approx(estimate.weight_bytes, rel=0.05)
    del model
