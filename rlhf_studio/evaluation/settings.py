"""How a win-rate evaluation samples and judges: plain data, so the CLI reads it without loading torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WinRateSettings:
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8
    tie_margin: float = 0.0  # score differences this small are ties
    limit: int | None = None  # first N prompts only
    max_prompt_tokens: int = 256
    split: str = "all"  # which split of the prompt dataset: eval, train or all

    def problems(self) -> list[str]:
        problems = []
        if self.max_new_tokens < 1:
            problems.append("max_new_tokens: must be at least 1")
        if self.temperature <= 0:
            problems.append("temperature: must be above 0 (sampling)")
        if not 0 < self.top_p <= 1:
            problems.append("top_p: must be in (0, 1]")
        if self.batch_size < 1:
            problems.append("batch_size: must be at least 1")
        if self.tie_margin < 0:
            problems.append("tie_margin: must be 0 or more")
        if self.limit is not None and self.limit < 1:
            problems.append("limit: must be at least 1")
        if self.split not in ("eval", "train", "all"):
            problems.append("split: choose eval, train or all")
        return problems
