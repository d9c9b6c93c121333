"""What GRPO and RLOO share: online RL from a prompt dataset, with rewards combined by weight.

Several completions are sampled per prompt and scored; each completion's advantage is its reward against the
others of its group (GRPO: standardised by the group; RLOO: minus the mean of the other completions), with a
KL penalty beta to the starting model (0 allowed: then no reference is kept). The rewards, summed with their
weights (TRL logs each as rewards/<name>/mean):

    reward_model   a reward-model run or a local sequence-classifier folder, read as it was trained
    format         a regular expression the completion must match
    words          words the completion must contain / must avoid
    length         a target band of words
    answer         the completion's answer against a column of the dataset (exact, or numeric)
    file           reward(prompts, completions, **columns) from a Python file: only when the operator
                   launched the studio with --allow-reward-code (it runs that file)

The training side (reward functions, samples table, health alarms) is rlhf_studio/training/online.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import JobConfig, LoraSettings, _field, _override
from rlhf_studio.config.checks import model_errors
from rlhf_studio.rewards import (
    RuleRewardSettings,
    configured_rewards,
    reward_code_allowed,
    rule_reward_errors,
)
from rlhf_studio.stages.base import BOUNDED, POLICY, UP, Check, Stage, prompts_need

ONLINE_CHARTS = (
    "reward",
    "kl",
    "reward_std",
    "completions/mean_length",
    "entropy",
    "completions/clipped_ratio",
    "clip_ratio/region_mean",
)
ONLINE_LEARNING = {"reward": UP, "kl": BOUNDED}


@dataclass(kw_only=True)
class OnlineJobConfig(JobConfig):
    """Fields of GRPO and RLOO (each stage's class sets its name and defaults)."""

    dataset: str = _field(
        "",
        "Prompts to sample completions for: a prompt-only dataset (with an answer column for answer "
        "rewards), or the prompts of an SFT or preference one.",
    )
    max_steps: int | None = _override(JobConfig, "max_steps", 30)
    learning_rate: float = _override(JobConfig, "learning_rate", 2e-4)
    logging_steps: int = _override(JobConfig, "logging_steps", 1)
    lora: LoraSettings = _field(
        LoraSettings(enabled=True),
        "LoRA settings; on by default: the reference is the policy with its adapter disabled (one copy).",
    )
    num_generations: int = _field(
        4,
        "Completions sampled per prompt (the group); the batch size must be a multiple of it.",
        label="Completions per prompt",
        basic=True,
    )
    max_completion_length: int = _field(
        48, "Most new tokens per completion.", label="Completion length (tokens)", basic=True
    )
    temperature: float = _field(0.9, "Sampling temperature: the group needs varied completions.")
    beta: float = _field(
        0.05,
        "Weight of the KL penalty to the starting model; 0: none (no reference is kept).",
        label="KL coefficient β",
        basic=True,
    )
    reward_model: str = _field(
        "",
        "A reward model to score completions: run:<id> of a reward-model run or a local sequence-classifier "
        "folder; empty: rule rewards only.",
    )
    reward_model_weight: float = _field(1.0, "Weight of the reward model's score in the total reward.")
    rewards: RuleRewardSettings = _field(
        RuleRewardSettings(), "Rule rewards set in the form (format, words, length, answer), no code."
    )
    reward_file: str = _field(
        "",
        "A Python file defining reward(prompts, completions, **columns) -> list of floats; runs only when "
        "the studio was launched with --allow-reward-code.",
    )
    reward_file_weight: float = _field(1.0, "Weight of the reward file's score.")
    kl_budget: float | None = _field(
        20.0,
        "Warn when the KL (nats per completion) goes above this; empty: no budget.",
        label="KL budget (nats)",
    )
    sample_steps: int = _field(5, "Write a few prompts, completions and rewards every this many steps.")


def online_stage(name: str, label: str, when: str, config: type, build_trainer, checks) -> Stage:
    """The record of an online stage: prompts in, a policy out, the shared charts, metrics and checks."""
    return Stage(
        name=name,
        label=label,
        when=when,
        config=config,
        data=prompts_need(label),
        produces=POLICY,
        charts=ONLINE_CHARTS,
        learning=ONLINE_LEARNING,
        build_trainer=build_trainer,
        checks=checks,
        workspace_checks=online_workspace_checks,
        rlhf=True,
    )


def online_checks(config: OnlineJobConfig) -> list[Check]:
    rules = configured_rewards(config.rewards)
    rewarded = bool(config.reward_model.strip() or config.reward_file.strip() or rules)
    batch = config.per_device_train_batch_size * config.gradient_accumulation_steps
    checks = [
        (
            "reward_model",
            rewarded,
            "choose a reward model or set at least one rule reward (or a reward file)",
        ),
        (
            "rewards",
            not rewarded or total_weight(config, rules) > 0,
            "every reward has weight 0: nothing would steer training",
        ),
        ("num_generations", config.num_generations >= 2, "must be at least 2 (a group to compare)"),
        (
            "per_device_train_batch_size",
            batch % config.num_generations == 0,
            f"batch size x accumulation ({batch}) must be a multiple of num_generations",
        ),
        ("max_completion_length", config.max_completion_length >= 1, "must be at least 1 token"),
        ("temperature", config.temperature > 0, "must be above 0"),
        ("beta", config.beta >= 0, "must be 0 or more"),
        ("kl_budget", config.kl_budget is None or config.kl_budget > 0, "must be above 0 (or empty)"),
        ("sample_steps", config.sample_steps >= 1, "must be at least 1"),
    ]
    if config.reward_file.strip():
        checks += [
            ("reward_file", Path(config.reward_file).is_file(), f"there is no file {config.reward_file}"),
            (
                "reward_file",
                reward_code_allowed(),
                "a reward file runs its Python code: restart the studio with --allow-reward-code "
                "if you trust it",
            ),
        ]
    problems = [tuple(line.split(": ", 1)) for line in rule_reward_errors(config.rewards)]
    return checks + [(f"rewards.{name}", False, reason) for name, reason in problems]


def total_weight(config: OnlineJobConfig, rules: dict[str, float]) -> float:
    model = config.reward_model_weight if config.reward_model.strip() else 0.0
    file = config.reward_file_weight if config.reward_file.strip() else 0.0
    return model + file + sum(weight for weight in rules.values() if isinstance(weight, int | float))


def online_workspace_checks(config: OnlineJobConfig, workspace) -> list[str]:
    """A reward model, when given, must be a sequence classifier; an answer column must be in the data."""
    errors = []
    if config.reward_model.strip():
        errors += model_errors(
            "reward_model", config.reward_model, config.stage, workspace, reward_model=True
        )
    column = config.rewards.answer_column.strip()
    if column and config.dataset.strip():
        from rlhf_studio.data import DataError, first_row

        try:
            first = first_row(workspace, config.dataset, "train")
        except (DataError, OSError):
            return errors  # the dataset check reports it
        if column not in first:
            found = ", ".join(first) or "none"
            errors.append(
                f"rewards.answer_column: {config.dataset} has no column {column!r} (columns: {found})"
            )
    return errors
