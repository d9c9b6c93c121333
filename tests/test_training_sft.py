import hashlib
import json

from test_training_common import (
    SFT_ROWS,
    add_dataset,
    assert_every_weight_changed,
    read_metrics,
    tiny_config,
    weights,
)

from rlhf_studio.models import load_causal_lm
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.training import run_stage


def test_sft_full_fine_tune_logs_loss_and_trains_every_weight(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "demo-sft", SFT_ROWS)
    config = tiny_config(SFTJobConfig, tiny_model_dir, dataset, use_eval_split=True, eval_steps=2)
    run_dir = workspace.runs_dir / "sft-full"
    summary = run_stage(config, run_dir, workspace)

    rows = read_metrics(run_dir)
    train_rows = [row for row in rows if "loss" in row]
    assert [row["step"] for row in train_rows] == [1, 2, 3]
    assert all(row["max_steps"] == 3 and "time" in row and "epoch" in row for row in rows)
    assert [row["step"] for row in rows if "eval_loss" in row] == [0, 2, 3]  # start, every 2, the last
    assert summary["global_step"] == 3 and "loss" in summary and "eval_loss" in summary

    model_dir = run_dir / "model"
    assert_every_weight_changed(weights(tiny_model_dir), weights(model_dir))
    assert not (model_dir / "training_args.bin").exists()
    assert load_causal_lm(str(model_dir), workspace).num_parameters() > 0
    assert sorted(path.name for path in run_dir.iterdir()) == ["checkpoints", "metrics.jsonl", "model"]


def test_sft_lora_saves_an_adapter_and_leaves_the_base_alone(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "demo-sft", SFT_ROWS)
    base_file = tiny_model_dir / "model.safetensors"
    base_hash = hashlib.sha256(base_file.read_bytes()).hexdigest()
    config = tiny_config(SFTJobConfig, tiny_model_dir, dataset)
    config.lora.enabled = True
    run_dir = workspace.runs_dir / "sft-lora"
    run_stage(config, run_dir, workspace)

    model_dir = run_dir / "model"
    assert (model_dir / "adapter_config.json").is_file() and (model_dir / "tokenizer.json").is_file()
    assert not (model_dir / "model.safetensors").exists()
    adapter = weights(model_dir, "adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)
    assert all(
        tensor.abs().sum() > 0 for name, tensor in adapter.items() if "lora_B" in name
    )  # B starts at 0
    adapter_config = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_model_dir)
    assert set(adapter_config["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    }  # fmt: skip
    assert hashlib.sha256(base_file.read_bytes()).hexdigest() == base_hash
    assert "loss" in read_metrics(run_dir)[0]


def test_sft_trains_on_conversations_and_plain_text(tiny_model_dir, workspace):
    conversations = [
        {
            "messages": [
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["completion"]},
            ]
        }
        for row in SFT_ROWS
    ]
    for name, rows in (
        ("chats", conversations),
        ("texts", [{"text": row["completion"]} for row in SFT_ROWS]),
    ):
        add_dataset(workspace, name, rows)
        run_dir = workspace.runs_dir / name
        run_stage(tiny_config(SFTJobConfig, tiny_model_dir, name, max_steps=2), run_dir, workspace)
        assert [row["step"] for row in read_metrics(run_dir) if "loss" in row] == [1, 2]
