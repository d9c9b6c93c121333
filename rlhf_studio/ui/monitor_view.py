"""What the Monitor tab draws, as plain values: the status and progress header, warnings, tables, charts.

Pure functions of what the engine reports (RunStatus, RunRow, metrics rows); monitor_tab.py wires them.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from rlhf_studio.plots import metric_figure
from rlhf_studio.runner.monitor import MetricsReader, Progress, clock, series, smooth
from rlhf_studio.runner.pipelines import Pipeline, pipeline_title
from rlhf_studio.runner.runs import RunRow, RunStatus
from rlhf_studio.stages import find_stage

CHART_SLOTS = 10
GRID = "#e5e7eb"
RUN_COLUMNS = [
    "run",
    "state",
    "stage",
    "model",
    "dataset",
    "parent",
    "started",
    "duration",
    "result",
    "message",
]
RUN_COLUMN_WIDTHS = ["15%", "8%", "5%", "11%", "9%", "13%", "10%", "7%", "12%", "10%"]
PIPELINE_COLUMNS = ["pipeline", "stages", "state", "message"]
SAMPLE_COLUMNS = ["step", "prompt", "response", "score"]
STATE_COLOURS = {
    "queued": "#7c3aed",
    "running": "#2563eb",
    "completed": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#6b7280",
    "interrupted": "#d97706",
}


def short_model(model: str) -> str:
    """A local folder by its name; hub ids, run:<id> and the bundled model as they are."""
    return Path(model).name if model.startswith(("/", "~", ".")) else model


def badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#6b7280")
    return (
        f'<span style="background:{colour};color:white;border-radius:999px;padding:2px 10px;'
        f'font-size:0.8em;font-weight:600;text-transform:uppercase;letter-spacing:0.04em">{state}</span>'
    )


BOX_STYLE = "padding:10px 14px;border:1px solid #e5e7eb;border-radius:10px"
TRACK_STYLE = "height:10px;background:#e5e7eb;border-radius:6px;margin:10px 0 6px;overflow:hidden"


def queue_note(position: int | None, ahead: str | None) -> str | None:
    """'Queued: starts next, after run X.' for a waiting run; None for one that is not waiting."""
    if not position:
        return None
    when = {1: "next", 2: "2nd", 3: "3rd"}.get(position, f"{position}th")
    return f"Queued: starts {when}" + (f", after run {ahead}." if ahead else ".")


def pipeline_html(pipeline: Pipeline) -> str:
    return f'<div style="margin-bottom:8px"><b>Pipeline</b> {html.escape(pipeline.describe())}</div>'


def progress_html(status: RunStatus, progress: Progress, note: str | None = None) -> str:
    """Badge, run facts, a progress bar and step / elapsed / ETA / samples per second (or the note)."""
    parts = (status.stage.upper(), short_model(status.model), status.dataset)
    facts = " · ".join(html.escape(part) for part in parts if part)
    colour = STATE_COLOURS.get(status.state, "#6b7280")
    percent = 100.0 if status.state == "completed" else round(100 * progress.fraction, 1)
    detail = note or progress.describe()
    message = f'<div style="margin-top:4px">{html.escape(status.message)}</div>' if status.message else ""
    fill = f"height:100%;width:{percent}%;background:{colour};transition:width 0.6s"
    return (
        f'<div style="{BOX_STYLE}">'
        f'<div style="display:flex;gap:10px;align-items:center;flex-wrap:wrap">{badge(status.state)}'
        f"<code>{html.escape(status.run_id)}</code><span>{facts}</span></div>"
        f'<div style="{TRACK_STYLE}"><div style="{fill}"></div></div>'
        f'<div id="monitor-progress-text">{html.escape(detail)}</div>{message}</div>'
    )


def warnings_html(warnings: list[str]) -> str:
    """An amber banner with the distinct warnings, newest last; empty when there are none."""
    distinct = list(dict.fromkeys(warnings))[-5:]
    if not distinct:
        return ""
    items = "".join(f"<li>{html.escape(text)}</li>" for text in distinct)
    return (
        '<div style="background:#fffbeb;border:1px solid #f59e0b;color:#78350f;border-radius:10px;'
        f'padding:8px 14px"><b>Warnings</b><ul style="margin:4px 0 0 18px">{items}</ul></div>'
    )


def run_label(row: RunRow) -> str:
    return f"{row.run_id} · {row.state}"


def runs_frame(rows: list[RunRow]) -> pd.DataFrame:
    table = []
    for row in rows:
        state = f"{row.state} (#{row.queue_position})" if row.queue_position else row.state
        result = f"{row.metric_name} {row.metric_value:.4g}" if row.metric_name is not None else ""
        table.append(
            [
                row.run_id,
                state,
                row.stage,
                short_model(row.model),
                row.dataset,
                row.parent or "",
                (row.started or "")[:16].replace("T", " "),
                clock(row.duration_s) if row.duration_s is not None else "",
                result,
                row.message,
            ]
        )
    return pd.DataFrame(table, columns=RUN_COLUMNS)


def pipelines_frame(pipelines: list[Pipeline]) -> pd.DataFrame:
    table = [[p.pipeline_id, pipeline_title(p.name), p.state, p.message] for p in pipelines]
    return pd.DataFrame(table, columns=PIPELINE_COLUMNS)


def samples_frame(samples: list[dict]) -> pd.DataFrame:
    """The rows of the latest step that wrote samples (PPO's samples.jsonl)."""
    if not samples:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    latest = samples[-1].get("step")
    rows = [row for row in samples if row.get("step") == latest]
    return pd.DataFrame(
        [[row.get(column, "") for column in SAMPLE_COLUMNS] for row in rows], columns=SAMPLE_COLUMNS
    )


def chart_metrics(stage: str, available: list[str], extra: list[str]) -> list[str]:
    """The stage's default charts that were logged, then the extra ones picked, at most CHART_SLOTS."""
    known = find_stage(stage)
    chosen = [name for name in (known.charts if known else ("loss",)) if name in available]
    chosen += [name for name in extra if name in available and name not in chosen]
    return chosen[:CHART_SLOTS]


class FigureCache:
    """Figures shared by every browser: each (metric, runs and rows seen, axis, smoothing) is built once.

    While a run trains, every new metrics row changes the key, so a refresh rebuilds its charts once for all
    browsers; a reload, a second window or going back to a run reuses them.
    """

    def __init__(self, size: int = 64) -> None:
        self._figures: OrderedDict[tuple, go.Figure] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: tuple, build: Callable[[], go.Figure]) -> go.Figure:
        with self._lock:
            if key in self._figures:
                self._figures.move_to_end(key)
                return self._figures[key]
        figure = build()
        with self._lock:
            self._figures[key] = figure
            while len(self._figures) > self.size:
                self._figures.popitem(last=False)
        return figure


def metric_chart(rows_by_run: dict[str, list[dict]], metric: str, x_axis: str, smoothing: float) -> go.Figure:
    """One metric, one line per run (smoothed), x = step or seconds since the run's first row."""
    curves = {}
    for run_id, rows in rows_by_run.items():
        xs, ys = series(rows, metric, x_axis)
        if xs:
            curves[run_id] = (xs, smooth(ys, smoothing))
    figure = metric_figure(curves, metric, "step" if x_axis == "step" else "seconds")
    # a white plot with light grid lines; the named plotly_white template costs 3x the whole figure
    return figure.update_layout(plot_bgcolor="white", xaxis_gridcolor=GRID, yaxis_gridcolor=GRID)


def figures(
    cache: FigureCache,
    rows_by_run: dict[str, list[dict]],
    metrics: list[str],
    x_axis: str,
    smoothing: float,
) -> list[go.Figure]:
    seen = rows_seen(rows_by_run)
    return [
        cache.get(
            (metric, seen, x_axis, smoothing),
            lambda m=metric: metric_chart(rows_by_run, m, x_axis, smoothing),
        )
        for metric in metrics
    ]


def rows_seen(rows_by_run: dict[str, list[dict]]) -> tuple:
    """What changes when a run logs a row (or restarts its metrics from a checkpoint): a cache key."""
    return tuple(
        (run_id, len(rows), rows[-1].get("time") if rows else None) for run_id, rows in rows_by_run.items()
    )


def rows_by_run(reader: MetricsReader, folders: dict[str, Path]) -> dict[str, list[dict]]:
    return {run_id: reader.rows(folder) for run_id, folder in folders.items()}
