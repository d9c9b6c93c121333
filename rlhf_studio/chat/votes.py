"""Votes on one arena round and the preference pairs they stand for (pure functions, no files).

Panes are named by letter, A, B (and C), in the order they are shown. The vote kinds:

    Vote.best("A")             A better than B (two panes); with three panes: A is the best of the three
    Vote.ranking("B", "A", "C") three panes ranked best first
    Vote.tie()                 all equally good: no pair
    Vote.both_bad()            all equally bad: no pair

`decisive_pairs` lists (winner, loser) pane indices: a best pick beats every other pane (the others stay
unordered), a ranking of three expands into its three pairs. `tied_pairs` lists the pairs a tie or both-bad
vote compares, for the arena statistics; they never become training data. `vote_record` is one line of the
votes log, and `preference_rows` turns it into TRL preference rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

PANE_LETTERS = "ABC"
BEST, RANKING, TIE, BOTH_BAD = "best", "ranking", "tie", "both_bad"
VOTE_KINDS = (BEST, RANKING, TIE, BOTH_BAD)


class VoteError(ValueError):
    """A vote or a thumb was refused; the message is one sentence for the user."""


@dataclass(frozen=True)
class Vote:
    kind: str
    order: tuple[str, ...] = ()  # pane letters: the best one (best), or all of them best first (ranking)

    @classmethod
    def best(cls, letter: str) -> Vote:
        return cls(BEST, (letter,))

    @classmethod
    def ranking(cls, *letters: str) -> Vote:
        return cls(RANKING, tuple(letters))

    @classmethod
    def tie(cls) -> Vote:
        return cls(TIE)

    @classmethod
    def both_bad(cls) -> Vote:
        return cls(BOTH_BAD)


def pane_index(letter: str, panes: int) -> int:
    """The index of pane `letter` among `panes` panes; VoteError when there is no such pane."""
    letters = PANE_LETTERS[:panes]
    if letter not in letters:
        raise VoteError(f"There is no pane {letter!r} here; panes: {', '.join(letters)}.")
    return letters.index(letter)


def check_vote(vote: Vote, panes: int) -> list[int]:
    """The pane indices of `vote.order`; VoteError when the vote does not fit `panes` panes."""
    letters = PANE_LETTERS[:panes]
    if vote.kind not in VOTE_KINDS:
        raise VoteError(f"Unknown vote {vote.kind!r}; votes: {', '.join(VOTE_KINDS)}.")
    order = [pane_index(letter, panes) for letter in vote.order]
    if vote.kind == BEST and len(vote.order) != 1:
        raise VoteError("Pick exactly one best pane.")
    if vote.kind == RANKING and sorted(vote.order) != sorted(letters):
        raise VoteError(f"A ranking orders every pane once: {', '.join(letters)}.")
    if vote.kind in (TIE, BOTH_BAD) and vote.order:
        raise VoteError("A tie or both-bad vote names no pane.")
    return order


def decisive_pairs(vote: Vote, panes: int) -> list[tuple[int, int]]:
    """(winner, loser) pane indices the vote decides."""
    order = check_vote(vote, panes)
    if vote.kind == BEST:
        return [(order[0], other) for other in range(panes) if other != order[0]]
    if vote.kind == RANKING:
        return list(combinations(order, 2))  # combinations keep the order: better one first
    return []


def tied_pairs(vote: Vote, panes: int) -> list[tuple[int, int]]:
    """Pairs of pane indices a tie or both-bad vote compares."""
    check_vote(vote, panes)
    return list(combinations(range(panes), 2)) if vote.kind in (TIE, BOTH_BAD) else []


def vote_record(
    vote: Vote,
    models: list[str],
    prompts: list[list[dict]],
    replies: list[str],
    *,
    vote_id: str,
    time: str,
    dataset: str,
    blind: bool,
    settings: dict,
) -> dict:
    """One line of the votes log: everything needed to rebuild the pairs and the statistics later.

    Lists are per pane, in pane order (A, B, C); `prompts[i]` is what pane i answered (system prompt and
    earlier turns included), `replies[i]` its answer.
    """
    check_vote(vote, len(models))
    return {
        "id": vote_id,
        "time": time,
        "kind": vote.kind,
        "order": list(vote.order),
        "models": list(models),
        "blind": blind,
        "dataset": dataset,
        "settings": settings,
        "prompts": prompts,
        "replies": replies,
    }


def preference_rows(record: dict) -> list[dict]:
    """TRL conversational explicit-prompt rows, one per decided pair, with the vote as metadata.

    Every pane answered its own conversation (earlier replies differ between panes), so a pair's prompt is
    the conversation the chosen reply answered.
    """
    vote = Vote(record["kind"], tuple(record["order"]))
    rows = []
    for winner, loser in decisive_pairs(vote, len(record["models"])):
        rows.append(
            {
                "prompt": record["prompts"][winner],
                "chosen": [{"role": "assistant", "content": record["replies"][winner]}],
                "rejected": [{"role": "assistant", "content": record["replies"][loser]}],
                "metadata": {
                    "vote_id": record["id"],
                    "time": record["time"],
                    "vote": record["kind"],
                    "chosen_model": record["models"][winner],
                    "rejected_model": record["models"][loser],
                    "blind": record["blind"],
                    "settings": record["settings"],
                },
            }
        )
    return rows
