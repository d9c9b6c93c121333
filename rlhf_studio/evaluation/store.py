"""Evaluation results kept with the run they judge: `<run>/evals/<kind>-<time>.json`, newest last.

    path = save_eval(workspace, "20261201-154839-ppo-ed2e", result.to_dict())
    latest_evals(workspace, run_id)   # the newest result of each kind and comparison

A reward-model evaluation is stored under the reward-model run, a win rate under the candidate run. A
candidate that is not a run (the base model, a folder) has no folder to keep it in: the result is returned
and printed, not stored.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from rlhf_studio.evaluation.specs import RM_ACCURACY, WIN_RATE
from rlhf_studio.models import RUN_PREFIX
from rlhf_studio.runner.runs import run_dir
from rlhf_studio.workspace import Workspace, write_json_atomic

EVALS_DIR = "evals"


def run_id_of(spec: str) -> str | None:
    return spec[len(RUN_PREFIX) :] if spec.startswith(RUN_PREFIX) else None


def save_eval(workspace: Workspace, run_id: str, result: dict) -> Path:
    """Store one result (a `to_dict()` of an evaluation) with a time stamp; returns its file."""
    stamp = datetime.now().astimezone()
    result = {**result, "created": stamp.isoformat(timespec="seconds")}
    folder = run_dir(workspace, run_id) / EVALS_DIR
    path = folder / f"{result['kind']}-{stamp.strftime('%Y%m%d-%H%M%S-%f')}.json"
    write_json_atomic(path, result)
    return path


def list_evals(workspace: Workspace, run_id: str) -> list[dict]:
    """Every stored result of a run, oldest first; unreadable files are skipped."""
    folder = run_dir(workspace, run_id) / EVALS_DIR
    results = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return results


def comparison_key(result: dict) -> tuple:
    """What makes two results comparable: the kind and what was measured against what."""
    if result.get("kind") == WIN_RATE:
        return (WIN_RATE, result.get("baseline"), result.get("judge"), result.get("prompts"))
    return (RM_ACCURACY, result.get("dataset"), result.get("split"))


def latest_evals(workspace: Workspace, run_id: str) -> list[dict]:
    """The newest result per comparison key, oldest key first."""
    newest: dict[tuple, dict] = {}
    for result in list_evals(workspace, run_id):
        newest.pop(comparison_key(result), None)
        newest[comparison_key(result)] = result
    return list(newest.values())
