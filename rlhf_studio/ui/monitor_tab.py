"""Monitor tab: live curves, progress, warnings, log and samples of one run; the history of every run.

A gr.Timer refreshes the tab every REFRESH_SECONDS from the files of the run folder (metrics.jsonl read
incrementally by the app's one MetricsReader, status.json, the end of train.log): no generator, nothing that
talks to the training process, so closing every browser window changes nothing for the training. Each
browser remembers what it last drew (gr.State) and only changed parts are sent again, which keeps a refresh
cheap and the charts still while nothing new was logged.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from rlhf_studio.runner.monitor import (
    SAMPLES_FILE,
    MetricsReader,
    metric_names,
    run_warnings,
    training_progress,
)
from rlhf_studio.runner.pipelines import PipelineRunner
from rlhf_studio.runner.runs import CONFIG_FILE, LOG_FILE, lineage, log_tail, read_status, run_dir
from rlhf_studio.stages import stage_label
from rlhf_studio.ui.access import require_login
from rlhf_studio.ui.errors import user_errors
from rlhf_studio.ui.monitor_view import (
    CHART_SLOTS,
    PIPELINE_COLUMNS,
    RUN_COLUMN_WIDTHS,
    RUN_COLUMNS,
    SAMPLE_COLUMNS,
    FigureCache,
    chart_metrics,
    figures,
    pipelines_frame,
    progress_html,
    queue_note,
    rows_by_run,
    rows_seen,
    run_label,
    runs_frame,
    samples_frame,
    warnings_html,
)

REFRESH_SECONDS = 2.0
NO_METRICS = "No metrics yet: the first row is written after `logging_steps` steps (and the baseline eval)."
CONFIRM_DELETE = "(run) => run && confirm(`Delete run ${run} and all its files?`) ? run : null"


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


class MonitorTab:
    """The tab's components and handlers; build_monitor_tab lays it out and wires it."""

    def __init__(self, runner: PipelineRunner, reader: MetricsReader, launched: gr.State) -> None:
        self.runner, self.reader = runner, reader
        self.workspace = runner.workspace
        self.figures = FigureCache()  # shared by every browser, like the reader
        self.drawn = gr.State({})  # what this browser last drew for the picked run
        self.listed = gr.State(None)  # the runs table this browser last got
        self.launched = launched  # the Train tab's: what this browser started
        self.followed = gr.State(None)  # the started run the picker last switched to
        with gr.Row(equal_height=True):
            self.run = gr.Dropdown([], value=None, label="Run", scale=1, elem_id="monitor-run")
            self.overlay = gr.Dropdown(
                [], multiselect=True, label="Overlay runs", info="Compare curves with other runs.", scale=1
            )
        self.progress = gr.HTML(elem_id="monitor-progress")
        self.warnings = gr.HTML(elem_id="monitor-warnings", visible=False)
        with gr.Row(equal_height=True):
            self.x_axis = gr.Radio(["step", "time"], value="step", label="X axis", scale=1)
            self.smoothing = gr.Slider(0.0, 0.95, value=0.0, step=0.05, label="Smoothing", scale=1)
            self.extra = gr.Dropdown(
                [], multiselect=True, label="More charts", info="Any other metric the run logged.", scale=2
            )
        self.empty = gr.Markdown(visible=False)
        self.plots: list[gr.Plot] = []
        for start in range(0, CHART_SLOTS, 2):
            with gr.Row(equal_height=True):
                for index in (start, start + 1):
                    self.plots.append(
                        gr.Plot(show_label=False, visible=False, elem_id=f"monitor-chart-{index}")
                    )
        with gr.Accordion("Samples (latest step)", visible=False) as self.samples_box:
            self.samples = gr.Dataframe(headers=SAMPLE_COLUMNS, wrap=True, interactive=False)
        self.log = gr.Code(
            lines=10,
            max_lines=10,
            label="train.log (last lines)",
            show_line_numbers=False,
            elem_id="monitor-log",
        )
        gr.Markdown("### Runs")
        self.runs = gr.Dataframe(
            headers=RUN_COLUMNS,
            interactive=False,
            wrap=True,
            max_height=380,
            column_widths=RUN_COLUMN_WIDTHS,
            elem_id="monitor-runs",
        )
        with gr.Row():
            self.show_config = gr.Button("Open config", size="md")
            self.resume = gr.Button("Resume", size="md", elem_id="monitor-resume")
            self.stop = gr.Button("Stop", size="md", variant="stop", elem_id="monitor-stop")
            self.delete = gr.Button("Delete run", size="md", elem_id="monitor-delete")
        self.action = gr.Markdown(elem_id="monitor-action")
        with gr.Accordion("Run config", open=True, visible=False) as self.config_box:
            self.lineage = gr.Markdown()
            self.config = gr.Code(
                language="yaml", label="config.yaml", lines=10, max_lines=30, show_line_numbers=False
            )
        self.pipelines = gr.Dataframe(headers=PIPELINE_COLUMNS, label="Pipelines", visible=False)
        self.timer = gr.Timer(REFRESH_SECONDS)

    # -- the picked run

    def refresh(self, inputs: dict) -> dict:
        """Everything about the picked run that changed since this browser last drew it."""
        run_id = inputs[self.run]
        status = read_status(run_dir(self.workspace, run_id)) if run_id else None
        if status is None:
            text = (
                f"Run `{run_id}` no longer exists." if run_id else "No run yet: start one in the Train tab."
            )
            return {
                self.progress: f"<p>{text}</p>",
                self.warnings: gr.update(value="", visible=False),
                self.drawn: {},
                **self.hidden_charts(),
            }
        drawn = dict(inputs[self.drawn]) if inputs[self.drawn].get("run") == run_id else {"run": run_id}
        folder = run_dir(self.workspace, run_id)
        rows = self.reader.rows(folder)
        note = queue_note(self.runner.jobs.queue_position(run_id), self.runner.jobs.running())
        banner = warnings_html(run_warnings(folder, self.reader))
        latest = {
            self.progress: progress_html(status, training_progress(status, rows), note),
            self.warnings: gr.update(value=banner, visible=bool(banner)),
        }
        updates = {
            component: value for component, value in latest.items() if drawn.get(component.elem_id) != value
        }
        drawn.update({component.elem_id: value for component, value in latest.items()})
        if drawn.get("log") != (size := file_size(folder / LOG_FILE)):
            drawn["log"] = size
            updates[self.log] = "\n".join(log_tail(folder))
        if drawn.get("samples") != (size := file_size(folder / SAMPLES_FILE)):
            drawn["samples"] = size
            samples = self.reader.rows(folder, SAMPLES_FILE)
            updates[self.samples] = samples_frame(samples)
            title = f"{stage_label(status.stage)} samples (latest step)"
            updates[self.samples_box] = gr.update(visible=bool(samples), label=title)
        return {**updates, **self.charts(inputs, status.stage, drawn), self.drawn: drawn}

    def charts(self, inputs: dict, stage: str, drawn: dict) -> dict:
        run_ids = [inputs[self.run], *[r for r in inputs[self.overlay] or [] if r != inputs[self.run]]]
        folders = {run_id: run_dir(self.workspace, run_id) for run_id in run_ids}
        data = rows_by_run(self.reader, folders)
        extra = list(inputs[self.extra] or [])
        signature = (
            rows_seen(data),
            inputs[self.x_axis],
            inputs[self.smoothing],
            tuple(extra),
        )
        if drawn.get("charts") == signature:
            return {}
        drawn["charts"] = signature
        available = list(dict.fromkeys(name for rows in data.values() for name in metric_names(rows)))
        metrics = chart_metrics(stage, available, extra)
        drawn_figures = figures(self.figures, data, metrics, inputs[self.x_axis], inputs[self.smoothing])
        updates = self.hidden_charts()
        for plot, figure in zip(self.plots, drawn_figures, strict=False):
            updates[plot] = gr.update(value=figure, visible=True)
        updates[self.empty] = gr.update(visible=not drawn_figures, value=NO_METRICS)
        updates[self.extra] = gr.update(choices=[name for name in available if name not in metrics] + extra)
        return updates

    def hidden_charts(self) -> dict:
        return {plot: gr.update(visible=False, value=None) for plot in self.plots}

    # -- the runs table

    def refresh_runs(self, inputs: dict) -> dict:
        """The runs table and the pickers' choices, sent only when a run changed; a gone pick is replaced."""
        rows = self.runner.jobs.runs()
        ids = [row.run_id for row in rows]
        picked, overlay = inputs[self.run], inputs[self.overlay] or []
        frame = runs_frame(rows)
        signature = frame.values.tolist()
        updates: dict = {self.listed: signature}  # never empty: Gradio reads {} as one output value
        started = self.started_run(inputs[self.launched])
        if started in ids and started != inputs[self.followed]:  # a new launch, or the pipeline's next stage
            picked = updates[self.followed] = started
            updates[self.run] = gr.update(value=picked)
        elif picked not in ids:
            picked = self.runner.jobs.running() or (ids[0] if ids else None)
            updates[self.run] = gr.update(value=picked)
        if inputs[self.listed] != signature:
            choices = [(run_label(row), row.run_id) for row in rows]
            updates[self.run] = gr.update(choices=choices, value=picked)
            updates[self.overlay] = gr.update(choices=choices, value=[r for r in overlay if r in ids])
            updates[self.runs] = frame
            pipelines = self.runner.pipelines()
            updates[self.pipelines] = gr.update(value=pipelines_frame(pipelines), visible=bool(pipelines))
        return updates

    def on_select(self, event: gr.SelectData) -> str:
        return event.row_value[0]

    def started_run(self, launched: dict) -> str | None:
        """The run this browser's latest launch started (for a pipeline, the stage that runs now)."""
        pipeline = self.runner.get(launched.get("pipeline", ""))
        return pipeline.last_run if pipeline else launched.get("run")

    # -- actions on the picked run

    def on_show_config(self, run_id: str | None) -> dict:
        if not run_id:
            return {self.action: "Pick a run first."}
        chain = lineage(self.workspace, run_id)
        text = (run_dir(self.workspace, run_id) / CONFIG_FILE).read_text(encoding="utf-8")
        return {
            self.config_box: gr.update(visible=True, label=f"Config of {run_id}"),
            self.lineage: "**Lineage** (newest first): " + " ← ".join(f"`{item}`" for item in chain),
            self.config: text,
        }

    def on_resume(self, run_id: str | None, request: gr.Request) -> str:
        require_login(request, "resume a run")
        if not run_id:
            return "Pick a run first."
        self.runner.resume_run(run_id)
        return f"Run `{run_id}` is queued again; it continues from its newest checkpoint."

    def on_stop(self, run_id: str | None, request: gr.Request) -> str:
        require_login(request, "stop a run")
        if not run_id:
            return "Pick a run first."
        if not self.runner.jobs.is_active(run_id):
            return f"Run `{run_id}` is not queued or running."
        self.runner.jobs.stop(run_id)
        return f"Stopping run `{run_id}`…"

    def on_delete(self, run_id: str | None, request: gr.Request) -> dict:
        require_login(request, "delete a run")
        if not run_id:
            return {self.action: "Nothing deleted."}
        self.runner.jobs.delete(run_id)
        self.reader.forget(run_dir(self.workspace, run_id))
        return {
            self.action: f"Deleted run `{run_id}`.",
            self.run: None,
            self.config_box: gr.update(visible=False),
        }


def build_monitor_tab(
    runner: PipelineRunner, reader: MetricsReader, tab: gr.Tab, studio: gr.Blocks, launched: gr.State
) -> None:
    """Lay out the Monitor tab and wire its events; `launched` (Train tab) makes it follow a new run."""
    view = MonitorTab(runner, reader, launched)
    run_inputs = {view.run, view.overlay, view.x_axis, view.smoothing, view.extra, view.drawn}
    run_outputs = [
        view.progress, view.warnings, view.extra, view.empty, view.log, view.samples, view.samples_box,
        view.drawn, *view.plots,
    ]  # fmt: skip
    triggers = [view.timer.tick, view.run.change, view.overlay.change, view.x_axis.change, view.extra.change]
    quiet = {"show_progress": "hidden", "concurrency_limit": None}
    gr.on([*triggers, view.smoothing.release], view.refresh, run_inputs, run_outputs, **quiet)
    list_outputs = [view.runs, view.run, view.overlay, view.pipelines, view.listed, view.followed]
    gr.on(
        [view.timer.tick, studio.load, tab.select, launched.change],
        view.refresh_runs,
        {view.run, view.overlay, view.listed, view.launched, view.followed},
        list_outputs,
        **quiet,
    )
    view.runs.select(view.on_select, None, view.run)
    view.show_config.click(
        user_errors(view.on_show_config), view.run, [view.action, view.config_box, view.lineage, view.config]
    )
    view.resume.click(user_errors(view.on_resume), view.run, view.action)
    view.stop.click(user_errors(view.on_stop), view.run, view.action)
    view.delete.click(
        user_errors(view.on_delete), view.run, [view.action, view.run, view.config_box], js=CONFIRM_DELETE
    )
