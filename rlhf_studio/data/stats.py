"""Running statistics over normalized rows: counts and text lengths in characters per field.

Token lengths need a tokenizer, so the UI computes those itself; these are cheap and streaming.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MEASURED_FIELDS = ("prompt", "chosen", "rejected", "completion", "messages", "text")


def text_length(value: str | list) -> int:
    """Characters of a text, or of all message contents of a conversation."""
    if isinstance(value, str):
        return len(value)
    return sum(len(message["content"]) for message in value)


@dataclass
class FieldLengths:
    count: int = 0
    total: int = 0
    shortest: int | None = None
    longest: int = 0

    def add(self, length: int) -> None:
        self.count += 1
        self.total += length
        self.shortest = length if self.shortest is None else min(self.shortest, length)
        self.longest = max(self.longest, length)

    def to_dict(self) -> dict:
        mean = self.total / self.count if self.count else 0.0
        return {"count": self.count, "min": self.shortest or 0, "mean": round(mean, 1), "max": self.longest}


@dataclass
class DataStats:
    rows: int = 0
    lengths: dict[str, FieldLengths] = field(default_factory=dict)
    labels: Counter = field(default_factory=Counter)

    def add(self, row: dict) -> None:
        self.rows += 1
        for name in MEASURED_FIELDS:
            if name in row:
                self.lengths.setdefault(name, FieldLengths()).add(text_length(row[name]))
        if "label" in row:
            self.labels["desirable" if row["label"] else "undesirable"] += 1

    def to_dict(self) -> dict:
        stats = {
            "rows": self.rows,
            "chars": {name: lengths.to_dict() for name, lengths in self.lengths.items()},
        }
        if self.labels:
            stats["labels"] = dict(self.labels)
        return stats
