"""One config class per training stage, with the defaults that suit the bundled model on a laptop CPU."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_studio.config.base import JobConfig, LoraSettings, _field, _override

DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)  # fmt: skip
VALUE_MODELS = ("reward_model", "policy_head")


@dataclass(kw_only=True)
class SFTJobConfig(JobConfig):
    """Supervised fine-tuning (TRL SFTTrainer) on prompt/completion, messages or text rows."""

    stage: str = _override(JobConfig, "stage", "sft", init=False)
    num_train_epochs: float = _override(JobConfig, "num_train_epochs", 2.0)
    learning_rate: float = _override(JobConfig, "learning_rate", 2e-4)
    completion_only_loss: bool | None = _field(
        None,
        "Loss on the completion only (true) or on the whole sequence (false); empty: TRL decides "
        "(completion only for prompt/completion rows).",
    )


@dataclass(kw_only=True)
class RewardJobConfig(JobConfig):
    """Reward model (TRL RewardTrainer): one-output classifier, loss -log sigmoid(r_chosen - r_rejected)."""

    stage: str = _override(JobConfig, "stage", "rm", init=False)
    center_rewards_coefficient: float | None = _field(
        None, "Weight of a penalty that keeps rewards centred on zero (0.01 is typical); empty: off."
    )


@dataclass(kw_only=True)
class DPOJobConfig(JobConfig):
    """Direct preference optimization (TRL DPOTrainer); the reference is the starting model."""

    stage: str = _override(JobConfig, "stage", "dpo", init=False)
    max_steps: int | None = _override(JobConfig, "max_steps", 40)
    learning_rate: float = _override(JobConfig, "learning_rate", 5e-5)
    per_device_train_batch_size: int = _override(JobConfig, "per_device_train_batch_size", 4)
    eval_steps: int = _override(JobConfig, "eval_steps", 20)
    beta: float = _field(0.1, "How far the model may move from the reference: higher beta, smaller moves.")
    loss_type: str = _field("sigmoid", "DPO loss variant (TRL loss_type): sigmoid is the original DPO loss.")


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
    )
    learning_rate: float = _override(JobConfig, "learning_rate", 3e-4)
    per_device_train_batch_size: int = _field(
        8, "Rollouts per forward/backward pass; rollout batch = this x accumulation x num_mini_batches."
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
    )
    num_mini_batches: int = _field(2, "Minibatches (optimizer updates) per PPO epoch over the rollout batch.")
    num_ppo_epochs: int = _field(2, "Passes over each rollout batch.")
    response_length: int = _field(48, "Most new tokens per response; sampling stops earlier at EOS.")
    temperature: float = _field(
        0.7, "Sampling temperature (log-probs are taken at the same temperature; 0.7 as in TRL's PPO)."
    )
    top_k: int = _field(0, "Sample among the k most likely tokens only; 0: off.")
    top_p: float = _field(
        1.0, "Nucleus sampling: the smallest set of tokens with this probability; 1.0: off."
    )
    kl_coef: float = _field(
        0.05, "beta: weight of the per-token KL penalty to the starting model (initial value)."
    )
    target_kl: float | None = _field(
        None, "Adapt beta so the KL (nats per response) approaches this target; empty: beta stays fixed."
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
    ptx_coef: float = _field(0.0, "PPO-ptx: weight of the SFT language-modelling loss; 0: off.")
    ptx_dataset: str = _field("", "PPO-ptx: the SFT dataset whose loss is mixed in.")
    kl_budget: float | None = _field(
        20.0, "Warn when the KL (nats per response) goes above this; empty: no budget."
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


STAGE_CONFIGS: dict[str, type[JobConfig]] = {
    "sft": SFTJobConfig,
    "rm": RewardJobConfig,
    "dpo": DPOJobConfig,
    "ppo": PPOJobConfig,
}
