"""One PPO step: rollout -> rewards and advantages -> PPO epochs over shuffled minibatches -> metrics.

    rollout = collect_rollout(models, accelerator, prompts, settings, forward_batch_size, ...)
    advantages = compute_advantages(rollout, beta, gamma, lam, whiten_rewards)
    update_stats = ppo_update(accelerator, actor_critic, optimizer, scheduler, rollout, advantages, ...)
    row = step_metrics(rollout, advantages, update_stats, beta)

Old log-probs come from the sampling loop, reference log-probs, values and scores from one batched forward
each; nothing is recomputed per PPO epoch except the forward that the gradient needs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhf_studio.training.callbacks import NonFiniteLossError
from rlhf_studio.training.ppo.core import (
    Rewards,
    explained_variance,
    gae,
    logprobs_from_logits,
    masked_mean,
    per_token_rewards,
    policy_loss,
    value_loss,
    whiten,
)
from rlhf_studio.training.ppo.health import distinct_ratio
from rlhf_studio.training.ppo.models import PPOModels
from rlhf_studio.training.ppo.rollout import (
    SamplingSettings,
    critic_values,
    decode_responses,
    encode_prompts,
    left_pad,
    response_logits,
    sample,
)


@dataclass
class Rollout:
    prompts: list  # B prompts
    texts: list[str]  # B decoded responses
    query_responses: torch.Tensor  # (B, P + T) left-padded query, right-padded response
    attention_mask: torch.Tensor  # (B, P + T)
    context_length: int  # P
    responses: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T) bool, real response tokens (EOS included)
    logprobs: torch.Tensor  # (B, T) policy log-probs at sampling time ("old")
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T) critic values at sampling time ("old")
    entropy: torch.Tensor  # (B, T)
    scores: torch.Tensor  # (B,) reward-model scores, missing-EOS penalty applied
    has_eos: torch.Tensor  # (B,) bool
    timings: dict[str, float]


@dataclass
class Advantages:
    rewards: Rewards
    advantages: torch.Tensor  # (B, T) whitened
    returns: torch.Tensor  # (B, T)


def pad_right(tensors: list[torch.Tensor], value: float) -> torch.Tensor:
    """Concatenate (b_i, T_i, ...) tensors along dim 0, right-padding dim 1 to the longest T_i."""
    length = max(tensor.shape[1] for tensor in tensors)
    padded = []
    for tensor in tensors:
        pad = [0, 0] * (tensor.dim() - 2) + [0, length - tensor.shape[1]]
        padded.append(F.pad(tensor, pad, value=value))
    return torch.cat(padded)


def trim_columns(query_responses, attention_mask, context_length: int):
    """Drop columns that are padding in every row. -> (ids, mask, context length, response length kept)."""
    real = attention_mask.bool().any(dim=0)
    first = int(real[:context_length].long().argmax())
    kept = int(real[context_length:].long().sum())  # responses are real-first, so real columns are a prefix
    end = context_length + kept
    return query_responses[:, first:end], attention_mask[:, first:end], context_length - first, kept


@torch.no_grad()
def collect_rollout(
    models: PPOModels,
    accelerator,
    prompts: list,
    settings: SamplingSettings,
    forward_batch_size: int,
    max_prompt_tokens: int,
    generator: torch.Generator,
    missing_eos_penalty: float | None,
) -> Rollout:
    """Sample a response to each prompt, then score it and take reference log-probs and values."""
    device = accelerator.device
    started = time.perf_counter()
    query_ids, query_mask = left_pad(
        encode_prompts(prompts, models.tokenizer, max_prompt_tokens), settings.pad_token_id, device
    )
    chunks = sample_in_chunks(
        models, accelerator, query_ids, query_mask, settings, forward_batch_size, generator
    )
    responses = pad_right([chunk.responses for chunk in chunks], settings.pad_token_id)
    decoded = decode_responses(models.tokenizer, responses, settings.eos_token_ids)
    decoded.prompts = list(prompts)
    generated = time.perf_counter()
    query_responses = torch.cat([query_ids, responses], dim=1)
    attention_mask = torch.cat([query_mask, decoded.mask.long()], dim=1)
    ref_logprobs, values = reference_and_values(
        models, accelerator, query_responses, attention_mask, query_ids.shape[1], settings, forward_batch_size
    )
    if values is None:  # a value head on the policy: values from the hidden states kept while sampling
        values = models.actor_critic.head_values(pad_right([chunk.hidden for chunk in chunks], 0.0))
    has_eos = torch.isin(responses, torch.tensor(settings.eos_token_ids, device=device)).any(dim=1)
    with accelerator.autocast():
        scores = models.scorer(decoded).to(device).float()
    if missing_eos_penalty is not None:
        scores = scores - missing_eos_penalty * (~has_eos).float()
    return Rollout(
        prompts=decoded.prompts,
        texts=decoded.texts,
        query_responses=query_responses,
        attention_mask=attention_mask,
        context_length=query_ids.shape[1],
        responses=responses,
        mask=decoded.mask,
        logprobs=pad_right([chunk.logprobs for chunk in chunks], 0.0),
        ref_logprobs=ref_logprobs,
        values=values,
        entropy=pad_right([chunk.entropy for chunk in chunks], 0.0),
        scores=scores,
        has_eos=has_eos,
        timings={"time/generation": generated - started, "time/scoring": time.perf_counter() - generated},
    )


def sample_in_chunks(models: PPOModels, accelerator, query_ids, query_mask, settings, batch_size, generator):
    """Sample responses `batch_size` queries at a time. (B, P) queries -> list of Sampled chunks."""
    actor_critic = models.actor_critic.eval()  # eval: the KV cache works with activation checkpointing
    chunks = []
    for start in range(0, query_ids.shape[0], batch_size):
        part = slice(start, start + batch_size)
        with accelerator.autocast():
            chunks.append(
                sample(
                    actor_critic.policy,
                    query_ids[part],
                    query_mask[part],
                    settings,
                    generator,
                    keep_hidden=actor_critic.value_head is not None,
                )
            )
    return chunks


def reference_and_values(
    models: PPOModels,
    accelerator,
    query_responses,
    attention_mask,
    context_length: int,
    settings,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference log-probs and critic values of the responses, one forward each per chunk of `batch_size`.

    query_responses, attention_mask (B, P + T) -> ((B, T), (B, T) or None without a critic model).
    """
    critic = models.actor_critic.critic
    length = query_responses.shape[1] - context_length
    ref_logprobs, values = [], []
    for start in range(0, query_responses.shape[0], batch_size):
        part = slice(start, start + batch_size)
        ids, mask, context, kept = trim_columns(query_responses[part], attention_mask[part], context_length)
        with accelerator.autocast(), models.reference_context():
            logits, _ = response_logits(models.reference_model(), ids, mask, context)
            logprobs = logprobs_from_logits(logits / settings.temperature, ids[:, context:])
        ref_logprobs.append(F.pad(logprobs, (0, length - kept)))
        if critic is not None:
            with accelerator.autocast():
                values.append(F.pad(critic_values(critic, ids, mask, context), (0, length - kept)))
    return torch.cat(ref_logprobs), torch.cat(values) if critic is not None else None


def compute_advantages(
    rollout: Rollout, beta: float, gamma: float, lam: float, whiten_rewards: bool
) -> Advantages:
    """Per-token rewards (score at the last real token, KL penalty everywhere), GAE, whitened advantages."""
    rewards = per_token_rewards(rollout.scores, rollout.logprobs, rollout.ref_logprobs, rollout.mask, beta)
    token_rewards = (
        whiten(rewards.rewards, rollout.mask, shift_mean=False) if whiten_rewards else rewards.rewards
    )
    advantages, returns = gae(rollout.values, token_rewards, rollout.mask, gamma, lam)
    return Advantages(rewards, whiten(advantages, rollout.mask), returns)


def ppo_update(
    accelerator,
    actor_critic,
    optimizer,
    scheduler,
    rollout: Rollout,
    advantages: Advantages,
    settings,
    generator: torch.Generator,
    ptx_batches: Iterator[dict] | None,
) -> dict[str, float]:
    """`settings.num_ppo_epochs` passes over the rollout in shuffled minibatches of micro-batches.

    settings: the PPO job config (per_device_train_batch_size, gradient_accumulation_steps, cliprange,
    cliprange_value, vf_coef, ptx_coef, max_grad_norm, temperature, num_ppo_epochs).
    """
    actor_critic.train()
    size = rollout.responses.shape[0]
    micro = settings.per_device_train_batch_size
    stats: dict[str, list[float]] = {}
    for _ in range(settings.num_ppo_epochs):
        order = torch.randperm(size, generator=generator).to(rollout.responses.device)
        for start in range(0, size, micro):
            rows = order[start : start + micro]
            with accelerator.accumulate(actor_critic):
                losses = minibatch_losses(actor_critic, rollout, advantages, rows, settings, ptx_batches)
                accelerator.backward(losses.pop("total"))
                if accelerator.sync_gradients and settings.max_grad_norm:
                    accelerator.clip_grad_norm_(actor_critic.parameters(), settings.max_grad_norm)
                optimizer.step()  # skipped by accelerate until the last micro-batch of a minibatch
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            for name, value in losses.items():
                stats.setdefault(name, []).append(float(value))
    return {name: sum(values) / len(values) for name, values in stats.items()}


def minibatch_losses(actor_critic, rollout: Rollout, advantages: Advantages, rows, settings, ptx_batches):
    """Clipped policy and value losses (+ PPO-ptx) of the rollout rows `rows`; "total" has the gradient."""
    ids, mask, context, kept = trim_columns(
        rollout.query_responses[rows], rollout.attention_mask[rows], rollout.context_length
    )
    token_mask = rollout.mask[rows, :kept]
    ptx = next(ptx_batches) if ptx_batches is not None else None
    logits, values, ptx_loss = actor_critic(ids, mask, context, ptx)
    logprobs = logprobs_from_logits(logits / settings.temperature, ids[:, context:])
    policy = policy_loss(
        logprobs,
        rollout.logprobs[rows, :kept],
        advantages.advantages[rows, :kept],
        token_mask,
        settings.cliprange,
    )
    value, value_clipfrac = value_loss(
        values,
        rollout.values[rows, :kept],
        advantages.returns[rows, :kept],
        token_mask,
        settings.cliprange_value,
    )
    total = policy.loss + settings.vf_coef * value
    losses = {"loss/policy": policy.loss.detach(), "loss/value": value.detach()}
    if ptx_loss is not None:
        total = total + settings.ptx_coef * ptx_loss
        losses["loss/ptx"] = ptx_loss.detach()
    for name, loss in losses.items():
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{name} is {float(loss)}: training stopped; lower the learning rate")
    return {
        "total": total,
        **losses,
        "policy/approxkl": policy.approxkl,
        "policy/clipfrac": policy.clipfrac,
        "val/clipfrac": value_clipfrac,
    }


def step_metrics(rollout: Rollout, advantages: Advantages, update: dict[str, float], beta: float) -> dict:
    """The step's row: objective/*, policy/*, loss/*, val/*, response/*, beta and time/* (batch means)."""
    mask = rollout.mask
    kl = advantages.rewards.kl.sum(dim=1).mean()
    non_score = advantages.rewards.non_score_reward.sum(dim=1).mean()
    scores = rollout.scores.mean()
    metrics = {
        "objective/scores": scores,
        "objective/kl": kl,
        "objective/non_score_reward": non_score,
        "objective/rlhf_reward": scores + non_score,
        "objective/entropy": (rollout.entropy * mask).sum(dim=1).mean(),
        "val/explained_variance": explained_variance(rollout.values, advantages.returns, mask),
        "val/mean": masked_mean(rollout.values, mask),
        "response/length": mask.sum(dim=1).float().mean(),
        "response/eos_rate": rollout.has_eos.float().mean(),
    }
    row = {name: float(value) for name, value in metrics.items()}
    row["response/distinct_ratio"] = distinct_ratio(rollout.texts)
    return {**row, **update, "beta": beta, **rollout.timings}
