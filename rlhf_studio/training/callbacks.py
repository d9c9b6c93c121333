"""TrainerCallbacks shared by every stage: metrics sink, NaN/Inf guard, atomic checkpoints, graceful stop.

Metrics keep TRL's own names (`loss`, `eval_accuracy`, `rewards/margins`, ...); each logged dict becomes one
line of metrics.jsonl with `step`, `epoch`, wall-clock `time` and the run's `max_steps` added, written by the
main process only and closed after every line, so a reader (the plots) never waits for a buffer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from rlhf_studio.training.common import process_state


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the value."""


class TrainingStopped(KeyboardInterrupt):
    """Training was stopped on request (SIGTERM); a KeyboardInterrupt, so callers treat it like Ctrl-C."""


def finite_or_none(value: Any) -> Any:
    """Strict JSON has no NaN/Infinity: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLog(TrainerCallback):
    """Append every `on_log` dict to metrics.jsonl (main process); remember the latest value of each key."""

    def __init__(self, path: Path, write: bool) -> None:
        self.path = path
        self.write = write
        self.latest: dict[str, float] = {}

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        row = {
            **(logs or {}),
            "step": state.global_step,
            "epoch": state.epoch,
            "time": round(time.time(), 3),
            "max_steps": state.max_steps,
        }
        self.latest.update({k: v for k, v in row.items() if isinstance(v, int | float) and k != "time"})
        if self.write:
            line = json.dumps({key: finite_or_none(value) for key, value in row.items()}) + "\n"
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)  # one write of one whole line

    def summary(self) -> dict[str, float]:
        return dict(self.latest)


class NonFiniteLossGuard(TrainerCallback):
    """Stop with NonFiniteLossError as soon as a logged loss (`loss`, `eval_loss`, ...) is NaN or infinite.

    Every process sees the same averaged loss, so under DDP they all raise at the same step. Needs
    `logging_nan_inf_filter=False`, or the Trainer would hide a NaN step behind the previous average.
    """

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs) -> None:
        for key, value in (logs or {}).items():
            if key.endswith("loss") and isinstance(value, float) and not math.isfinite(value):
                raise NonFiniteLossError(
                    f"{key} is {value} at step {state.global_step}: training stopped; "
                    "lower the learning rate or check the data"
                )


class CheckpointPublisher(TrainerCallback):
    """Make checkpoints appear only when complete.

    The trainer's output_dir is a hidden staging folder (checkpoints/.partial); after the Trainer has written
    checkpoint-<step> there (every process done), the main process renames it into checkpoints/ in one step,
    then deletes the oldest ones beyond `keep` (renamed away first, so no half-deleted one is ever visible).
    Checkpoints come every save_steps only, not again after the last step: model/ holds the final weights.
    """

    def __init__(self, folder: Path, keep: int | None) -> None:
        self.folder = folder
        self.keep = keep

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if state.global_step >= state.max_steps and state.global_step % args.save_steps != 0:
            control.should_save = False  # the Trainer's own extra save after the last step

    def on_save(self, args, state, control, **kwargs) -> None:
        process = process_state()
        process.wait_for_everyone()
        if not process.is_main_process:
            return
        name = f"checkpoint-{state.global_step}"
        publish(Path(args.output_dir) / name, self.folder / name, Path(args.output_dir))
        if self.keep:
            steps = sorted(published_steps(self.folder))
            for step in steps[: -self.keep]:
                publish(self.folder / f"checkpoint-{step}", None, Path(args.output_dir))


def published_steps(folder: Path) -> list[int]:
    names = (path.name for path in folder.glob("checkpoint-*") if path.is_dir())
    return [int(name.split("-", 1)[1]) for name in names if name.split("-", 1)[1].isdigit()]


def publish(source: Path, target: Path | None, staging: Path) -> None:
    """Rename `source` to `target` atomically, replacing it; with no target, move it aside and delete it."""
    discarded = staging / f"discarded-{time.monotonic_ns()}"
    if target is not None and target.exists():
        os.replace(target, discarded)  # a resumed run saving the same step again
    if target is not None:
        os.replace(source, target)
    else:
        os.replace(source, discarded)
    shutil.rmtree(discarded, ignore_errors=True)


def trim_metrics(path: Path, after_step: int) -> None:
    """Drop metrics rows logged after `after_step` (a resumed run logs those steps again); atomic rewrite."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short when the previous process was killed
        if row.get("step", 0) <= after_step:
            kept.append(line if line.endswith("\n") else line + "\n")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("".join(kept), encoding="utf-8")
    os.replace(partial, path)


class GracefulStop(TrainerCallback):
    """SIGTERM ends training at the end of the current step instead of in the middle of a write.

    Outside the training loop (loading the model, saving the final one) a SIGTERM raises TrainingStopped at
    once; nothing is half-visible there either, since every write goes to a hidden name first. A second
    SIGTERM while waiting for the step to end also raises at once. Under DDP the processes agree on stopping
    (one tiny all-reduce per step), so none of them is left waiting in a collective.
    """

    def __init__(self) -> None:
        self.requested = False
        self._in_loop = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    @contextmanager
    def training_loop(self):
        self._in_loop = True
        try:
            yield
        finally:
            self._in_loop = False

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._in_loop and not self.requested:
            self.requested = True
            return
        raise TrainingStopped("Stopped on request.")

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self._agreed(args.device):
            self.requested = True
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False

    def _agreed(self, device: torch.device) -> bool:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self.requested
        flag = torch.tensor([float(self.requested)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())
