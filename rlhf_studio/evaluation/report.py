"""Report cards: one run's settings, lineage, training curve ends and evaluation results; a table across runs.

    card = report_card(workspace, "20261201-154839-ppo-ed2e")
    print(card_markdown(card))                                  # what "Download report" saves
    rows = comparison_rows(workspace, [sft_id, dpo_id, ppo_id])  # one flat row per run, as CSV or Markdown

Everything is read from the run folders (config.yaml, status.json, metrics.jsonl, evals/); nothing is
recomputed, so a card is cheap and says exactly what was measured.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from datetime import datetime

from rlhf_studio.evaluation.specs import RM_ACCURACY, WIN_RATE, EvaluationError
from rlhf_studio.evaluation.store import latest_evals
from rlhf_studio.runner.runs import CONFIG_FILE, METRICS_FILE, lineage, read_status, run_dir, run_row
from rlhf_studio.stages import find_stage, load_config
from rlhf_studio.workspace import Workspace

SETTINGS = ("learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size", "seed")


def metric_ends(workspace: Workspace, run_id: str, stage: str) -> dict[str, tuple[float, float]]:
    """First and last logged value of each learning metric of the stage."""
    known = find_stage(stage)
    learning = known.learning if known else {}
    path = run_dir(workspace, run_id) / METRICS_FILE
    ends: dict[str, list[float]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a half-written last line of a running job
            for name in learning:
                if isinstance(row.get(name), int | float):
                    ends.setdefault(name, [row[name], row[name]])[1] = row[name]
    return {name: (values[0], values[1]) for name, values in ends.items()}


def report_card(workspace: Workspace, run_id: str) -> dict:
    """Everything worth knowing about one run, as plain data (JSON-ready)."""
    folder = run_dir(workspace, run_id)
    status = read_status(folder)
    if status is None:
        raise EvaluationError(f"There is no run {run_id} in this workspace.")
    config = load_config(folder / CONFIG_FILE) if (folder / CONFIG_FILE).is_file() else None
    row = run_row(status, datetime.now().astimezone())
    ancestors = []
    for ancestor in lineage(workspace, run_id)[1:]:
        parent = read_status(run_dir(workspace, ancestor))
        ancestors.append(
            {"run_id": ancestor, "stage": parent.stage, "dataset": parent.dataset}
            if parent
            else {"run_id": ancestor}
        )
    return {
        "run_id": run_id,
        "stage": status.stage,
        "state": status.state,
        "message": status.message,
        "model": status.model,
        "dataset": status.dataset,
        "started": status.started,
        "duration_s": row.duration_s,
        "lineage": ancestors,
        "settings": {
            **{name: getattr(config, name) for name in SETTINGS if config and hasattr(config, name)},
            "lora": asdict(config.lora) if config and config.lora.enabled else None,
            "reward_model": getattr(config, "reward_model", None),
        },
        "learning": {name: list(pair) for name, pair in metric_ends(workspace, run_id, status.stage).items()},
        "summary": {k: v for k, v in (status.summary or {}).items() if isinstance(v, int | float | str)},
        "evaluations": latest_evals(workspace, run_id),
    }


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.{digits}g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items() if key != "enabled")
    return str(value)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def eval_lines(result: dict) -> list[str]:
    """A stored evaluation as Markdown bullet lines."""
    if result.get("kind") == WIN_RATE:
        rate = result["win_rate"]
        low, high = rate["win_interval"]
        return [
            f"- **Win rate vs {result['baseline']}** (judge {result['judge']}, {rate['n']} prompts of "
            f"{result['prompts']}): win {percent(rate['win'])} [95% CI {percent(low)}–{percent(high)}], "
            f"tie {percent(rate['tie'])}, loss {percent(rate['loss'])}",
            f"  - mean KL to {result.get('reference') or 'reference'}: {fmt(result.get('mean_kl'))} nats; "
            f"reply length {fmt(result['candidate_length'], 1)} vs {fmt(result['baseline_length'], 1)} "
            f"tokens; win rate where it is not longer: {percent(result.get('win_when_not_longer'))}",
            f"  - mean judge score {fmt(result['mean_score_candidate'])} vs "
            f"{fmt(result['mean_score_baseline'])}",
        ]
    low, high = result["accuracy_interval"]
    return [
        f"- **Reward-model accuracy** on {result['dataset']} ({result['split']}, {result['pairs']} pairs): "
        f"{percent(result['accuracy'])} [95% CI {percent(low)}–{percent(high)}], mean margin "
        f"{fmt(result['mean_margin'])}, calibration error {fmt(result['calibration_error'])}"
    ]


def card_markdown(card: dict) -> str:
    lines = [
        f"# Run {card['run_id']} ({card['stage']}, {card['state']})",
        "",
        f"- model: `{card['model']}` · dataset: `{card['dataset']}` · started {card['started'] or '–'} · "
        f"took {fmt(card['duration_s'], 0)} s",
    ]
    if card["lineage"]:
        chain = " ← ".join(f"{a['run_id']} ({a.get('stage', '?')})" for a in card["lineage"])
        lines.append(f"- lineage: {card['run_id']} ← {chain}")
    if card["message"]:
        lines.append(f"- note: {card['message']}")
    lines += ["", "## Settings", ""]
    lines += [f"- {name}: {fmt(value)}" for name, value in card["settings"].items() if value is not None]
    lines += ["", "## Training", "", "| metric | first | last |", "|---|---|---|"]
    lines += [f"| {name} | {fmt(first)} | {fmt(last)} |" for name, (first, last) in card["learning"].items()]
    lines += ["", "## Evaluations", ""]
    lines += [line for result in card["evaluations"] for line in eval_lines(result)] or ["- none yet"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- comparison across runs

COLUMNS = (
    "run_id",
    "stage",
    "state",
    "parent",
    "dataset",
    "duration_s",
    "learning",
    "rm_accuracy",
    "win_rate",
    "win_ci",
    "tie_rate",
    "baseline",
    "mean_kl",
    "reply_tokens",
    "baseline_tokens",
)


def comparison_row(card: dict) -> dict:
    """One flat row of a card: the learning metric's ends and the newest RM accuracy and win rate."""
    row = {
        "run_id": card["run_id"],
        "stage": card["stage"],
        "state": card["state"],
        "parent": card["lineage"][0]["run_id"] if card["lineage"] else "",
        "dataset": card["dataset"],
        "duration_s": round(card["duration_s"]) if card["duration_s"] is not None else None,
        "learning": "; ".join(f"{n} {fmt(a)}→{fmt(b)}" for n, (a, b) in list(card["learning"].items())[:1]),
    }
    for result in card["evaluations"]:
        if result.get("kind") == RM_ACCURACY:
            row["rm_accuracy"] = round(result["accuracy"], 4)
        elif result.get("kind") == WIN_RATE:
            rate = result["win_rate"]
            row.update(
                win_rate=round(rate["win"], 4),
                win_ci=f"{rate['win_interval'][0]:.3f}–{rate['win_interval'][1]:.3f}",
                tie_rate=round(rate["tie"], 4),
                baseline=result["baseline"],
                mean_kl=round(result["mean_kl"], 3) if result.get("mean_kl") is not None else None,
                reply_tokens=round(result["candidate_length"], 1),
                baseline_tokens=round(result["baseline_length"], 1),
            )
    return {column: row.get(column) for column in COLUMNS}


def comparison_rows(workspace: Workspace, run_ids: list[str]) -> list[dict]:
    return [comparison_row(report_card(workspace, run_id)) for run_id in run_ids]


def rows_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def rows_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(row[column]) for column in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"
