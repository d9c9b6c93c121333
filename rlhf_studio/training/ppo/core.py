"""The tensor math of one PPO step for language models, as pure functions (no models, no I/O).

The step, in order (InstructGPT; Ziegler et al. 2019; TRL 0.8's `ppo_trainer.py`):

    response_mask(responses, eos)              which response tokens are real (up to and including EOS)
    per_token_rewards(scores, logprobs, ...)   r_t = -beta * (logp - logp_ref); + score at the last real token
    whiten(...)                                 masked normalisation (advantages; rewards optionally)
    gae(values, rewards, mask, gamma, lam)     advantages and returns
    policy_loss / value_loss                    clipped PPO losses on one minibatch

Shapes: B sequences, T response tokens (the response part only, right-padded after EOS), V vocabulary.
The KL estimate is k1 (log-ratio of the sampled token): unbiased, noisy, can be negative on a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each token. logits (B, T, V), tokens (B, T) -> (B, T)."""
    logprobs = F.log_softmax(logits.float(), dim=-1)
    return torch.gather(logprobs, 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution. logits (B, T, V) -> (B, T)."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (F.softmax(logits, dim=-1) * logits).sum(dim=-1)


def response_mask(responses: torch.Tensor, eos_token_id: int | list[int]) -> torch.Tensor:
    """1 for real tokens: everything up to and including the first EOS (pad may equal EOS).

    responses (B, T) -> bool (B, T). A response with no EOS is real throughout.
    """
    eos_ids = torch.as_tensor(eos_token_id, device=responses.device).reshape(-1)
    is_eos = torch.isin(responses, eos_ids).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos  # EOS tokens strictly before each position
    return eos_before == 0


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row. mask (B, T) bool, real tokens first -> (B,) long."""
    return (mask.long().sum(dim=1) - 1).clamp(min=0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over positions where mask is true. values, mask (B, T) -> scalar, or (B,) with dim=1."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance over the masked positions. values, mask (B, T) -> scalar."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    variance = masked_mean((values - mean) ** 2, mask)
    return variance * count / (count - 1) if count > 1 else variance


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise to unit variance over the masked positions (and zero mean unless shift_mean is False).

    values, mask (B, T) -> (B, T); masked-out positions are set to 0.
    """
    mean, variance = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(variance + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


@dataclass
class Rewards:
    rewards: torch.Tensor  # (B, T) per-token reward: KL penalty everywhere, plus the score at the end
    kl: torch.Tensor  # (B, T) per-token k1 estimate logp - logp_ref, zero after the end
    non_score_reward: torch.Tensor  # (B, T) -beta * kl


def per_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
) -> Rewards:
    """InstructGPT's objective as a per-token reward: r_t = -beta * KL_t, and r_last += score.

    scores (B,), logprobs and ref_logprobs (B, T) of the sampled tokens, mask (B, T) -> Rewards of (B, T).
    """
    kl = (logprobs - ref_logprobs) * mask
    non_score_reward = -beta * kl
    rewards = non_score_reward.clone()
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return Rewards(rewards=rewards, kl=kl, non_score_reward=non_score_reward)


def gae(
    values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation. values, rewards, mask (B, T) -> (advantages, returns) of (B, T).

    The state after the last real token is terminal (value 0); positions after it get advantage 0.
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask
    advantages_reversed = []
    last = torch.zeros_like(values[:, 0])
    length = values.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages_reversed.append(last)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLoss:
    loss: torch.Tensor  # scalar
    clipfrac: torch.Tensor  # share of tokens where the clipped objective was the one used
    approxkl: torch.Tensor  # 0.5 * mean((logp - logp_old)^2), how far this update moved the policy


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> PolicyLoss:
    """PPO's clipped surrogate: mean of max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)).

    logprobs (with grad), old_logprobs, advantages, mask (B, T) -> PolicyLoss of scalars.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    return PolicyLoss(
        loss=masked_mean(torch.max(unclipped, clipped), mask),
        clipfrac=masked_mean((clipped > unclipped).float(), mask).detach(),
        approxkl=(0.5 * masked_mean(log_ratio.detach() ** 2, mask)),
    )


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5 * mean(max((v - R)^2, (v_old + clip(v - v_old, +-eps) - R)^2)).

    values (with grad), old_values, returns, mask (B, T) -> (loss, clipfrac) scalars.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped_error, clipped_error), mask)
    return loss, masked_mean((clipped_error > unclipped_error).float(), mask).detach()


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns) over the masked positions: 1 is a perfect critic.

    values, returns, mask (B, T) -> scalar.
    """
    return 1 - masked_var(returns - values, mask) / masked_var(returns, mask).clamp(min=1e-8)


class KLController:
    """The KL coefficient beta: fixed, or adapted towards a target KL (Ziegler et al. 2019, section 2.2).

    Adaptive: e = clip(KL / target - 1, -0.2, 0.2); beta <- beta * (1 + e * n / horizon), where n is the
    number of samples in the batch that produced KL, so beta changes by at most ~20% per `horizon` samples.
    """

    def __init__(self, beta: float, target: float | None = None, horizon: int = 10000) -> None:
        self.value = beta
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_samples: int) -> None:
        if self.target is None:
            return
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_samples / self.horizon
