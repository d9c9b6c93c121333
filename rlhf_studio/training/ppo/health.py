"""Health alarms of a PPO run: the signs that RLHF is going wrong, read from each step's metrics.

    negative_kl      objective/kl below -NEGATIVE_KL_NATS: the samples do not come from the policy the KL
                     is measured for (sampling settings, a generation bug); the KL penalty is meaningless then
    kl_budget        objective/kl above the run's kl_budget: the policy has moved far from its start
    reward_hacking   the score rose over the last HACKING_WINDOW steps while the KL grew
                     HACKING_KL_GROWTH-fold past half the budget: the policy likely exploits the reward model
    collapse         the share of distinct responses in a batch fell below half of its first value

A warning is recorded on every step it holds (the row's "warnings" list) and appended to warnings.jsonl when
it starts to hold, so the file reads as a list of events. NaN/Inf is not a warning: it stops the run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

NEGATIVE_KL_NATS = 0.2
HACKING_WINDOW = 10
HACKING_KL_GROWTH = 3.0
COLLAPSE_FRACTION = 0.5


def distinct_ratio(texts: list[str]) -> float:
    """Share of distinct texts in a batch: 1.0 when every response differs."""
    return len(set(texts)) / max(len(texts), 1)


@dataclass
class HealthMonitor:
    kl_budget: float | None
    history: list[tuple[float, float]] = field(default_factory=list)  # (score, kl) per step, last window
    first_distinct: float | None = None
    active: list[str] = field(default_factory=list)  # kinds that held at the previous step
    seen: dict[str, str] = field(default_factory=dict)  # kind -> latest message, for the run's summary

    def check(self, metrics: dict[str, float]) -> dict[str, str]:
        """The warnings that hold at this step, as {kind: message}."""
        score, kl = metrics["objective/scores"], metrics["objective/kl"]
        distinct = metrics["response/distinct_ratio"]
        if self.first_distinct is None:
            self.first_distinct = distinct
        self.history = (self.history + [(score, kl)])[-HACKING_WINDOW:]
        warnings = {}
        if kl < -NEGATIVE_KL_NATS:
            warnings["negative_kl"] = (
                f"KL is negative ({kl:.2f} nats): the responses are not sampled from the policy as the KL "
                "assumes; check temperature / top-k / top-p"
            )
        if self.kl_budget is not None and kl > self.kl_budget:
            warnings["kl_budget"] = f"KL {kl:.2f} nats is over the budget of {self.kl_budget:g}"
        hacking = self._reward_hacking()
        if hacking:
            warnings["reward_hacking"] = hacking
        if distinct < COLLAPSE_FRACTION * self.first_distinct:
            warnings["collapse"] = (
                f"responses collapsed: only {distinct:.0%} of a batch differ "
                f"(first step: {self.first_distinct:.0%})"
            )
        return warnings

    def _reward_hacking(self) -> str | None:
        if len(self.history) < HACKING_WINDOW or self.kl_budget is None:
            return None
        (first_score, first_kl), (score, kl) = self.history[0], self.history[-1]
        kl_exploded = kl > self.kl_budget / 2 and kl > HACKING_KL_GROWTH * max(first_kl, 0.1)
        if score > first_score and kl_exploded:
            return (
                f"possible reward hacking: the score rose {first_score:.2f} -> {score:.2f} while KL grew "
                f"{first_kl:.2f} -> {kl:.2f} nats in {HACKING_WINDOW} steps; read the samples"
            )
        return None

    def record(self, step: int, warnings: dict[str, str], path: Path | None) -> None:
        """Remember the warnings of this step and append the ones that just started to `path`."""
        started = [kind for kind in warnings if kind not in self.active]
        self.active = list(warnings)
        self.seen.update(warnings)
        if path is None or not started:
            return
        with open(path, "a", encoding="utf-8") as handle:
            for kind in started:
                row = {"step": step, "time": round(time.time(), 3), "kind": kind, "message": warnings[kind]}
                handle.write(json.dumps(row) + "\n")

    def state(self) -> dict:
        return {
            "history": self.history,
            "first_distinct": self.first_distinct,
            "active": self.active,
            "seen": self.seen,
        }

    def load_state(self, state: dict) -> None:
        self.history = [tuple(item) for item in state["history"]]
        self.first_distinct = state["first_distinct"]
        self.active = list(state["active"])
        self.seen = dict(state["seen"])


def non_finite(metrics: dict[str, float]) -> list[str]:
    """Names of the metrics that are NaN or infinite."""
    return [name for name, value in metrics.items() if isinstance(value, float) and not math.isfinite(value)]
