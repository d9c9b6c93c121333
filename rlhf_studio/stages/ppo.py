"""PPO, InstructGPT-style RLHF: the studio's own loop (rlhf_studio.training.ppo), on accelerate.

    python -m rlhf_studio train ppo.yaml    # stage: ppo, model: run:<sft run>, reward_model: run:<rm run>
    accelerate launch --config_file configs/accelerate/ddp.yaml -m rlhf_studio train ppo.yaml

TRL 1.16 has no PPO trainer, so this stage trains with its own loop instead of a TRL Trainer. Field names are
TRL 1.12's PPOConfig's. Launched under DDP only: the rollouts sample with the bare policy module, outside the
accelerate wrapper, which sharded weights (FSDP, DeepSpeed ZeRO-3) do not allow.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_studio.config.base import JobConfig, LoraSettings, _field, _override
from rlhf_studio.config.checks import dataset_errors, model_errors
from rlhf_studio.stages.base import (
    BOUNDED,
    DEMONSTRATIONS,
    POLICY,
    UP,
    Check,
    Stage,
    TrainingJob,
    prompts_need,
)

VALUE_MODELS = ("reward_model", "policy_head")


@dataclass(kw_only=True)
class PPOJobConfig(JobConfig):
    """PPO (InstructGPT-style RLHF): sample replies to prompts, score them with a reward model, and move the
    policy towards higher scores with a per-token KL penalty to the starting model."""

    stage: str = _override(JobConfig, "stage", "ppo", init=False)
    dataset: str = _field(
        "",
        "Prompts to sample replies for: a prompt-only dataset, or the prompts of an SFT or preference one.",
    )
    max_steps: int | None = _field(
        16,
        "PPO steps (each: sample a rollout batch, score it, update); empty: num_train_epochs of prompts.",
        label="Max steps",
        basic=True,
    )
    learning_rate: float = _override(JobConfig, "learning_rate", 3e-4)
    per_device_train_batch_size: int = _field(
        8,
        "Rollouts per forward/backward pass; rollout batch = this x accumulation x num_mini_batches.",
        label="Batch size (per device)",
        basic=True,
    )
    logging_steps: int = _override(JobConfig, "logging_steps", 1)
    save_steps: int = _override(JobConfig, "save_steps", 20)
    lora: LoraSettings = _field(
        LoraSettings(enabled=True),
        "LoRA settings; on by default for PPO: the reference is the policy with its adapter disabled and the "
        "reward model the critic with its adapter disabled, so each base model is held once.",
    )
    reward_model: str = _field(
        "",
        "The reward model: run:<id> of a reward-model run, or a local sequence-classification model folder.",
    )
    value_model: str = _field(
        "reward_model",
        "The critic: reward_model (a trainable copy of the reward model, as in InstructGPT) or policy_head "
        "(a linear value head on the policy: less memory and time).",
        label="Critic",
        choices=VALUE_MODELS,
    )
    num_mini_batches: int = _field(2, "Minibatches (optimizer updates) per PPO epoch over the rollout batch.")
    num_ppo_epochs: int = _field(2, "Passes over each rollout batch.")
    response_length: int = _field(
        48,
        "Most new tokens per response; sampling stops earlier at EOS.",
        label="Response length (tokens)",
        basic=True,
    )
    temperature: float = _field(
        0.7, "Sampling temperature (log-probs are taken at the same temperature; 0.7 as in TRL's PPO)."
    )
    top_k: int = _field(0, "Sample among the k most likely tokens only; 0: off.")
    top_p: float = _field(
        1.0, "Nucleus sampling: the smallest set of tokens with this probability; 1.0: off."
    )
    kl_coef: float = _field(
        0.05,
        "beta: weight of the per-token KL penalty to the starting model (initial value).",
        label="KL coefficient β",
        basic=True,
    )
    target_kl: float | None = _field(
        None,
        "Adapt beta so the KL (nats per response) approaches this target; empty: beta stays fixed.",
        label="Target KL (adaptive β)",
    )
    kl_horizon: int = _field(10000, "Adaptive beta: samples over which beta can change by about 20%.")
    cliprange: float = _field(0.2, "PPO clip range of the policy ratio.")
    cliprange_value: float = _field(0.2, "Clip range of the value update.")
    vf_coef: float = _field(0.1, "Weight of the value loss.")
    gamma: float = _field(1.0, "Discount factor.")
    lam: float = _field(0.95, "GAE lambda.")
    whiten_rewards: bool = _field(False, "Normalise the per-token rewards (not only the advantages).")
    missing_eos_penalty: float | None = _field(
        1.0,
        "Subtract this from the score of responses that never emit EOS (cut at response_length), so the "
        "policy cannot gain by rambling; empty: off.",
    )
    ptx_coef: float = _field(
        0.0, "PPO-ptx: weight of the SFT language-modelling loss; 0: off.", label="PPO-ptx coefficient"
    )
    ptx_dataset: str = _field(
        "", "PPO-ptx: the SFT dataset whose loss is mixed in.", label="PPO-ptx SFT dataset"
    )
    kl_budget: float | None = _field(
        20.0,
        "Warn when the KL (nats per response) goes above this; empty: no budget.",
        label="KL budget (nats)",
    )
    stop_at_kl_budget: bool = _field(False, "End the run early (and save) when the KL goes over kl_budget.")
    sample_steps: int = _field(
        5, "Write a few prompts, responses and scores to samples.jsonl every this many steps."
    )
    save_value_model: bool = _field(False, "Also save the trained critic to value_model/ at the end.")
    local_rollout_forward_batch_size: int = _field(
        16, "Sequences per generation / scoring forward pass (memory, not maths)."
    )
    max_grad_norm: float = _field(1.0, "Clip the gradient norm to this; 0: no clipping.")


def checks(config: PPOJobConfig) -> list[Check]:
    def optional(value, ok) -> bool:
        return value is None or ok(value)

    return [
        ("reward_model", bool(config.reward_model.strip()), "choose a reward-model run (or a local one)"),
        ("value_model", config.value_model in VALUE_MODELS, f"must be one of {', '.join(VALUE_MODELS)}"),
        ("num_mini_batches", config.num_mini_batches >= 1, "must be at least 1"),
        ("num_ppo_epochs", config.num_ppo_epochs >= 1, "must be at least 1"),
        ("response_length", config.response_length >= 1, "must be at least 1 token"),
        (
            "response_length",
            config.response_length <= config.max_length - 8,
            f"must leave at least 8 of max_length ({config.max_length}) tokens for the prompt",
        ),
        ("temperature", config.temperature > 0, "must be above 0"),
        ("top_k", config.top_k >= 0, "must be 0 (off) or more"),
        ("top_p", 0 < config.top_p <= 1, "must be above 0 and at most 1"),
        ("kl_coef", config.kl_coef >= 0, "must be 0 or more"),
        ("target_kl", optional(config.target_kl, lambda v: v > 0), "must be above 0 (or empty)"),
        ("kl_horizon", config.kl_horizon >= 1, "must be at least 1"),
        ("cliprange", config.cliprange > 0, "must be above 0"),
        ("cliprange_value", config.cliprange_value > 0, "must be above 0"),
        ("vf_coef", config.vf_coef >= 0, "must be 0 or more"),
        ("gamma", 0 < config.gamma <= 1, "must be above 0 and at most 1"),
        ("lam", 0 <= config.lam <= 1, "must be between 0 and 1"),
        ("missing_eos_penalty", optional(config.missing_eos_penalty, lambda v: v >= 0), "must be 0 or more"),
        ("ptx_coef", config.ptx_coef >= 0, "must be 0 or more"),
        ("ptx_dataset", config.ptx_coef == 0 or bool(config.ptx_dataset.strip()), "choose an SFT dataset"),
        ("kl_budget", optional(config.kl_budget, lambda v: v > 0), "must be above 0 (or empty)"),
        ("stop_at_kl_budget", not config.stop_at_kl_budget or config.kl_budget is not None, "set kl_budget"),
        ("sample_steps", config.sample_steps >= 1, "must be at least 1"),
        ("local_rollout_forward_batch_size", config.local_rollout_forward_batch_size >= 1, "at least 1"),
        ("max_grad_norm", config.max_grad_norm >= 0, "must be 0 (off) or more"),
    ]


def workspace_checks(config: PPOJobConfig, workspace) -> list[str]:
    """The reward model must be a sequence classifier; the PPO-ptx data must be demonstrations."""
    errors = []
    if config.reward_model.strip():
        errors += model_errors("reward_model", config.reward_model, "ppo", workspace, reward_model=True)
    if config.ptx_coef > 0:
        errors += dataset_errors("ptx_dataset", config.ptx_dataset, DEMONSTRATIONS.fit, "sft", workspace)
    return errors


def train(job: TrainingJob) -> dict:
    from rlhf_studio.training.ppo import train as train_ppo

    return train_ppo(job.config, job.run_dir, job.workspace, job.resume_from, job.metrics, job.stop)


STAGE = Stage(
    name="ppo",
    label="PPO",
    when="you have a reward model and want classic RLHF: a critic, a per-token KL penalty and a KL budget.",
    config=PPOJobConfig,
    data=prompts_need("PPO"),
    produces=POLICY,
    charts=(
        "objective/scores",
        "objective/kl",
        "objective/rlhf_reward",
        "objective/entropy",
        "policy/clipfrac",
        "loss/value",
        "beta",
    ),
    learning={"objective/scores": UP, "objective/kl": BOUNDED, "objective/rlhf_reward": UP},
    train=train,
    checks=checks,
    workspace_checks=workspace_checks,
    rlhf=True,
    launch=("ddp",),
)
