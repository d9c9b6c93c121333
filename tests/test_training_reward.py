import json

import torch
from test_training_common import (
    PREFERENCE_ROWS,
    add_dataset,
    assert_every_weight_changed,
    read_metrics,
    tiny_config,
    weights,
)

from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.training import run_stage


def test_reward_model_logs_trl_metrics_and_trains_body_and_head(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(RewardJobConfig, tiny_model_dir, dataset, use_eval_split=True, eval_steps=3)
    run_dir = workspace.runs_dir / "rm-full"
    summary = run_stage(config, run_dir, workspace)

    rows = read_metrics(run_dir)
    train_rows = [row for row in rows if "loss" in row]
    assert len(train_rows) == 3 and all({"accuracy", "margin"} <= row.keys() for row in train_rows)
    eval_rows = [row for row in rows if "eval_loss" in row]
    assert [row["step"] for row in eval_rows] == [0, 3]
    assert all({"eval_accuracy", "eval_margin"} <= row.keys() for row in eval_rows)
    assert eval_rows[-1]["eval_margin"] > eval_rows[0]["eval_margin"]  # chosen replies pulled ahead
    assert "eval_accuracy" in summary

    model_dir = run_dir / "model"
    saved_config = json.loads((model_dir / "config.json").read_text())
    assert saved_config["architectures"] == ["LlamaForSequenceClassification"]
    assert len(saved_config["id2label"]) == 1 and saved_config["pad_token_id"] is not None  # num_labels=1
    after = weights(model_dir)
    assert after["score.weight"].shape[0] == 1
    assert_every_weight_changed(weights(tiny_model_dir), after, skip=("lm_head",))


def test_reward_model_with_lora_saves_adapter_and_head(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(RewardJobConfig, tiny_model_dir, dataset)
    config.lora.enabled = True
    run_dir = workspace.runs_dir / "rm-lora"
    run_stage(config, run_dir, workspace)

    adapter_config = json.loads((run_dir / "model" / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_CLS"
    adapter = weights(run_dir / "model", "adapter_model.safetensors")
    assert any("score" in name for name in adapter)  # the new head is trained in full and saved
    assert all(torch.count_nonzero(tensor) for name, tensor in adapter.items() if "lora_B" in name)
    assert "accuracy" in read_metrics(run_dir)[0]
