"""The chat model cache: one base for LoRA runs that share it, adapters switched per pane, LRU eviction."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_chat_engine import full_run, lora_run

from rlhf_studio.chat import ModelCache
from rlhf_studio.chat.cache import module_bytes
from rlhf_studio.chat.sources import model_source
from rlhf_studio.models import ModelError
from rlhf_studio.training.common import CAUSAL, REWARD, load_model_chain

BASE_WEIGHT = "model.layers.0.self_attn.q_proj"


def base_weight(pane_model) -> torch.Tensor:
    """The base q_proj weight of layer 0 in the pane's module, PEFT-wrapped or not."""
    module = pane_model.entry.module
    module = module.get_base_model() if hasattr(module, "get_base_model") else module
    layer = module.get_submodule(BASE_WEIGHT)
    return getattr(layer, "base_layer", layer).weight


def logits(pane_model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), pane_model.active() as module:
        return module(input_ids=ids).logits


def test_three_lora_runs_on_one_base_hold_one_copy_of_the_base(workspace, tiny_model_dir):
    runs = [lora_run(workspace, tiny_model_dir, f"lora-{seed}", seed) for seed in (1, 2, 3)]
    cache = ModelCache(workspace)
    base_alone = module_bytes(cache.load(str(tiny_model_dir)).entry.module)
    panes = [cache.load(run) for run in runs]
    assert len(cache.loaded()) == 1
    pointers = {base_weight(pane).data_ptr() for pane in panes}
    assert len(pointers) == 1
    assert pointers == {base_weight(cache.load(str(tiny_model_dir))).data_ptr()}
    assert len({pane.adapters for pane in panes}) == 3
    assert cache.memory_bytes() < 1.2 * base_alone


def test_each_pane_computes_with_its_own_adapter_and_the_base_without_any(workspace, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    runs = [lora_run(workspace, tiny_model_dir, f"lora-{seed}", seed) for seed in (1, 2)]
    cache = ModelCache(workspace)
    base_pane = cache.load(str(tiny_model_dir))  # loaded bare first, wrapped when the first adapter comes
    panes = [cache.load(run) for run in runs]
    ids = torch.tensor([[5, 17, 42, 8]])
    bare = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        torch.testing.assert_close(logits(base_pane, ids), bare(input_ids=ids).logits)
        for run, pane in zip(runs, panes, strict=True):
            merged = PeftModel.from_pretrained(
                AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                workspace.runs_dir / run.removeprefix("run:") / "model",
            ).merge_and_unload()
            torch.testing.assert_close(logits(pane, ids), merged(input_ids=ids).logits, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(logits(panes[0], ids), logits(panes[1], ids))


def test_full_fine_tunes_load_separately_and_adapters_find_their_base(workspace, tiny_model_dir):
    full = full_run(workspace, tiny_model_dir, "sft-full")
    lora = lora_run(workspace, tiny_model_dir, "lora-1", 1)
    source = model_source(lora, workspace)
    assert source.adapters == (source.folder,) and source.weights == str(tiny_model_dir)
    assert source.tokenizer_source == str(tiny_model_dir)  # the adapter was saved without a tokenizer
    cache = ModelCache(workspace)
    panes = [cache.load(full), cache.load(lora)]
    assert len(cache.loaded()) == 2
    assert base_weight(panes[0]).data_ptr() != base_weight(panes[1]).data_ptr()
    assert panes[0].adapters == () and len(panes[1].adapters) == 1


def test_least_recently_used_models_are_evicted_beyond_the_budget(workspace, tiny_model_dir, tmp_path):
    folders = [str(shutil.copytree(tiny_model_dir, tmp_path / name)) for name in ("a", "b", "c")]
    one_model = module_bytes(ModelCache(workspace).load(folders[0]).entry.module)
    cache = ModelCache(workspace, budget_bytes=int(2.5 * one_model))
    first_a = cache.load(folders[0])
    cache.load(folders[1])
    assert cache.load(folders[0]).entry is first_a.entry  # a hit, and now the most recently used
    cache.load(folders[2])
    assert cache.loaded() == [(folders[0], CAUSAL), (folders[2], CAUSAL)]
    assert cache.memory_bytes() == 2 * one_model
    assert cache.load(folders[1]).entry is not None
    assert cache.loaded() == [(folders[2], CAUSAL), (folders[1], CAUSAL)]

    tiny_budget = ModelCache(workspace, budget_bytes=1)
    tiny_budget.load(folders[0])
    tiny_budget.load(folders[1])
    assert tiny_budget.loaded() == [(folders[1], CAUSAL)]  # the model just asked for always stays


def test_loading_reports_progress_and_a_hit_loads_nothing(workspace, tiny_model_dir):
    run = lora_run(workspace, tiny_model_dir, "lora-1", 1)
    cache = ModelCache(workspace)
    reports: list[tuple[float, str]] = []
    cache.load(run, progress=lambda fraction, text: reports.append((fraction, text)))
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(text.startswith("Loading") for _, text in reports)
    assert any(text.startswith("Adding adapter") for _, text in reports)
    reports.clear()
    cache.load(run, progress=lambda fraction, text: reports.append((fraction, text)))
    assert reports == [(1.0, f"{run} ready")]


def test_reward_models_and_language_models_are_not_mixed_up(workspace, tiny_model_dir, tiny_reward_dir):
    cache = ModelCache(workspace)
    with pytest.raises(ModelError, match="is a reward model"):
        cache.load(str(tiny_reward_dir))
    with pytest.raises(ModelError, match="is a language model"):
        cache.load(str(tiny_model_dir), head=REWARD)
    reward = cache.load(str(tiny_reward_dir), head=REWARD)
    assert reward.config.num_labels == 1 and reward.config.pad_token_id == reward.tokenizer.pad_token_id
    with pytest.raises(ModelError, match="no finished model"):
        cache.load("run:missing")


def chained_lora_run(workspace, parent_run: str, run_id: str, seed: int, **lora) -> str:
    """A LoRA run trained the way training does it on an adapter run: on the parent merged into its base."""
    from peft import LoraConfig, get_peft_model

    parent = workspace.runs_dir / parent_run.removeprefix("run:") / "model"
    merged = load_model_chain(str(parent), CAUSAL, {}, workspace)
    torch.manual_seed(seed)
    settings = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj"], "init_lora_weights": False}
    model = get_peft_model(merged, LoraConfig(task_type="CAUSAL_LM", **{**settings, **lora}))
    model.peft_config["default"].base_model_name_or_path = str(parent)  # as save_final_model records it
    model.save_pretrained(workspace.runs_dir / run_id / "model")
    return f"run:{run_id}"


def test_an_adapter_trained_on_an_adapter_run_stacks_on_the_same_base(workspace, tiny_model_dir):
    """Panes base, SFT (LoRA) and DPO (LoRA on the merged SFT): one base copy, each pane's own outputs."""
    sft = lora_run(workspace, tiny_model_dir, "sft-lora", 1)
    dpo = chained_lora_run(workspace, sft, "dpo-lora", 2)
    cache = ModelCache(workspace)
    panes = [cache.load(spec) for spec in (str(tiny_model_dir), sft, dpo)]
    assert len(cache.loaded()) == 1
    assert [len(pane.adapters) for pane in panes] == [0, 1, 2]
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    with torch.no_grad():
        for spec, pane in zip((str(tiny_model_dir), sft, dpo), panes, strict=True):
            folder = model_source(spec, workspace).folder
            expected = load_model_chain(folder, CAUSAL, {}, workspace)(input_ids=ids).logits
            torch.testing.assert_close(logits(pane, ids), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(logits(panes[1], ids), logits(panes[2], ids))


def test_an_adapter_that_does_not_stack_is_merged_into_a_model_of_its_own(workspace, tiny_model_dir):
    sft = lora_run(workspace, tiny_model_dir, "sft-lora", 1)
    dora = chained_lora_run(workspace, sft, "dpo-dora", 2, use_dora=True)
    source = model_source(dora, workspace)
    assert source.adapters == () and source.weights == source.folder
    cache = ModelCache(workspace)
    pane = cache.load(dora)
    cache.load(sft)
    assert len(cache.loaded()) == 2
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    with torch.no_grad():
        expected = load_model_chain(source.folder, CAUSAL, {}, workspace)(input_ids=ids).logits
        torch.testing.assert_close(logits(pane, ids), expected)
