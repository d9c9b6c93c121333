"""The arithmetic of evaluation, as pure functions: win rates with intervals, calibration bins.

    summary = win_rate([+1, +1, 0, -1])        # judgements: +1 candidate better, 0 tie, -1 baseline better
    summary.win, summary.win_interval           # 0.5, (0.150, 0.850): Wilson 95% interval of the win share

The interval is Wilson's score interval (not the normal approximation, which leaves [0, 1] and collapses to a
point at 0 or n wins, both common on small evaluation sets). Ties count as half a win in `preference`, the
single number most RLHF papers report; win, tie and loss shares are kept apart as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959964  # two-sided 95% normal quantile


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion successes / n; (0, 1) when there are no trials."""
    if n <= 0:
        return (0.0, 1.0)
    share = successes / n
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class WinRate:
    n: int
    wins: int
    ties: int
    losses: int
    win: float  # share of prompts the candidate won
    tie: float
    loss: float
    win_interval: tuple[float, float]  # Wilson 95% interval of `win`
    preference: float  # (wins + ties / 2) / n
    preference_interval: tuple[float, float]


def win_rate(judgements: list[int]) -> WinRate:
    """Summarise per-prompt judgements: +1 the candidate's reply scored higher, 0 tie, -1 lower."""
    if any(judgement not in (-1, 0, 1) for judgement in judgements):
        raise ValueError("judgements must be +1 (win), 0 (tie) or -1 (loss)")
    n = len(judgements)
    wins, ties = judgements.count(1), judgements.count(0)
    losses = n - wins - ties
    share = (lambda count: count / n) if n else (lambda count: 0.0)
    return WinRate(
        n=n,
        wins=wins,
        ties=ties,
        losses=losses,
        win=share(wins),
        tie=share(ties),
        loss=share(losses),
        win_interval=wilson_interval(wins, n),
        preference=share(wins + ties / 2),
        preference_interval=wilson_interval(wins + ties / 2, n),
    )


def judge(candidate_score: float, baseline_score: float, tie_margin: float = 0.0) -> int:
    """+1 / 0 / -1: a tie when the scores differ by no more than `tie_margin`."""
    difference = candidate_score - baseline_score
    if abs(difference) <= tie_margin:
        return 0
    return 1 if difference > 0 else -1


@dataclass(frozen=True)
class CalibrationBin:
    low: float  # bin edges on the predicted probability that the reward model's pick is the preferred one
    high: float
    count: int
    predicted: float  # mean predicted probability of the pairs in the bin
    observed: float  # share of those pairs where the pick was the labelled preferred reply


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def calibration(differences: list[float], bins: int = 5) -> list[CalibrationBin]:
    """Calibration of a Bradley-Terry reward model from score differences (chosen - rejected) of pairs.

    The model picks the reply it scores higher, with confidence sigmoid(|difference|) in [0.5, 1]; a
    calibrated model's picks are right about as often as that confidence says.
    Equal-width bins over [0.5, 1]; empty bins are left out.
    """
    width = 0.5 / bins
    rows: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for difference in differences:
        confidence = sigmoid(abs(difference))
        index = min(int((confidence - 0.5) / width), bins - 1)
        rows[index].append((confidence, difference > 0))
    result = []
    for index, members in enumerate(rows):
        if members:
            result.append(
                CalibrationBin(
                    low=0.5 + index * width,
                    high=0.5 + (index + 1) * width,
                    count=len(members),
                    predicted=sum(confidence for confidence, _ in members) / len(members),
                    observed=sum(right for _, right in members) / len(members),
                )
            )
    return result


def expected_calibration_error(table: list[CalibrationBin]) -> float:
    """Count-weighted mean |predicted - observed| over the bins."""
    total = sum(row.count for row in table)
    return sum(row.count * abs(row.predicted - row.observed) for row in table) / total if total else 0.0


def correlation(xs: list[float], ys: list[float]) -> float | None:
    """Pearson correlation; None when either side is constant or there are fewer than 3 points."""
    if len(xs) < 3:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    var_x = sum((x - mean_x) ** 2 for x in xs)
    var_y = sum((y - mean_y) ** 2 for y in ys)
    return cov / math.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else None
