import torch
from test_training_common import (
    PREFERENCE_ROWS,
    add_dataset,
    assert_every_weight_changed,
    read_metrics,
    tiny_config,
    weights,
)

from rlhf_studio.stages import dpo
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.training import run_stage

DPO_METRICS = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"}


def test_dpo_logs_rewards_and_trains_every_weight(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(DPOJobConfig, tiny_model_dir, dataset, use_eval_split=True, eval_steps=3)
    run_dir = workspace.runs_dir / "dpo-full"
    summary = run_stage(config, run_dir, workspace)

    rows = read_metrics(run_dir)
    train_rows = [row for row in rows if "loss" in row]
    assert len(train_rows) == 3 and all(DPO_METRICS <= row.keys() for row in train_rows)
    eval_rows = [row for row in rows if "eval_loss" in row]
    assert eval_rows[0]["eval_rewards/margins"] == 0  # policy == reference before the first step
    assert eval_rows[-1]["eval_rewards/margins"] > 0
    assert summary["rewards/margins"] == train_rows[-1]["rewards/margins"]
    assert_every_weight_changed(weights(tiny_model_dir), weights(run_dir / "model"))


def test_dpo_reference_is_a_frozen_copy_or_the_disabled_adapter(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    full = dpo.build_trainer(
        tiny_config(DPOJobConfig, tiny_model_dir, dataset), workspace.runs_dir / "a", workspace, []
    )[0]
    reference = dict(full.ref_model.named_parameters())
    for name, parameter in full.model.named_parameters():
        assert reference[name] is not parameter and torch.equal(reference[name], parameter)
        assert not reference[name].requires_grad

    lora_config = tiny_config(DPOJobConfig, tiny_model_dir, dataset)
    lora_config.lora.enabled = True
    with_lora = dpo.build_trainer(lora_config, workspace.runs_dir / "b", workspace, [])[0]
    assert with_lora.ref_model is None  # TRL disables the adapter for reference log-probs: one weight copy


def test_dpo_lora_run_saves_only_the_adapter(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(DPOJobConfig, tiny_model_dir, dataset, max_steps=2)
    config.lora.enabled = True
    run_dir = workspace.runs_dir / "dpo-lora"
    run_stage(config, run_dir, workspace)
    names = sorted(path.name for path in (run_dir / "model").iterdir())
    assert "adapter_model.safetensors" in names and "model.safetensors" not in names
    assert all(DPO_METRICS <= row.keys() for row in read_metrics(run_dir) if "loss" in row)
