"""What an evaluation compares, as model specs the pickers use: runs, the base model, folders, hub ids.

as_spec(workspace, "20261201-153639-rm-9c2c")    # "run:20261201-153639-rm-9c2c"
started_from(workspace, "run:…-ppo-ed2e")          # "run:…-sft-e537": the reference for KL
root_model(workspace, "run:…-ppo-ed2e")            # the bundled model: what "base" means
"""

from __future__ import annotations

from rlhf_studio.data import load_split
from rlhf_studio.models import RUN_PREFIX
from rlhf_studio.runner.runs import COMPLETED, RUN_ID, read_status, run_dir
from rlhf_studio.stages import load_config
from rlhf_studio.workspace import Workspace

BASE = "base"  # baseline: the model at the root of the candidate's lineage
SPLITS = ("eval", "train", "all")  # of a stored dataset; all = train + eval
RM_ACCURACY, WIN_RATE = "rm", "winrate"  # the kinds of stored results (and of `eval rm` / `eval winrate`)


class EvaluationError(ValueError):
    """An evaluation cannot run as asked; the message is one sentence for the user."""


def as_spec(workspace: Workspace, name: str) -> str:
    """A run id typed without its prefix names that run; anything else is a model spec as the pickers use."""
    name = name.strip()
    if name != BASE and RUN_ID.fullmatch(name) and (workspace.runs_dir / name / "status.json").is_file():
        return f"{RUN_PREFIX}{name}"
    return name


def started_from(workspace: Workspace, spec: str) -> str | None:
    """The model a run started from (its config's `model`); None for a spec that is not a run."""
    if not spec.startswith(RUN_PREFIX):
        return None
    run_id = spec[len(RUN_PREFIX) :]
    folder = run_dir(workspace, run_id)
    status = read_status(folder)
    if status is None:
        raise EvaluationError(f"There is no run {run_id} in this workspace.")
    if status.state != COMPLETED:
        raise EvaluationError(f"Run {run_id} is {status.state}; only a completed run has a model.")
    return load_config(folder / "config.yaml").model


def root_model(workspace: Workspace, spec: str) -> str:
    """The model at the root of a run's lineage (the base model the first stage started from)."""
    seen = set()
    while (parent := started_from(workspace, spec)) is not None:
        if spec in seen:
            raise EvaluationError(f"The lineage of {spec} loops back on itself.")
        seen.add(spec)
        spec = parent
    return spec


def split_rows(workspace: Workspace, dataset: str, split: str) -> list[dict]:
    """The normalized rows of a stored dataset's split ("all": train then eval)."""
    if split not in SPLITS:
        raise EvaluationError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    names = ("train", "eval") if split == "all" else (split,)
    return [row for name in names for row in load_split(workspace, dataset, name)]
