"""What every reader yields and the size limits they share (tests lower the limits: read them as
`records.CHUNK_BYTES`, not copies)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_studio.data.problems import Problem

CHUNK_BYTES = 1 << 20  # how much a reader takes from the file at once
MAX_RECORD_BYTES = 16 << 20  # the longest record (a line, an array element, a CSV value) held whole


@dataclass(frozen=True)
class Record:
    """One record of a file: the line it starts on (a Parquet row number), and its fields or its problem."""

    line: int
    fields: dict | None = None
    problem: Problem | None = None


def too_long(line: int, what: str, outcome: str) -> Problem:
    return Problem(line, None, "record too long", f"{what} over {MAX_RECORD_BYTES >> 20} MiB; {outcome}")
