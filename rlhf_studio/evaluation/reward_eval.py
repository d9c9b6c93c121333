"""Reward-model evaluation: accuracy, mean margin and calibration on labelled preference pairs.

    result = evaluate_reward_model(cache, "run:20261201-153639-rm-9c2c", "demo-preference", split="eval")
    result.accuracy, result.mean_margin, result.calibration

Each pair is scored the way the reward model was trained to read it (`RewardModelScorer`: the reward model's
own tokenizer and chat template). A pair counts as right when the chosen reply scores strictly higher; the
margin is score(chosen) - score(rejected), as TRL's RewardTrainer reports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from rlhf_studio.chat.cache import ModelCache
from rlhf_studio.chat.reward import load_reward_scorer
from rlhf_studio.data import read_manifest
from rlhf_studio.evaluation.specs import RM_ACCURACY, EvaluationError, as_spec, split_rows
from rlhf_studio.evaluation.stats import (
    CalibrationBin,
    calibration,
    expected_calibration_error,
    wilson_interval,
)
from rlhf_studio.models import ModelError, Progress
from rlhf_studio.training.ppo.rollout import Responses, RewardModelScorer

SCORE_BATCH_SIZE = 16
EXAMPLES_KEPT = 5  # the worst-judged pairs kept in the result, to read


@dataclass
class RewardModelEval:
    reward_model: str
    dataset: str
    split: str
    pairs: int
    accuracy: float
    accuracy_interval: tuple[float, float]  # Wilson 95%
    mean_margin: float
    mean_chosen: float
    mean_rejected: float
    calibration: list[CalibrationBin]
    calibration_error: float  # expected calibration error over the bins
    hardest: list[dict] = field(default_factory=list)  # the pairs with the lowest margins
    kind: str = RM_ACCURACY

    def to_dict(self) -> dict:
        return asdict(self)


def preference_pairs(cache: ModelCache, dataset: str, split: str) -> list[dict]:
    """The prompt/chosen/rejected rows of a stored preference dataset's split ("all": both)."""
    manifest = read_manifest(cache.workspace, dataset)
    if manifest.kind != "preference":
        raise EvaluationError(
            f"{dataset} holds {manifest.kind} rows; a reward model is evaluated on preference pairs "
            "(prompt, chosen, rejected)."
        )
    rows = split_rows(cache.workspace, dataset, split)
    if not rows:
        hint = " (it was imported without a held-out split; use --split all)" if split == "eval" else ""
        raise EvaluationError(f"{dataset} has no {split} rows{hint}.")
    return rows


def as_prompt_and_reply(prompt, completion) -> tuple[str | list[dict], str]:
    """A scorer's (prompt, reply): a completion given as messages keeps all but its last turn as prompt."""
    if isinstance(completion, str):
        return prompt, completion
    if not completion:
        return prompt, ""
    history = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return history + list(completion[:-1]), completion[-1]["content"]


def load_judge(cache: ModelCache, spec: str, progress: Progress | None = None) -> RewardModelScorer:
    """A scorer for reward model `spec`, loaded through the shared cache, in batches of SCORE_BATCH_SIZE."""
    return load_reward_scorer(cache, spec, progress, batch_size=SCORE_BATCH_SIZE)


def score_pairs(scorer: RewardModelScorer, pairs: list[tuple]) -> list[float]:
    """Scores of (prompt, reply) pairs."""
    prompts, replies = zip(*pairs, strict=True) if pairs else ((), ())
    empty = torch.empty(0)
    responses = Responses(prompts=list(prompts), texts=list(replies), tokens=empty, mask=empty)
    return [float(score) for score in scorer(responses)]


def evaluate_reward_model(
    cache: ModelCache,
    reward_model: str,
    dataset: str,
    split: str = "eval",
    limit: int | None = None,
    progress: Progress | None = None,
) -> RewardModelEval:
    report = progress or (lambda fraction, text: None)
    reward_model = as_spec(cache.workspace, reward_model)
    rows = preference_pairs(cache, dataset, split)[:limit]
    try:
        scorer = load_judge(cache, reward_model, progress)
    except ModelError as error:
        raise EvaluationError(str(error)) from error
    report(0.3, f"Scoring {len(rows)} pairs")
    chosen = score_pairs(scorer, [as_prompt_and_reply(row["prompt"], row["chosen"]) for row in rows])
    report(0.65, "Scoring the rejected replies")
    rejected = score_pairs(scorer, [as_prompt_and_reply(row["prompt"], row["rejected"]) for row in rows])
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    right = sum(margin > 0 for margin in margins)
    table = calibration(margins)
    order = sorted(range(len(rows)), key=lambda index: margins[index])[:EXAMPLES_KEPT]
    report(1.0, "Done")
    return RewardModelEval(
        reward_model=reward_model,
        dataset=dataset,
        split=split,
        pairs=len(rows),
        accuracy=right / len(rows),
        accuracy_interval=wilson_interval(right, len(rows)),
        mean_margin=sum(margins) / len(rows),
        mean_chosen=sum(chosen) / len(rows),
        mean_rejected=sum(rejected) / len(rows),
        calibration=table,
        calibration_error=expected_calibration_error(table),
        hardest=[{**rows[index], "margin": margins[index]} for index in order],
    )
