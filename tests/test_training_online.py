"""GRPO and RLOO on the tiny model: rewards combined by weight, TRL's metrics, the samples table, alarms."""

import json

import pytest
from test_training_common import add_dataset, read_metrics, tiny_config, weights

from rlhf_studio.rewards import RuleRewardSettings
from rlhf_studio.stages import config_errors
from rlhf_studio.stages.grpo import GRPOJobConfig
from rlhf_studio.stages.rloo import RLOOJobConfig
from rlhf_studio.training import run_stage

PROMPT_ROWS = [{"prompt": f"What is {n} plus {n}?", "answer": str(2 * n)} for n in range(12)]
ONLINE_METRICS = {"reward", "reward_std", "kl", "entropy", "completions/mean_length"}


def online_config(config_class, model, dataset, **overrides):
    settings = {
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 8,
        "max_length": 128,
        "sample_steps": 1,
        **overrides,
    }
    return tiny_config(config_class, model, dataset, **settings)


@pytest.mark.parametrize("config_class", [GRPOJobConfig, RLOOJobConfig], ids=["grpo", "rloo"])
def test_rewards_are_logged_by_name_and_the_adapter_trains(
    tiny_model_dir, tiny_reward_dir, workspace, config_class
):
    dataset = add_dataset(workspace, "sums", PROMPT_ROWS, eval_fraction=0)
    rewards = RuleRewardSettings(min_words=1, max_words=3, answer_column="answer", answer_weight=0.5)
    config = online_config(
        config_class, tiny_model_dir, dataset, reward_model=str(tiny_reward_dir), rewards=rewards
    )
    config.lora.enabled = True
    run_dir = workspace.runs_dir / config.stage
    summary = run_stage(config, run_dir, workspace)

    rows = [row for row in read_metrics(run_dir) if "reward" in row]
    named = {"rewards/reward_model/mean", "rewards/length/mean", "rewards/answer/mean"}
    assert len(rows) == 3 and all(ONLINE_METRICS | named <= row.keys() for row in rows)
    assert summary["global_step"] == 3
    adapter = weights(run_dir / "model", "adapter_model.safetensors")
    assert all(
        tensor.abs().sum() > 0 for name, tensor in adapter.items() if "lora_B" in name
    )  # B starts at 0

    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").open()]
    assert {row["step"] for row in samples} == {1, 2, 3}
    assert {"prompt", "response", "reward_model", "length", "answer"} <= samples[0].keys()
    assert samples[0]["prompt"].startswith("What is")


def test_a_kl_over_budget_raises_the_alarm(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "sums", PROMPT_ROWS, eval_fraction=0)
    config = online_config(
        GRPOJobConfig,
        tiny_model_dir,
        dataset,
        rewards=RuleRewardSettings(max_words=2),
        kl_budget=1e-9,
        beta=0.5,
    )
    run_dir = workspace.runs_dir / "grpo-kl"
    run_stage(config, run_dir, workspace)
    kinds = [json.loads(line)["kind"] for line in (run_dir / "warnings.jsonl").open()]
    assert "kl_budget" in kinds


def test_a_reward_is_required_and_a_reward_file_needs_the_launch_flag(tmp_path, monkeypatch):
    assert any(
        line.startswith("reward_model: choose a reward model")
        for line in config_errors(GRPOJobConfig(model="m", dataset="d"))
    )
    reward_file = tmp_path / "short.py"
    reward_file.write_text(
        "def reward(prompts, completions, **columns):\n    return [-len(str(c)) for c in completions]\n"
    )
    config = RLOOJobConfig(model="m", dataset="d", reward_file=str(reward_file))
    monkeypatch.delenv("RLHF_STUDIO_ALLOW_REWARD_CODE", raising=False)
    assert any("--allow-reward-code" in line for line in config_errors(config))
    monkeypatch.setenv("RLHF_STUDIO_ALLOW_REWARD_CODE", "1")
    assert not [line for line in config_errors(config) if line.startswith("reward")]
    bad = GRPOJobConfig(
        model="m", dataset="d", rewards=RuleRewardSettings(format_regex="(", min_words=5, max_words=2)
    )
    errors = config_errors(bad)
    assert any(line.startswith("rewards.format_regex:") for line in errors)
    assert any(line.startswith("rewards.") and "max_words" in line for line in errors)


def test_the_group_must_divide_the_batch():
    config = GRPOJobConfig(
        model="m", dataset="d", reward_model="r", per_device_train_batch_size=6, num_generations=4
    )
    assert any(line.startswith("per_device_train_batch_size: batch size") for line in config_errors(config))


def test_a_reward_file_trains_when_allowed(tiny_model_dir, workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_STUDIO_ALLOW_REWARD_CODE", "1")
    reward_file = tmp_path / "short.py"
    reward_file.write_text(
        "def reward(prompts, completions, **columns):\n    return [-len(str(c)) for c in completions]\n"
    )
    dataset = add_dataset(workspace, "sums", PROMPT_ROWS, eval_fraction=0)
    config = online_config(RLOOJobConfig, tiny_model_dir, dataset, reward_file=str(reward_file), max_steps=2)
    run_dir = workspace.runs_dir / "rloo-file"
    run_stage(config, run_dir, workspace)
    assert all("rewards/short/mean" in row for row in read_metrics(run_dir) if "reward" in row)


def test_an_answer_column_must_be_in_the_data_and_some_weight_must_count(workspace):
    dataset = add_dataset(workspace, "sums", PROMPT_ROWS, eval_fraction=0)
    wrong = GRPOJobConfig(model="m", dataset=dataset, rewards=RuleRewardSettings(answer_column="solution"))
    assert "rewards.answer_column: sums has no column 'solution' (columns: prompt, answer)" in config_errors(
        wrong, workspace
    )
    idle = GRPOJobConfig(model="m", dataset=dataset, rewards=RuleRewardSettings(max_words=3, length_weight=0))
    assert "rewards: every reward has weight 0: nothing would steer training" in config_errors(idle)
