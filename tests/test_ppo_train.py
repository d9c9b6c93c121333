"""PPO end to end on the tiny model: learning, what trains, LoRA's single base copy, metrics, alarms, stop,
NaN, checkpoints and resume, PPO-ptx."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from rlhf_studio.config import LoraSettings
from rlhf_studio.data import import_dataset
from rlhf_studio.stages.ppo import PPOJobConfig
from rlhf_studio.training.callbacks import GracefulStop, NonFiniteLossError, TrainingStopped
from rlhf_studio.training.ppo.loop import PPOTrainer, train

METRIC_NAMES = [
    "objective/scores", "objective/kl", "objective/rlhf_reward", "objective/entropy",
    "objective/non_score_reward", "policy/approxkl", "policy/clipfrac", "loss/policy", "loss/value",
    "val/clipfrac", "val/explained_variance", "response/length", "beta", "time/generation",
    "time/scoring", "time/update", "step", "time", "max_steps", "warnings",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model's ops are too small to gain from threads, and lose a lot to a busy CPU's spin waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def low_token_reward(responses):
    """Counts the response tokens with an id below 100: a reward a tiny random policy can learn fast."""
    return ((responses.tokens < 100) & responses.mask).float().sum(dim=1)


@pytest.fixture
def prompts(workspace):
    import_dataset(workspace, "assets/demo/prompts.jsonl", "prompts", eval_fraction=0.0)
    return "prompts"


def tiny_config(model_dir, **overrides) -> PPOJobConfig:
    values = dict(
        model=str(model_dir),
        dataset="prompts",
        max_steps=2,
        learning_rate=3e-3,
        response_length=8,
        temperature=1.0,
        kl_coef=0.01,
        per_device_train_batch_size=4,
        num_mini_batches=2,
        save_steps=100,
        lora=LoraSettings(enabled=False),
    )
    return PPOJobConfig(**{**values, **overrides})


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ppo_raises_a_simple_reward_with_finite_kl(tiny_model_dir, workspace, prompts, tmp_path):
    config = tiny_config(tiny_model_dir, max_steps=20, response_length=12, per_device_train_batch_size=8)
    train(config, tmp_path / "run", workspace, reward_fn=low_token_reward)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    scores = [row["objective/scores"] for row in rows]
    assert sum(scores[-5:]) / 5 > sum(scores[:5]) / 5 + 1.0, scores
    assert all(abs(row["objective/kl"]) < 50 for row in rows)


def test_every_metric_is_logged_and_policy_and_critic_train(
    tiny_model_dir, tiny_reward_dir, workspace, prompts
):
    config = tiny_config(tiny_model_dir, reward_model=str(tiny_reward_dir), sample_steps=1)
    trainer = PPOTrainer(config, workspace.runs_dir / "ppo", workspace, reward_fn=None)
    policy, critic = trainer.models.actor_critic.policy, trainer.models.actor_critic.critic
    reward_model = trainer.models.scorer.model
    before = {name: p.detach().clone() for name, p in trainer.models.actor_critic.named_parameters()}
    frozen_before = {name: p.detach().clone() for name, p in reward_model.named_parameters()}
    rows = [trainer.train_step() for _ in range(2)]
    for name, parameter in trainer.models.actor_critic.named_parameters():
        assert not torch.equal(before[name], parameter), f"{name} did not change"
    for name, parameter in reward_model.named_parameters():
        assert torch.equal(frozen_before[name], parameter), f"reward model weight {name} changed"
    assert critic is not reward_model and policy is not trainer.models.reference
    assert rows[0]["objective/kl"] == pytest.approx(0.0, abs=1e-4)  # policy == reference before any update
    assert set(METRIC_NAMES) - {"step", "time", "max_steps"} <= set(rows[1])


def test_lora_keeps_one_copy_of_each_base(tiny_model_dir, tiny_reward_dir, workspace, prompts):
    """Reference = policy with its adapter disabled; reward model = critic with its adapter disabled."""
    lora = LoraSettings(enabled=True, r=4)
    config = tiny_config(tiny_model_dir, reward_model=str(tiny_reward_dir), lora=lora)
    trainer = PPOTrainer(config, workspace.runs_dir / "ppo", workspace, reward_fn=None)
    models = trainer.models
    assert models.reference is None and models.scorer.model is models.actor_critic.critic
    storages = {}
    for module in (models.actor_critic, models.scorer.model, models.reference_model()):
        for parameter in module.parameters():
            storages[parameter.untyped_storage().data_ptr()] = parameter.untyped_storage().nbytes()
    base_bytes = (tiny_model_dir / "model.safetensors").stat().st_size
    assert sum(storages.values()) < 2.3 * base_bytes  # one policy base + one reward base (+ adapters)
    assert trainer.train_step()["objective/kl"] == pytest.approx(0.0, abs=1e-4)
    assert trainer.train_step()["objective/kl"] != 0.0


def test_metrics_samples_and_final_model(tiny_model_dir, workspace, prompts, tmp_path):
    config = tiny_config(tiny_model_dir, max_steps=3, sample_steps=2, value_model="policy_head")
    summary = train(config, tmp_path / "run", workspace, reward_fn=low_token_reward)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert set(METRIC_NAMES) <= set(row), set(METRIC_NAMES) - set(row)
        assert row["max_steps"] == 3
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert {sample["step"] for sample in samples} == {1, 2}
    assert set(samples[0]) == {"step", "prompt", "response", "score"}
    assert summary["global_step"] == 3 and summary["warnings"] == []
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "model" / "tokenizer.json").is_file()


def test_kl_budget_warns_and_stops_early(tiny_model_dir, workspace, prompts, tmp_path):
    config = tiny_config(
        tiny_model_dir, max_steps=6, learning_rate=3e-2, kl_budget=0.05, stop_at_kl_budget=True
    )
    summary = train(config, tmp_path / "run", workspace, reward_fn=low_token_reward)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert summary["global_step"] < 6 and rows[-1]["warnings"]
    events = read_jsonl(tmp_path / "run" / "warnings.jsonl")
    assert events[0]["kind"] == "kl_budget" and "stopping early" in events[0]["message"]
    assert any("over the budget" in warning for warning in summary["warnings"])
    assert (tmp_path / "run" / "model").is_dir()


def test_adaptive_kl_moves_beta(tiny_model_dir, workspace, prompts, tmp_path):
    config = tiny_config(tiny_model_dir, max_steps=3, target_kl=100.0, kl_horizon=10)
    train(config, tmp_path / "run", workspace, reward_fn=low_token_reward)
    betas = [row["beta"] for row in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert betas[0] == 0.01 and betas[1] < betas[0] and betas[2] < betas[1]  # KL far below target: beta falls


def test_sigterm_stops_after_the_current_step(tiny_model_dir, workspace, prompts, tmp_path):
    calls = []

    def reward_then_sigterm(responses):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step: the step finishes, then training stops
        return low_token_reward(responses)

    stop = GracefulStop()
    with stop.installed(), pytest.raises(TrainingStopped, match="step 2"):
        train(tiny_config(tiny_model_dir, max_steps=5), tmp_path / "run", workspace, stop=stop,
              reward_fn=reward_then_sigterm)  # fmt: skip
    assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == 2
    assert not (tmp_path / "run" / "model").exists()


def test_nan_scores_raise_non_finite_loss_error(tiny_model_dir, workspace, prompts, tmp_path):
    def nan_reward(responses):
        return torch.full((responses.tokens.shape[0],), float("nan"))

    with pytest.raises(NonFiniteLossError, match="NaN|nan"):
        train(tiny_config(tiny_model_dir), tmp_path / "run", workspace, reward_fn=nan_reward)
    assert not (tmp_path / "run" / "model").exists()


def test_resume_from_a_checkpoint_continues_exactly(tiny_model_dir, workspace, prompts, tmp_path):
    config = tiny_config(tiny_model_dir, max_steps=4, save_steps=2, save_total_limit=1)
    train(config, tmp_path / "full", workspace, reward_fn=low_token_reward)
    checkpoints = sorted(path.name for path in (tmp_path / "full" / "checkpoints").iterdir())
    assert checkpoints == [".partial", "checkpoint-2"] or checkpoints == ["checkpoint-2"]
    checkpoint = tmp_path / "full" / "checkpoints" / "checkpoint-2"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 2
    train(config, tmp_path / "resumed", workspace, resume_from=checkpoint, reward_fn=low_token_reward)
    full = read_jsonl(tmp_path / "full" / "metrics.jsonl")[2:]
    resumed = read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    assert [row["step"] for row in resumed] == [3, 4]
    for expected, got in zip(full, resumed, strict=True):
        assert got["objective/scores"] == pytest.approx(expected["objective/scores"])
        assert got["loss/policy"] == pytest.approx(expected["loss/policy"], abs=1e-5)


def test_ppo_ptx_mixes_in_the_sft_loss(tiny_model_dir, workspace, prompts, tmp_path):
    import_dataset(workspace, "assets/demo/sft.jsonl", "sft", eval_fraction=0.0)
    config = tiny_config(tiny_model_dir, max_steps=1, ptx_coef=0.5, ptx_dataset="sft")
    summary = train(config, tmp_path / "run", workspace, reward_fn=low_token_reward)
    assert summary["loss/ptx"] > 0


def test_learning_rate_decays_once_per_optimizer_update(tiny_model_dir, workspace, prompts, tmp_path):
    config = tiny_config(
        tiny_model_dir, per_device_train_batch_size=2, gradient_accumulation_steps=2, num_ppo_epochs=1
    )  # 2 minibatches of 2 micro-batches per step: 2 updates per step, 4 in all
    train(config, tmp_path / "run", workspace, reward_fn=low_token_reward)
    rates = [row["lr"] for row in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert rates == pytest.approx([config.learning_rate * 0.5, 0.0])
