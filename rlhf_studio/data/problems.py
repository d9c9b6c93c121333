"""Problems found in a data file, and the one exception the data engine raises for users.

A `Problem` names where (line, or row for Parquet), what (the field) and why (a short fixed reason plus a
detail). Every dropped row or pair is one problem. `ProblemLog` keeps the first few problems and counts all
of them per reason, so that checking a file of millions of rows stays small in memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

PROBLEMS_KEPT = 200
NAMES_LISTED = 20


@dataclass(frozen=True)
class Problem:
    line: int
    field: str | None
    reason: str
    detail: str = ""

    def describe(self) -> str:
        where = f"line {self.line}" + (f", {self.field}" if self.field else "")
        return f"{where}: {self.reason}" + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "reason": self.reason, "detail": self.detail}


class DataError(Exception):
    """A file or request the data engine refuses; `str(error)` is a one-line message for the user."""

    def __init__(self, message: str, problem: Problem | None = None):
        super().__init__(message)
        self.problem = problem


class RowError(Exception):
    """Raised while normalizing one row; the checker turns it into a `Problem` with the row's line."""

    def __init__(self, field: str | None, reason: str, detail: str = ""):
        super().__init__(f"{field}: {reason} {detail}")
        self.field = field
        self.reason = reason
        self.detail = detail

    def at(self, line: int) -> Problem:
        return Problem(line, self.field, self.reason, self.detail)


def listed(names: list[str], limit: int = NAMES_LISTED) -> str:
    """'a, b, c' for a message; a long list is cut: 'c0, c1, ... (20000 in all)'."""
    shown = [printable(str(name)) for name in names[:limit]]
    return ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def printable(text: str) -> str:
    """Text as is, or its repr when it holds line breaks, control characters or undecodable bytes."""
    return text if text.isprintable() else repr(text)


def file_error(reason: str, detail: str, line: int = 1) -> DataError:
    """A whole-file refusal: the message and the problem say the same thing."""
    where = f" at line {line}" if line > 1 else ""
    return DataError(f"{reason}{where}: {detail}", Problem(line, None, reason, detail))


@dataclass
class ProblemLog:
    kept: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    limit: int | None = PROBLEMS_KEPT

    def add(self, problem: Problem) -> None:
        self.counts[problem.reason] += 1
        if self.limit is None or len(self.kept) < self.limit:
            self.kept.append(problem)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
