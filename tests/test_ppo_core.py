"""The PPO tensor math on hand-made tensors: masks, KL penalty and score placement, whitening, GAE, losses,
the adaptive KL controller and the health alarms."""

import math

import pytest
import torch

from rlhf_studio.training.ppo.core import (
    KLController,
    entropy_from_logits,
    explained_variance,
    gae,
    last_token_index,
    logprobs_from_logits,
    masked_mean,
    per_token_rewards,
    policy_loss,
    response_mask,
    value_loss,
    whiten,
)
from rlhf_studio.training.ppo.health import HACKING_WINDOW, HealthMonitor, distinct_ratio

EOS, PAD = 2, 0


def test_response_mask_keeps_eos_and_drops_padding_even_when_pad_is_eos():
    responses = torch.tensor([[5, 6, EOS, PAD, PAD], [5, EOS, EOS, EOS, EOS], [5, 6, 7, 8, 9]])
    mask = response_mask(responses, EOS)
    assert mask.tolist() == [
        [True, True, True, False, False],
        [True, True, False, False, False],  # pad == EOS: only the first EOS is real
        [True, True, True, True, True],  # no EOS: real throughout
    ]
    assert last_token_index(mask).tolist() == [2, 1, 4]
    assert response_mask(torch.tensor([[5, 9, 1]]), [9, 1]).tolist() == [[True, True, False]]


def test_logprobs_and_entropy_from_logits():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e9, -1e9]]])
    logprobs = logprobs_from_logits(logits, torch.tensor([[1, 0]]))
    assert torch.allclose(logprobs, torch.tensor([[math.log(0.25), math.log(0.75)]]))
    entropy = entropy_from_logits(logits)
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert torch.allclose(entropy, torch.tensor([[math.log(4.0), expected]]), atol=1e-6)


def test_kl_penalty_everywhere_and_score_at_last_real_token_only():
    mask = response_mask(torch.tensor([[5, 6, EOS, PAD], [5, 6, 7, 8]]), EOS)
    logprobs = torch.tensor([[-1.0, -2.0, -0.5, -9.0], [-1.0, -1.0, -1.0, -1.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5, -1.0], [-1.0, -2.0, -1.0, -3.0]])
    result = per_token_rewards(torch.tensor([10.0, 20.0]), logprobs, ref_logprobs, mask, beta=0.1)
    assert torch.allclose(result.kl, torch.tensor([[0.5, -1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 2.0]]))
    assert torch.allclose(result.non_score_reward, -0.1 * result.kl)
    expected = torch.tensor([[-0.05, 0.1, 10.0, 0.0], [0.0, -0.1, 0.0, 20.0 - 0.2]])
    assert torch.allclose(result.rewards, expected)  # nothing lands on the padding after EOS


def test_whiten_uses_masked_positions_only():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, -100.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]]).bool()
    whitened = whiten(values, mask)
    real = whitened[mask]
    assert abs(float(real.mean())) < 1e-6
    assert abs(float(real.std()) - 1.0) < 1e-5
    assert whitened[:, 3].tolist() == [0.0, 0.0]
    kept_mean = whiten(values, mask, shift_mean=False)[mask]
    assert abs(float(kept_mean.mean()) - 3.5) < 1e-5
    assert float(masked_mean(values, mask)) == pytest.approx(3.5)


def naive_gae(values, rewards, length, gamma, lam):
    """Textbook GAE over one trajectory of `length` steps, terminal value 0."""
    advantages = [0.0] * len(values)
    running = 0.0
    for t in reversed(range(length)):
        next_value = values[t + 1] if t + 1 < length else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    returns = [advantages[t] + values[t] if t < length else 0.0 for t in range(len(values))]
    return advantages, returns


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0)])
def test_gae_matches_a_naive_loop_with_padding(gamma, lam):
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(3, 6, generator=generator)
    rewards = torch.randn(3, 6, generator=generator)
    lengths = [6, 4, 1]
    mask = torch.tensor([[t < length for t in range(6)] for length in lengths])
    advantages, returns = gae(values, rewards, mask, gamma, lam)
    for row, length in enumerate(lengths):
        expected_advantages, expected_returns = naive_gae(
            values[row].tolist(), rewards[row].tolist(), length, gamma, lam
        )
        assert advantages[row].tolist() == pytest.approx(expected_advantages, abs=1e-5)
        assert returns[row].tolist() == pytest.approx(expected_returns, abs=1e-5)


def test_policy_loss_clips_on_hand_made_numbers():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1, 3.0]]))  # ratios 1.5, 0.5, 1.1, 3.0 (last is padding)
    advantages = torch.tensor([[1.0, -1.0, 2.0, 5.0]])
    mask = torch.tensor([[True, True, True, False]])
    result = policy_loss(new, old, advantages, mask, cliprange=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(0.5, 0.8) = 0.8 (clipped); token 3: -2.2
    assert float(result.loss) == pytest.approx((-1.2 + 0.8 - 2.2) / 3, abs=1e-6)
    assert float(result.clipfrac) == pytest.approx(2 / 3)
    expected_kl = 0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 3
    assert float(result.approxkl) == pytest.approx(expected_kl, abs=1e-6)


def test_policy_loss_gradient_is_zero_where_clipped():
    new = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_(True)
    result = policy_loss(new, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2).bool(), cliprange=0.2)
    result.loss.backward()
    assert new.grad[0, 0] == 0.0 and new.grad[0, 1] != 0.0


def test_value_loss_clips_on_hand_made_numbers():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1, 9.0]])
    returns = torch.tensor([[2.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    loss, clipfrac = value_loss(new, old, returns, mask, cliprange_value=0.2)
    # token 1: max((1-2)^2, (0.2-2)^2) = 3.24 (clipped used); token 2: max(0.81, 0.81) = 0.81
    assert float(loss) == pytest.approx(0.5 * (3.24 + 0.81) / 2, abs=1e-6)
    assert float(clipfrac) == pytest.approx(0.5)


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4).bool()
    assert float(explained_variance(returns, returns, mask)) == pytest.approx(1.0)
    assert float(explained_variance(torch.full((1, 4), 2.5), returns, mask)) == pytest.approx(0.0, abs=1e-6)


def test_kl_controller_fixed_and_adaptive():
    fixed = KLController(0.1)
    fixed.update(100.0, 64)
    assert fixed.value == 0.1
    adaptive = KLController(0.1, target=6.0, horizon=10000)
    adaptive.update(12.0, 1000)  # KL twice the target: error clipped to +0.2
    assert adaptive.value == pytest.approx(0.1 * (1 + 0.2 * 1000 / 10000))
    adaptive.update(3.0, 1000)  # half the target: error clipped to -0.2
    assert adaptive.value == pytest.approx(0.1 * 1.02 * 0.98)
    adaptive.update(6.6, 10000)  # 10% above: beta grows 10% over one horizon
    assert adaptive.value == pytest.approx(0.1 * 1.02 * 0.98 * 1.1)


def step_row(score: float, kl: float, distinct: float = 1.0) -> dict:
    return {"objective/scores": score, "objective/kl": kl, "response/distinct_ratio": distinct}


def test_health_alarms(tmp_path):
    monitor = HealthMonitor(kl_budget=10.0)
    assert monitor.check(step_row(0.0, 0.0)) == {}
    assert set(monitor.check(step_row(0.0, -1.0))) == {"negative_kl"}
    assert set(monitor.check(step_row(0.0, 11.0))) == {"kl_budget"}
    assert set(monitor.check(step_row(0.0, 1.0, distinct=0.25))) == {"collapse"}
    hacking = HealthMonitor(kl_budget=10.0)
    for step in range(HACKING_WINDOW):
        warnings = hacking.check(step_row(0.1 * step, 0.5 + step))  # KL 0.5 -> 9.5 while the score rises
    assert set(warnings) == {"reward_hacking"}
    assert distinct_ratio(["a", "b", "a", "a"]) == 0.5


def test_health_records_a_warning_when_it_starts(tmp_path):
    monitor = HealthMonitor(kl_budget=1.0)
    path = tmp_path / "warnings.jsonl"
    for step, kl in enumerate([2.0, 3.0, 0.5, 2.0], start=1):
        monitor.record(step, monitor.check(step_row(0.0, kl)), path)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and '"step": 1' in lines[0] and '"step": 4' in lines[1]
    assert "kl_budget" in monitor.seen
