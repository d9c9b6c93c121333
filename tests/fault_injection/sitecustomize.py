"""Faults injected into a training child from outside, for tests/test_faults.py.

A test puts this folder on the PYTHONPATH that the job runner passes to its children, and names a plan file in
$RLHF_STUDIO_FAULT_PLAN. Python imports this module at start-up; in a `python -m rlhf_studio train` process it
wraps training_cli.run_stage_for, which reads the plan for its run (by run id, or "*" for every run) once the
training lock is held, and arms each fault at its phase:

    model_load            common.load_model_chain, before the weights are read
    training_step         Trainer.training_step (TRL stages), before the forward pass
    checkpoint_save       Trainer._save_optimizer_and_scheduler: the weights are in the staging folder already
    generation            PPO's sample_in_chunks, before sampling
    ppo_checkpoint_write  after PPO's trainable.safetensors is written, before the optimizer state

    {"<run id>": [{"phase": "checkpoint_save", "action": "kill", "at": 2}]}

`at` is which call of the phase in that process (1 = the first; 2 = the second checkpoint, ...), `every` fires
at each call. Actions: raise (`error`: OutOfMemoryError, MemoryError, ENOSPC), kill (SIGKILL itself), sleep
(`seconds`), nan (the step's loss becomes NaN). Before acting, a fault appends a line to
<plan>.<run id>.<phase>, so that a test knows the child is inside that phase.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
from pathlib import Path

PLAN_ENV = "RLHF_STUDIO_FAULT_PLAN"


def injected_error(name: str) -> BaseException:
    if name == "OutOfMemoryError":
        import torch

        return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by a test)")
    if name == "MemoryError":
        return MemoryError()
    if name == "ENOSPC":
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    raise ValueError(f"unknown injected error {name!r}")


def act(fault: dict, marker: Path, result=None):
    """Record that the phase was reached, then do the fault's action; returns what the call returns."""
    with open(marker, "a") as handle:
        handle.write(f"{time.time()}\n")
    action = fault["action"]
    if action == "raise":
        raise injected_error(fault["error"])
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "sleep":
        time.sleep(fault["seconds"])
    if action == "nan":
        return result * float("nan")
    return result


def wrap(owner, name: str, fault: dict, marker: Path, after: bool = False) -> None:
    """Replace owner.<name> by a wrapper that acts at the fault's call (before or after the original)."""
    original = getattr(owner, name)
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        hit = fault.get("every") or calls == fault.get("at", 1)
        if hit and not after:
            act(fault, marker)
        result = original(*args, **kwargs)
        return act(fault, marker, result) if hit and after else result

    setattr(owner, name, wrapper)


def arm(fault: dict, marker: Path) -> None:
    phase = fault["phase"]
    if phase == "model_load":
        from rlhf_studio.training import common

        wrap(common, "load_model_chain", fault, marker)
    elif phase == "generation":
        from rlhf_studio.training.ppo import step as ppo_step

        wrap(ppo_step, "sample_in_chunks", fault, marker)
    elif phase == "ppo_checkpoint_write":
        from rlhf_studio.training.ppo import checkpoint as ppo_checkpoint

        wrap(ppo_checkpoint, "save_file", fault, marker, after=True)
    elif phase in ("training_step", "checkpoint_save"):
        arm_trainer(fault, marker)
    else:
        raise ValueError(f"unknown phase {phase!r}")


def arm_trainer(fault: dict, marker: Path) -> None:
    """Wrap a method of the Trainer that run_stage builds (the TRL stages)."""
    import rlhf_studio.training as training

    real_builder = training.stage_builder

    def stage_builder(stage):
        def build(*args):
            trainer, source = real_builder(stage)(*args)
            if fault["phase"] == "training_step":
                wrap(trainer, "training_step", fault, marker, after=fault["action"] == "nan")
            else:
                wrap(trainer, "_save_optimizer_and_scheduler", fault, marker)
            return trainer, source

        return build

    training.stage_builder = stage_builder


def install(plan: Path) -> None:
    import rlhf_studio.runner.child as child

    real_run_stage_for = child.run_stage_for

    def run_stage_for(config, folder, workspace, resume_from):
        faults = json.loads(plan.read_text()) if plan.is_file() else {}
        for fault in faults.get(folder.name, []) + faults.get("*", []):
            arm(fault, Path(f"{plan}.{folder.name}.{fault['phase']}"))
        return real_run_stage_for(config, folder, workspace, resume_from)

    child.run_stage_for = run_stage_for


def is_training_process() -> bool:
    argv = getattr(sys, "orig_argv", sys.argv)
    return "rlhf_studio" in argv and "train" in argv


if os.environ.get(PLAN_ENV) and is_training_process():
    install(Path(os.environ[PLAN_ENV]))
