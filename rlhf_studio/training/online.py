"""The child-process side of the online stages (GRPO, RLOO): their data, rewards, samples and alarms.

    trainer, source = build_online_trainer(GRPOTrainer, GRPOConfig, extra, config, run_dir, ...)

- Data: the prompts of the dataset (prompt-only rows keep their other columns, e.g. `answer`, which TRL
  passes to every reward function by name), as conversations when the tokenizer has a chat template.
- Rewards: the reward model (PPO's scorer: each (prompt, completion) rebuilt with the reward model's own
  tokenizer and template, as it was trained), the rule rewards (rlhf_studio.rewards) and the reward file,
  each a function named after the reward, with the weights TRL sums them by.
- samples.jsonl: a few prompts, completions and rewards every `sample_steps` steps, for the Monitor's table.
- warnings.jsonl: PPO's health alarms (KL budget, reward rising while KL explodes, collapse of distinct
  completions) on TRL's metrics; NaN/Inf stops the run as in every stage.

The samples and the distinct share are read from GRPOTrainer's completion buffer (`_logs`, kept for its own
completion tables), which RLOOTrainer shares; TRL is pinned, and a test fails if the buffer moves.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

from rlhf_studio.data import DataError, extract_prompts, load_split, read_manifest
from rlhf_studio.rewards import completion_text, load_reward_file, rule_rewards
from rlhf_studio.stages.online import OnlineJobConfig
from rlhf_studio.training.common import (
    CAUSAL,
    as_conversations,
    load_starting_point,
    process_state,
    trainer_inputs,
    training_arguments,
)
from rlhf_studio.training.ppo.data import prompt_text
from rlhf_studio.training.ppo.health import HealthMonitor, distinct_ratio
from rlhf_studio.workspace import Workspace

SAMPLES_FILE, WARNINGS_FILE = "samples.jsonl", "warnings.jsonl"
SAMPLES_PER_LOG = 4


def build_online_trainer(
    trainer_class,
    args_class,
    extra: dict,
    config: OnlineJobConfig,
    run_dir: Path,
    workspace: Workspace,
    callbacks: list,
):
    """(trainer, resolved starting model) for GRPO or RLOO: the stage gives its TRL classes and own args."""
    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = prompt_splits(config, workspace, start.tokenizer)
    functions, weights, scorer = reward_functions(config, workspace)
    shared = training_arguments(config, run_dir, has_eval=evaluation is not None)
    shared.pop("max_length")  # prompts are not truncated here; max_length bounds the reward model's input
    args = args_class(
        **shared,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        reward_weights=weights,
        **extra,
    )
    samples = CompletionSamples(run_dir / SAMPLES_FILE, config.sample_steps)
    health = OnlineHealth(run_dir / WARNINGS_FILE, config.kl_budget)
    inputs = trainer_inputs(config, start, train, evaluation, [*callbacks, samples, health], "CAUSAL_LM")
    trainer = trainer_class(reward_funcs=functions, args=args, **inputs)
    samples.trainer = health.trainer = trainer
    if scorer is not None:
        scorer.model.to(trainer.accelerator.device)
    return trainer, start.source


# ---------------------------------------------------------------- data


def prompt_splits(config: OnlineJobConfig, workspace: Workspace, tokenizer):
    """(train, eval or None) datasets of prompt rows."""
    from datasets import Dataset

    kind = read_manifest(workspace, config.dataset).kind
    with process_state().main_process_first():
        splits = [prompt_rows(load_split(workspace, config.dataset, "train"), kind)]
        splits.append(
            prompt_rows(load_split(workspace, config.dataset, "eval"), kind) if config.use_eval_split else []
        )
    if not splits[0]:
        raise DataError(f"dataset {config.dataset!r} has no prompts (plain text rows have none)")
    train, evaluation = (Dataset.from_list(rows) if rows else None for rows in splits)
    if tokenizer.chat_template:
        train = as_conversations(train)
        evaluation = as_conversations(evaluation) if evaluation is not None else None
    return train, evaluation


def prompt_rows(rows, kind: str) -> list[dict]:
    """Prompt-only rows as they are (their other columns feed answer rewards); other kinds' prompts."""
    if kind == "prompt":
        return [row for row in rows if row.get("prompt")]
    return list(extract_prompts(rows))


# ---------------------------------------------------------------- rewards


def reward_functions(config: OnlineJobConfig, workspace: Workspace):
    """(functions, weights, the reward-model scorer or None): every configured reward, named for the logs."""
    functions, weights, scorer = [], [], None
    if config.reward_model.strip():
        scorer = reward_model_scorer(config, workspace)
        functions.append(model_reward(scorer))
        weights.append(config.reward_model_weight)
    for _, function, weight in rule_rewards(config.rewards):
        functions.append(function)
        weights.append(weight)
    if config.reward_file.strip():
        functions.append(load_reward_file(config.reward_file))
        weights.append(config.reward_file_weight)
    return functions, weights, scorer


def reward_model_scorer(config: OnlineJobConfig, workspace: Workspace):
    from rlhf_studio.training.ppo.models import load_reward_model
    from rlhf_studio.training.ppo.rollout import RewardModelScorer

    model, tokenizer = load_reward_model(config, workspace, trainable=False)
    model.eval().requires_grad_(False)
    return RewardModelScorer(
        model, tokenizer, batch_size=config.per_device_train_batch_size, max_length=config.max_length
    )


def model_reward(scorer):
    """The reward model's score of each (prompt, completion), as TRL calls a reward function."""

    def reward_model(prompts: list, completions: list, **_) -> list[float]:
        return scorer.score(prompts, [completion_text(completion) for completion in completions]).tolist()

    return reward_model


# ---------------------------------------------------------------- callbacks


class CompletionSamples(TrainerCallback):
    """A few (prompt, completion, rewards) rows of the latest generation batch at the first step and every
    `every` steps (training logs only: an evaluation's log has no `reward`)."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every, self.trainer = path, every, None

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        due = state.global_step % self.every == 0 or state.global_step == 1  # as PPO: from the first step
        if not state.is_world_process_zero or not due or "reward" not in (logs or {}) or not self.trainer:
            return
        buffer = self.trainer._logs
        prompts, completions = list(buffer["prompt"]), list(buffer["completion"])
        rewards = {name: list(values) for name, values in buffer["rewards"].items()}
        with open(self.path, "a", encoding="utf-8") as handle:
            for index in range(min(SAMPLES_PER_LOG, len(prompts))):
                row = {"step": state.global_step, "prompt": prompt_text(prompts[index])}
                row["response"] = completion_text(completions[index])
                row.update(
                    {
                        name: round(values[index], 4)
                        for name, values in rewards.items()
                        if values[index] is not None
                    }
                )
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


class OnlineHealth(TrainerCallback):
    """PPO's health alarms on GRPO/RLOO metrics: reward as the score, kl as the KL (0 without a reference)."""

    def __init__(self, path: Path, kl_budget: float | None) -> None:
        self.path, self.monitor, self.trainer = path, HealthMonitor(kl_budget), None

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        logs = logs or {}
        if "reward" not in logs or not self.trainer:
            return
        texts = [completion_text(completion) for completion in self.trainer._logs["completion"]]
        metrics = {
            "objective/scores": logs["reward"],
            "objective/kl": logs.get("kl", 0.0),
            "response/distinct_ratio": distinct_ratio(texts),
        }
        warnings = self.monitor.check(metrics)
        self.monitor.record(state.global_step, warnings, self.path if state.is_world_process_zero else None)
