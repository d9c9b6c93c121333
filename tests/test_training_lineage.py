import json

import pytest
import torch
from test_training_common import PREFERENCE_ROWS, SFT_ROWS, add_dataset, read_metrics, tiny_config

from rlhf_studio.config import ConfigError, save_config
from rlhf_studio.stages import load_config, validate
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.training import run_stage
from rlhf_studio.training.common import CAUSAL, REWARD, load_model_chain


def sft_adapter_run(tiny_model_dir, workspace, run_id: str = "sft-lora"):
    add_dataset(workspace, "sft-rows", SFT_ROWS)
    config = tiny_config(SFTJobConfig, tiny_model_dir, "sft-rows", max_steps=2)
    config.lora.enabled = True
    run_stage(config, workspace.runs_dir / run_id, workspace)
    return run_id


def test_dpo_from_an_adapter_run_records_lineage_and_starts_from_the_merged_model(tiny_model_dir, workspace):
    parent = sft_adapter_run(tiny_model_dir, workspace)
    add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(DPOJobConfig, f"run:{parent}", "prefs", max_steps=2, use_eval_split=True)
    config.lora.enabled = True
    assert config.parent_run == parent
    save_config(config, workspace.root / "dpo.yaml")
    assert load_config(workspace.root / "dpo.yaml").parent_run == parent

    run_dir = workspace.runs_dir / "dpo-child"
    run_stage(config, run_dir, workspace)
    first_eval = next(row for row in read_metrics(run_dir) if "eval_loss" in row)
    assert first_eval["eval_rewards/margins"] == 0  # the reference is the merged SFT model itself

    adapter = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    parent_model = workspace.runs_dir / parent / "model"
    assert adapter["base_model_name_or_path"] == str(parent_model)
    sft_merged = load_model_chain(str(parent_model), CAUSAL, {}, workspace)
    dpo_merged = load_model_chain(str(run_dir / "model"), CAUSAL, {}, workspace)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(sft_merged.state_dict()[name], dpo_merged.state_dict()[name])


def test_reward_model_from_an_sft_adapter_run_keeps_the_merged_body(tiny_model_dir, workspace):
    parent = sft_adapter_run(tiny_model_dir, workspace)
    parent_model = str(workspace.runs_dir / parent / "model")
    causal = load_model_chain(parent_model, CAUSAL, {}, workspace)
    reward = load_model_chain(parent_model, REWARD, {}, workspace)
    assert reward.config.num_labels == 1
    for name, tensor in reward.model.state_dict().items():
        assert torch.equal(tensor, causal.model.state_dict()[name]), name

    add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(RewardJobConfig, f"run:{parent}", "prefs", max_steps=2)
    run_stage(config, workspace.runs_dir / "rm-child", workspace)
    assert (workspace.runs_dir / "rm-child" / "model" / "model.safetensors").is_file()


def test_a_reward_run_cannot_start_a_language_model_stage(tiny_model_dir, workspace):
    add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    run_stage(
        tiny_config(RewardJobConfig, tiny_model_dir, "prefs", max_steps=1),
        workspace.runs_dir / "rm",
        workspace,
    )
    with pytest.raises(ConfigError, match="model: run:rm is a reward model"):
        validate(tiny_config(DPOJobConfig, "run:rm", "prefs"), workspace)
