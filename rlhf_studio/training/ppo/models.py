"""The models of a PPO run: policy + critic (trained together), frozen reference, and the scorer.

    policy      the starting model (base or run:<id>, adapter runs merged), fully trained or with LoRA
    reference   the starting policy, frozen: a copy for full fine-tuning; with LoRA the same weights with the
                adapter disabled, so there is one copy of the base in memory
    critic      value_model="reward_model": a trainable copy of the reward model whose score head reads
                every token (InstructGPT); with LoRA it gets its own adapter and the reward model is that
                critic with the adapter disabled, again one copy. value_model="policy_head": a linear head
                on the policy's last hidden state.
    scorer      the reward model (RewardModelScorer), or any `Responses -> (B,) scores` callable (tests)

ActorCritic wraps policy and critic in one module, so `accelerator.prepare` gives one DDP wrapper whose single
forward computes everything a PPO minibatch needs (and the PPO-ptx language-modelling loss).
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rlhf_studio.models import ModelError, load_tokenizer, resolve_model
from rlhf_studio.training.common import (
    CAUSAL,
    REWARD,
    load_model_chain,
    load_starting_point,
    lora_config,
    model_load_kwargs,
)
from rlhf_studio.training.ppo.rollout import RewardFn, RewardModelScorer, critic_values, response_logits
from rlhf_studio.workspace import Workspace


class ActorCritic(nn.Module):
    """Policy plus critic: a sequence-classification model (per-token head) or a value head on the policy."""

    def __init__(self, policy: nn.Module, critic: nn.Module | None) -> None:
        super().__init__()
        self.policy = policy
        self.critic = critic
        self.value_head = None
        if critic is None:
            hidden_size = policy.config.get_text_config().hidden_size
            self.value_head = nn.Linear(hidden_size, 1).to(policy.device)
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    def forward(
        self,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        context_length: int,
        ptx: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(B, P + T) -> (response logits (B, T, V), values (B, T), LM loss on the `ptx` batch or None)."""
        logits, outputs = response_logits(
            self.policy,
            query_responses,
            attention_mask,
            context_length,
            output_hidden_states=self.value_head is not None,
        )
        if self.value_head is not None:
            hidden = outputs.hidden_states[-1][:, context_length - 1 : -1]
            values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
        else:
            values = critic_values(self.critic, query_responses, attention_mask, context_length)
        ptx_loss = self.policy(**ptx, use_cache=False).loss if ptx is not None else None
        return logits, values, ptx_loss

    def head_values(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values from the policy's last hidden states. (B, T, H) -> (B, T)."""
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()


@dataclass
class PPOModels:
    actor_critic: ActorCritic
    reference: nn.Module | None  # None: the policy with its LoRA adapter disabled
    scorer: RewardFn
    tokenizer: object
    start_source: str

    def reference_context(self):
        """Context in which `reference_model()` is the frozen starting policy."""
        return self.actor_critic.policy.disable_adapter() if self.reference is None else nullcontext()

    def reference_model(self) -> nn.Module:
        return self.actor_critic.policy if self.reference is None else self.reference


def disable_dropout(model: nn.Module) -> None:
    """PPO compares log-probs of the same tokens across passes: dropout would make them differ."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def load_ppo_models(
    config, workspace: Workspace, reward_fn: RewardFn | None = None, device: torch.device | str = "cpu"
) -> PPOModels:
    """Load policy, reference, critic and scorer for `config` (a PPOJobConfig) onto `device`.

    `reward_fn` replaces the reward model (tests, custom rewards); the critic is then a value head.
    """
    from peft import get_peft_model

    start = load_starting_point(config, workspace, CAUSAL)
    policy_lora = lora_config(config, start.model, "CAUSAL_LM")
    reference = None if policy_lora else copy.deepcopy(start.model).eval().requires_grad_(False)
    policy = get_peft_model(start.model, policy_lora) if policy_lora else start.model
    critic, scorer = None, reward_fn
    if reward_fn is None:
        trains_copy = config.value_model == "reward_model" and not config.lora.enabled
        reward_model, reward_tokenizer = load_reward_model(config, workspace, trainable=trains_copy)
        scoring_model, frozen = reward_model, nullcontext
        if config.value_model == "reward_model":
            check_same_vocabulary(start.tokenizer, reward_tokenizer)
            critic_lora = lora_config(config, reward_model, "SEQ_CLS")
            if critic_lora:  # the reward model is the critic with its adapter disabled: one copy
                critic = scoring_model = get_peft_model(reward_model, critic_lora)
                frozen = critic.disable_adapter
            else:
                critic = copy.deepcopy(reward_model)
        if scoring_model is reward_model:
            reward_model.eval().requires_grad_(False)
        reward_model.to(device)
        scorer = RewardModelScorer(
            scoring_model,
            reward_tokenizer,
            batch_size=config.local_rollout_forward_batch_size,
            max_length=config.max_length,
            frozen=frozen,
        )
    if config.gradient_checkpointing:  # recompute activations in the backward pass: less memory, slower
        for model in (policy, critic):
            if model is not None:
                model.activation_checkpointing_enable({"use_reentrant": False})
    actor_critic = ActorCritic(policy.to(device), critic.to(device) if critic is not None else None)
    disable_dropout(actor_critic)
    if reference is not None:
        reference.to(device)
    return PPOModels(actor_critic, reference, scorer, start.tokenizer, start.source)


def load_reward_model(config, workspace: Workspace, trainable: bool):
    """(model, tokenizer) of `config.reward_model`: a reward-model run (full or adapter) or a local folder;
    `trainable`: a critic copy will be trained from it, so it loads in fp32."""
    from rlhf_studio.config import is_reward_model

    source = resolve_model(config.reward_model, workspace)
    if not is_reward_model(Path(source)):
        raise ModelError(
            f"{config.reward_model} is not a reward model (a sequence classifier): pick a reward-model run."
        )
    kwargs = model_load_kwargs(config)
    if trainable:
        kwargs = {**kwargs, "dtype": torch.float32}  # the critic copy is trained: fp32 master weights
    model = load_model_chain(source, REWARD, kwargs, workspace)
    tokenizer = load_tokenizer(config.reward_model, workspace)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
    return model, tokenizer


def check_same_vocabulary(policy_tokenizer, reward_tokenizer) -> None:
    """A critic reads the policy's tokens, so it must share the policy's vocabulary."""
    if policy_tokenizer.get_vocab() != reward_tokenizer.get_vocab():
        raise ModelError(
            "The reward model uses another tokenizer than the policy, so it cannot serve as the critic: "
            "set value_model to policy_head."
        )
