"""Arena statistics: per pair of models, wins, ties and losses from the votes log.

    rows = arena_stats(ArenaStore(workspace).votes())
    rows[0]   # PairStats(model_a="run:...-dpo-...", model_b="SmolLM2...", wins=7, ties=2, losses=3, ...)

Each vote counts once for every pair of panes it compares: a best pick of three panes is a win over each of
the other two (and says nothing about those two), a ranking of three is three results, a tie or both-bad vote
is a tie for every pair (both-bad is also counted apart). A pane that showed the same model as another pane
is no comparison and is left out. Counts are from `model_a`'s side. The win rate leaves ties out, as
FastChat's arena does: wins / (wins + losses), None before the first decisive vote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rlhf_studio.chat.votes import BOTH_BAD, Vote, decisive_pairs, tied_pairs


@dataclass
class PairStats:
    model_a: str
    model_b: str
    wins: int = 0  # model_a preferred
    ties: int = 0  # tie and both-bad votes
    losses: int = 0  # model_b preferred
    both_bad: int = 0  # of the ties, those voted both bad

    @property
    def games(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float | None:
        decisive = self.wins + self.losses
        return self.wins / decisive if decisive else None


def arena_stats(votes: Iterable[dict]) -> list[PairStats]:
    """One row per pair of models that met, most games first (then by name)."""
    pairs: dict[tuple[str, str], PairStats] = {}

    def row(first: str, second: str) -> tuple[PairStats, bool]:
        key = tuple(sorted((first, second)))
        return pairs.setdefault(key, PairStats(*key)), first == key[0]

    for record in votes:
        models = record["models"]
        vote = Vote(record["kind"], tuple(record.get("order", ())))
        for winner, loser in decisive_pairs(vote, len(models)):
            if models[winner] != models[loser]:
                stats, winner_is_a = row(models[winner], models[loser])
                stats.wins += winner_is_a
                stats.losses += not winner_is_a
        for first, second in tied_pairs(vote, len(models)):
            if models[first] != models[second]:
                stats, _ = row(models[first], models[second])
                stats.ties += 1
                stats.both_bad += vote.kind == BOTH_BAD
    return sorted(pairs.values(), key=lambda stats: (-stats.games, stats.model_a, stats.model_b))
