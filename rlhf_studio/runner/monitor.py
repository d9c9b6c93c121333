"""What the Monitor tab reads from a run folder: metrics rows (incrementally), progress and warnings.

    reader = MetricsReader()
    rows = reader.rows(run_folder)              # re-reads only what was appended since the last call
    progress = training_progress(status, rows)  # step / total, elapsed, ETA, samples/s

Everything here reads files written by the training process; nothing talks to that process.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rlhf_studio.runner.runs import METRICS_FILE, RunStatus, seconds_since

WARNINGS_FILE = "warnings.jsonl"
SAMPLES_FILE = "samples.jsonl"


class MetricsReader:
    """Cache of parsed metrics.jsonl rows per run folder, extended by reading only the appended bytes.

    A half-written last line (the trainer is appending) is left for the next call. Thread-safe: several
    browser sessions refresh at once.
    """

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[int, list[dict]]] = {}
        self._lock = threading.Lock()

    def rows(self, folder: Path, file_name: str = METRICS_FILE) -> list[dict]:
        path = folder / file_name
        with self._lock:
            offset, rows = self._cache.get(path, (0, []))
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                self._cache.pop(path, None)
                return []
            if size < offset:  # the file was trimmed (a resume from an earlier checkpoint): start over
                offset, rows = 0, []
            if size > offset:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(size - offset)
                complete = chunk.rfind(b"\n") + 1
                rows = rows + [json.loads(line) for line in chunk[:complete].splitlines() if line.strip()]
                offset += complete
            self._cache[path] = (offset, rows)
            return rows

    def forget(self, folder: Path) -> None:
        with self._lock:
            for path in [path for path in self._cache if path.parent == folder]:
                del self._cache[path]


@dataclass
class Progress:
    step: int
    total: int
    elapsed: float  # seconds since the run started
    eta: float | None  # seconds left at the current pace
    steps_per_second: float | None
    samples_per_second: float | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0

    def describe(self) -> str:
        text = f"step {self.step}/{self.total or '?'} · elapsed {clock(self.elapsed)}"
        if self.eta is not None:
            text += f" · ETA {clock(self.eta)}"
        if self.samples_per_second:
            text += f" · {self.samples_per_second:.2f} samples/s"
        return text


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def training_progress(status: RunStatus, rows: list[dict], now: datetime | None = None) -> Progress:
    """Step, total and pace from the metrics rows; elapsed from the status (until it ended)."""
    step = max((int(row.get("step") or 0) for row in rows), default=0)
    total = max((int(row.get("max_steps") or 0) for row in rows), default=0)
    started = seconds_since(status.started, now) if status.started else None
    ended = seconds_since(status.ended, now) if status.ended else 0.0
    elapsed = (started - (ended or 0.0)) if started is not None else 0.0
    timed = [row for row in rows if row.get("time") and row.get("step")]
    steps_per_second = samples_per_second = eta = None
    if len(timed) >= 2 and timed[-1]["time"] > timed[0]["time"]:
        steps_per_second = (timed[-1]["step"] - timed[0]["step"]) / (timed[-1]["time"] - timed[0]["time"])
    samples = [row["train_samples_per_second"] for row in rows if row.get("train_samples_per_second")]
    if samples:
        samples_per_second = samples[-1]
    if steps_per_second and total and status.state == "running":
        eta = max(0.0, (total - step) / steps_per_second)
    return Progress(step, total, elapsed, eta, steps_per_second, samples_per_second)


def metric_names(rows: list[dict]) -> list[str]:
    """Numeric metrics present in the rows, bookkeeping columns left out."""
    skip = {"step", "epoch", "time", "max_steps", "total_flos"}
    names: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key not in skip and isinstance(value, int | float) and not isinstance(value, bool):
                names[key] = None
    return list(names)


def series(rows: list[dict], metric: str, x_axis: str = "step") -> tuple[list[float], list[float]]:
    """(x, y) of one metric; x is the step or seconds since the first row. Non-finite values are skipped."""
    start = next((row["time"] for row in rows if row.get("time")), 0.0)
    xs, ys = [], []
    for row in rows:
        value = row.get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            xs.append(row.get("step", 0) if x_axis == "step" else round(row.get("time", start) - start, 2))
            ys.append(float(value))
    return xs, ys


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing; weight 0 returns the values unchanged."""
    if not 0 < weight < 1:
        return list(values)
    smoothed, last, count = [], 0.0, 0
    for value in values:
        count += 1
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**count))
    return smoothed


def run_warnings(folder: Path, reader: MetricsReader) -> list[str]:
    """Health warnings the training wrote (NaN, KL budget, reward hacking, collapse), oldest first."""
    rows = reader.rows(folder, WARNINGS_FILE)
    return [row.get("message", "") for row in rows if row.get("message")]
