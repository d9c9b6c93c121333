"""Did RLHF help? A candidate policy against a baseline on held-out prompts, judged by a reward model.

    result = evaluate_win_rate(cache, "run:…-ppo-ed2e", "base", "run:…-rm-9c2c", "demo-eval-prompts")
    result.win_rate["win"], result.win_rate["win_interval"], result.mean_kl, result.candidate_length

For every prompt, candidate and baseline each sample one reply from the same seed (batch b uses seed + b, so
a run is reproducible and both sides draw from the same random stream); the judge scores both and the prompt
is a win, tie or loss (`stats.judge`). Beside the win rate: the mean KL of the candidate to its reference (the
model its run started from) on the candidate's own replies, summed over reply tokens under the same tempered
distribution PPO's `objective/kl` uses, and the mean reply length of both sides with how the judgement
splits by length, because a judge that rewards length makes "longer" look like "better".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from rlhf_studio.chat.cache import LoadedModel, ModelCache
from rlhf_studio.data import extract_prompts, read_manifest
from rlhf_studio.evaluation.reward_eval import load_judge, score_pairs
from rlhf_studio.evaluation.settings import WinRateSettings
from rlhf_studio.evaluation.specs import (
    BASE,
    WIN_RATE,
    EvaluationError,
    as_spec,
    root_model,
    split_rows,
    started_from,
)
from rlhf_studio.evaluation.stats import correlation, judge, win_rate
from rlhf_studio.models import ModelError, Progress
from rlhf_studio.training.ppo.core import logprobs_from_logits
from rlhf_studio.training.ppo.loop import eos_token_ids
from rlhf_studio.training.ppo.rollout import (
    SamplingSettings,
    decode_responses,
    encode_prompts,
    left_pad,
    response_logits,
    sample,
)
from rlhf_studio.workspace import Workspace

SAMPLES_KEPT = 200  # per-prompt rows stored with the result (the report shows a few)


@dataclass
class Generated:
    texts: list[str]
    lengths: list[int]  # reply tokens, EOS not counted
    truncated: list[bool]  # no EOS within max_new_tokens
    kl: list[float] | None = None  # per reply: sum over tokens of log p_candidate - log p_reference


@dataclass
class WinRateEval:
    candidate: str
    baseline: str
    judge: str
    reference: str | None
    prompts: str
    settings: dict
    win_rate: dict  # stats.WinRate as a dict
    mean_score_candidate: float
    mean_score_baseline: float
    mean_kl: float | None  # None when candidate and reference tokenize differently
    candidate_length: float  # mean reply tokens
    baseline_length: float
    truncated_candidate: float  # share of replies cut at max_new_tokens
    truncated_baseline: float
    longer_share: float  # share of prompts where the candidate's reply is longer
    win_when_not_longer: float | None  # win share among prompts where the candidate's reply is not longer
    length_score_correlation: float | None  # Pearson(length difference, score difference)
    samples: list[dict] = field(default_factory=list)
    kind: str = WIN_RATE

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- what to compare


def eval_prompts(workspace: Workspace, dataset: str, split: str) -> list:
    """Distinct prompts of a stored dataset of any kind but plain text."""
    read_manifest(workspace, dataset)  # DataError with a sentence when it does not exist
    rows = split_rows(workspace, dataset, split)
    prompts = [row["prompt"] for row in extract_prompts(rows)]
    if not prompts:
        raise EvaluationError(f"{dataset} ({split}) has no prompts to evaluate on.")
    return prompts


# ---------------------------------------------------------------- sampling and KL


def generate(
    model: LoadedModel,
    prompts: list,
    settings: WinRateSettings,
    reference: LoadedModel | None = None,
    progress: Progress | None = None,
) -> Generated:
    """One sampled reply per prompt; with `reference`, also each reply's KL to it."""
    tokenizer = model.tokenizer
    sampling = SamplingSettings(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_k=0,
        top_p=settings.top_p,
        eos_token_ids=eos_token_ids(tokenizer, model.entry.module),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    result = Generated(texts=[], lengths=[], truncated=[], kl=[] if reference is not None else None)
    for batch, start in enumerate(range(0, len(prompts), settings.batch_size)):
        chunk = prompts[start : start + settings.batch_size]
        ids, mask = left_pad(
            encode_prompts(chunk, tokenizer, settings.max_prompt_tokens), sampling.pad_token_id, model.device
        )
        generator = torch.Generator(model.device).manual_seed(settings.seed + batch)
        with model.active() as module:
            sampled = sample(module, ids, mask, sampling, generator)
        decoded = decode_responses(tokenizer, sampled.responses, sampling.eos_token_ids)
        ended = torch.isin(sampled.responses, torch.tensor(sampling.eos_token_ids, device=ids.device)).any(1)
        result.texts += decoded.texts
        result.lengths += (decoded.mask.sum(1) - ended.long()).tolist()
        result.truncated += (~ended).tolist()
        if reference is not None:
            result.kl += reply_kl(reference, ids, mask, sampled, decoded.mask, settings.temperature)
        if progress:
            progress(min(start + settings.batch_size, len(prompts)) / len(prompts), "")
    return result


@torch.no_grad()
def reply_kl(reference: LoadedModel, ids, mask, sampled, reply_mask, temperature: float) -> list[float]:
    """Sum over each reply's tokens of log p_candidate - log p_reference (both of softmax(logits / T))."""
    query_responses = torch.cat([ids, sampled.responses], dim=1)
    attention = torch.cat([mask, reply_mask.long()], dim=1)
    with reference.active() as module:
        logits, _ = response_logits(module, query_responses, attention, ids.shape[1])
    reference_logprobs = logprobs_from_logits(logits.float() / temperature, sampled.responses)
    per_token = (sampled.logprobs - reference_logprobs) * reply_mask
    return per_token.sum(1).tolist()


def same_vocabulary(a: LoadedModel, b: LoadedModel) -> bool:
    return a.tokenizer is b.tokenizer or a.tokenizer.get_vocab() == b.tokenizer.get_vocab()


# ---------------------------------------------------------------- the evaluation


def evaluate_win_rate(
    cache: ModelCache,
    candidate: str,
    baseline: str,
    judge_model: str,
    prompts: str,
    settings: WinRateSettings | None = None,
    progress: Progress | None = None,
) -> WinRateEval:
    settings = settings or WinRateSettings()
    report = progress or (lambda fraction, text: None)
    if problems := settings.problems():
        raise EvaluationError("; ".join(problems))
    workspace = cache.workspace
    candidate, baseline, judge_model = (as_spec(workspace, n) for n in (candidate, baseline, judge_model))
    reference = started_from(workspace, candidate)
    if baseline == BASE:
        baseline = root_model(workspace, candidate)
    if baseline == candidate:
        raise EvaluationError("The candidate and the baseline are the same model: pick another baseline.")
    questions = eval_prompts(workspace, prompts, settings.split)[: settings.limit]

    def stage(start: float, end: float, text: str) -> Progress:
        return lambda fraction, _: report(start + (end - start) * fraction, text)

    try:
        report(0.02, f"Loading {candidate}")
        policy = cache.load(candidate)
        anchor = cache.load(reference) if reference else None
        if anchor is not None and not same_vocabulary(policy, anchor):
            anchor = None
        candidate_replies = generate(
            policy, questions, settings, anchor, stage(0.05, 0.45, f"{candidate}: {len(questions)} replies")
        )
        report(0.45, f"Loading {baseline}")
        baseline_replies = generate(
            cache.load(baseline), questions, settings, None, stage(0.5, 0.85, f"{baseline}: replies")
        )
        report(0.85, f"Judging with {judge_model}")
        scorer = load_judge(cache, judge_model)
    except ModelError as error:
        raise EvaluationError(str(error)) from error
    candidate_scores = score_pairs(scorer, list(zip(questions, candidate_replies.texts, strict=True)))
    baseline_scores = score_pairs(scorer, list(zip(questions, baseline_replies.texts, strict=True)))
    report(1.0, "Done")
    return summarise(
        names=(candidate, baseline, judge_model, reference, prompts),
        settings=settings,
        questions=questions,
        replies=(candidate_replies, baseline_replies),
        scores=(candidate_scores, baseline_scores),
    )


def summarise(names, settings, questions, replies, scores) -> WinRateEval:
    candidate, baseline, judge_model, reference, prompts = names
    ours, theirs = replies
    our_scores, their_scores = scores
    n = len(questions)
    judgements = [judge(a, b, settings.tie_margin) for a, b in zip(our_scores, their_scores, strict=True)]
    not_longer = [j for j, a, b in zip(judgements, ours.lengths, theirs.lengths, strict=True) if a <= b]
    samples = [
        {
            "prompt": questions[i],
            "candidate": ours.texts[i],
            "baseline": theirs.texts[i],
            "candidate_score": our_scores[i],
            "baseline_score": their_scores[i],
            "judgement": judgements[i],
            "candidate_tokens": ours.lengths[i],
            "baseline_tokens": theirs.lengths[i],
            "kl": ours.kl[i] if ours.kl is not None else None,
        }
        for i in range(min(n, SAMPLES_KEPT))
    ]
    return WinRateEval(
        candidate=candidate,
        baseline=baseline,
        judge=judge_model,
        reference=reference if ours.kl is not None else None,
        prompts=prompts,
        settings=asdict(settings),
        win_rate=asdict(win_rate(judgements)),
        mean_score_candidate=sum(our_scores) / n,
        mean_score_baseline=sum(their_scores) / n,
        mean_kl=sum(ours.kl) / n if ours.kl is not None else None,
        candidate_length=sum(ours.lengths) / n,
        baseline_length=sum(theirs.lengths) / n,
        truncated_candidate=sum(ours.truncated) / n,
        truncated_baseline=sum(theirs.truncated) / n,
        longer_share=sum(a > b for a, b in zip(ours.lengths, theirs.lengths, strict=True)) / n,
        win_when_not_longer=not_longer.count(1) / len(not_longer) if not_longer else None,
        length_score_correlation=correlation(
            [a - b for a, b in zip(ours.lengths, theirs.lengths, strict=True)],
            [a - b for a, b in zip(our_scores, their_scores, strict=True)],
        ),
        samples=samples,
    )
