"""Eval tab: did RLHF help? Reward-model accuracy and calibration, RM-judged win rates, report cards.

The evaluation engine (rlhf_studio.evaluation) does the work in the handler's thread, with the app's shared
ModelCache (the Chat tab's), so a model already loaded for chat is not loaded again. Results are stored with
their runs; the report section reads them back, shows a comparison table and offers both as downloads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from rlhf_studio.chat import ModelCache
from rlhf_studio.chat.generation import share_cpu
from rlhf_studio.data import list_datasets
from rlhf_studio.evaluation.report import (
    COLUMNS,
    card_markdown,
    comparison_rows,
    eval_lines,
    report_card,
    rows_csv,
)
from rlhf_studio.evaluation.reward_eval import evaluate_reward_model
from rlhf_studio.evaluation.settings import WinRateSettings
from rlhf_studio.evaluation.specs import BASE
from rlhf_studio.evaluation.store import run_id_of, save_eval
from rlhf_studio.evaluation.win_rate import evaluate_win_rate
from rlhf_studio.plots import calibration_figure, win_rate_figure
from rlhf_studio.runner.pipelines import PipelineRunner
from rlhf_studio.ui.access import require_login
from rlhf_studio.ui.errors import user_errors
from rlhf_studio.ui.pickers import finished_runs, policy_choices, reward_choices

SAMPLE_COLUMNS = ["prompt", "candidate", "baseline", "candidate score", "baseline score", "judgement"]
JUDGEMENTS = {1: "win", 0: "tie", -1: "loss"}
SAMPLES_SHOWN = 20


def datasets_of(workspace, kinds: tuple[str, ...] | None = None) -> list[str]:
    return [m.name for m in list_datasets(workspace) if kinds is None or m.kind in kinds]


def keep(current, choices: list) -> str | None:
    """The current pick if it is still offered, else the first choice."""
    values = [choice[1] if isinstance(choice, tuple) else choice for choice in choices]
    return current if current in values else (values[0] if values else None)


class EvalTab:
    def __init__(self, runner: PipelineRunner, cache: ModelCache) -> None:
        self.runner, self.cache = runner, cache
        gr.Markdown(
            "Judge with numbers whether a stage helped. A reward model is scored on labelled pairs it did "
            "not train on; a policy answers held-out prompts beside a baseline and a reward model judges "
            "each pair. The mean KL to the model the run started from and the reply lengths are shown "
            "beside the win rate: a judge that likes long replies makes longer look better."
        )
        self._build_reward_model()
        self._build_win_rate()
        self._build_reports()

    def _build_reward_model(self) -> None:
        with gr.Accordion("Reward model: accuracy and calibration", open=True):
            with gr.Row(equal_height=True):
                self.rm_run = gr.Dropdown([], label="Reward-model run", elem_id="eval-rm-run", scale=2)
                self.rm_data = gr.Dropdown([], label="Preference dataset", elem_id="eval-rm-data", scale=2)
                self.rm_split = gr.Radio(
                    ["eval", "train", "all"], value="eval", label="Split (eval: held out)", scale=1
                )
                self.rm_go = gr.Button(
                    "Evaluate reward model", variant="primary", elem_id="eval-rm-go", scale=1
                )
            self.rm_result = gr.Markdown(elem_id="eval-rm-result")
            self.rm_plot = gr.Plot(visible=False, elem_id="eval-rm-plot")

    def _build_win_rate(self) -> None:
        with gr.Accordion("Policy: win rate against a baseline", open=True):
            with gr.Row(equal_height=True):
                self.candidate = gr.Dropdown([], label="Candidate", elem_id="eval-candidate")
                self.baseline = gr.Dropdown(
                    [],
                    label="Baseline",
                    info="base: the model the lineage started from",
                    elem_id="eval-baseline",
                )
                self.judge = gr.Dropdown([], label="Judge (reward-model run)", elem_id="eval-judge")
                self.prompts = gr.Dropdown([], label="Prompts (held out)", elem_id="eval-prompts")
            defaults = WinRateSettings()
            with gr.Row(equal_height=True):
                self.limit = gr.Number(
                    100, precision=0, label="Prompts (at most)", minimum=1, elem_id="eval-limit"
                )
                self.max_new = gr.Number(
                    defaults.max_new_tokens,
                    precision=0,
                    label="Max new tokens",
                    minimum=1,
                    elem_id="eval-max-new",
                )
                self.temperature = gr.Slider(
                    0.05, 2.0, value=defaults.temperature, step=0.05, label="Temperature"
                )
                self.seed = gr.Number(defaults.seed, precision=0, label="Seed")
                self.win_go = gr.Button("Evaluate win rate", variant="primary", elem_id="eval-win-go")
            self.win_result = gr.Markdown(elem_id="eval-win-result")
            self.win_plot = gr.Plot(visible=False, elem_id="eval-win-plot")
            self.samples = gr.Dataframe(
                headers=SAMPLE_COLUMNS, visible=False, interactive=False, wrap=True, elem_id="eval-samples"
            )

    def _build_reports(self) -> None:
        with gr.Accordion("Report cards and comparison", open=True):
            with gr.Row(equal_height=True):
                self.report_runs = gr.Dropdown(
                    [], multiselect=True, label="Runs to compare", elem_id="eval-report-runs", scale=4
                )
                self.report_go = gr.Button("Show report", elem_id="eval-report-go", scale=1)
            self.table = gr.Dataframe(headers=list(COLUMNS), interactive=False, elem_id="eval-table")
            self.cards = gr.Markdown(elem_id="eval-cards")
            with gr.Row(equal_height=True):
                self.card_file = gr.File(
                    label="Report cards (Markdown)", visible=False, elem_id="eval-card-file"
                )
                self.table_file = gr.File(label="Comparison (CSV)", visible=False, elem_id="eval-table-file")

    # -- pickers

    def on_open(self, rm_run, rm_data, candidate, baseline, judge, prompts, report_runs) -> dict:
        finished = finished_runs(self.runner)
        workspace = self.runner.workspace
        reward_runs = reward_choices(finished)
        policies = policy_choices(finished)
        baselines = [("base (the lineage's root model)", BASE)] + policies
        every_run = [(f"{row.run_id} · {row.stage} on {row.dataset}", row.run_id) for row in finished]
        preference = datasets_of(workspace, ("preference",))
        manifests = sorted(list_datasets(workspace), key=lambda m: (m.kind != "prompt", m.name))
        prompt_sets = [m.name for m in manifests if m.format != "text"]  # prompt-only sets first
        rm_pick = keep(rm_run, reward_runs)
        return {
            self.rm_run: gr.update(choices=reward_runs, value=rm_pick),
            self.rm_data: gr.update(
                choices=preference, value=keep(rm_data or self.trained_on(rm_pick), preference)
            ),
            self.candidate: gr.update(choices=policies, value=keep(candidate, policies)),
            self.baseline: gr.update(choices=baselines, value=keep(baseline, baselines)),
            self.judge: gr.update(choices=reward_runs, value=keep(judge, reward_runs)),
            self.prompts: gr.update(choices=prompt_sets, value=keep(prompts, prompt_sets)),
            self.report_runs: gr.update(
                choices=every_run, value=[run for run in report_runs or [] if run in dict(every_run).values()]
            ),
        }

    def trained_on(self, rm_spec: str | None) -> str | None:
        """The dataset a reward-model run trained on: its held-out split is the natural test."""
        run_id = run_id_of(rm_spec or "")
        if run_id is None:
            return None
        rows = [row for row in self.runner.jobs.runs() if row.run_id == run_id]
        return rows[0].dataset if rows else None

    def on_rm_run(self, rm_run: str | None) -> dict:
        return gr.update(value=self.trained_on(rm_run)) if self.trained_on(rm_run) else gr.update()

    # -- evaluations

    def progress_reporter(self, progress: gr.Progress):
        share_cpu(self.runner.jobs.running() is not None)
        return lambda fraction, text: progress(fraction, desc=text or None)

    def on_rm(self, rm_run, dataset, split, request: gr.Request, progress=gr.Progress()) -> dict:
        require_login(request, "run an evaluation")
        if not rm_run or not dataset:
            raise gr.Error("Pick a reward-model run and a preference dataset.")
        result = evaluate_reward_model(
            self.cache, rm_run, dataset, split, progress=self.progress_reporter(progress)
        ).to_dict()
        save_eval(self.runner.workspace, run_id_of(rm_run), result)
        hardest = "".join(
            f"\n  - margin {row['margin']:+.2f}: {str(row['prompt'])[:80]}" for row in result["hardest"][:3]
        )
        text = "\n".join(eval_lines(result)) + f"\n- pairs it found hardest:{hardest}"
        return {
            self.rm_result: text,
            self.rm_plot: gr.update(value=calibration_figure(result["calibration"]), visible=True),
        }

    def on_win_rate(self, inputs: dict, request: gr.Request, progress=gr.Progress()) -> dict:
        require_login(request, "run an evaluation")
        names = [inputs[self.candidate], inputs[self.baseline], inputs[self.judge], inputs[self.prompts]]
        if not all(names):
            raise gr.Error("Pick a candidate, a baseline, a judge and a prompt dataset.")
        settings = WinRateSettings(
            max_new_tokens=int(inputs[self.max_new] or 1),
            temperature=float(inputs[self.temperature]),
            seed=int(inputs[self.seed] or 0),
            limit=int(inputs[self.limit] or 1),
        )
        result = evaluate_win_rate(self.cache, *names, settings, self.progress_reporter(progress)).to_dict()
        if run_id := run_id_of(result["candidate"]):
            save_eval(self.runner.workspace, run_id, result)
        rows = [
            [
                str(s["prompt"]),
                s["candidate"],
                s["baseline"],
                round(s["candidate_score"], 3),
                round(s["baseline_score"], 3),
                JUDGEMENTS[s["judgement"]],
            ]
            for s in result["samples"][:SAMPLES_SHOWN]
        ]
        return {
            self.win_result: "\n".join(eval_lines(result)),
            self.win_plot: gr.update(value=win_rate_figure([result]), visible=True),
            self.samples: gr.update(value=rows, visible=True),
        }

    # -- reports

    def on_report(self, run_ids: list[str] | None) -> dict:
        if not run_ids:
            raise gr.Error("Pick one or more runs.")
        workspace = self.runner.workspace
        cards = [card_markdown(report_card(workspace, run_id)) for run_id in run_ids]
        rows = comparison_rows(workspace, run_ids)
        folder = Path(tempfile.mkdtemp(prefix="report-"))
        (folder / "report-cards.md").write_text("\n\n".join(cards), encoding="utf-8")
        (folder / "comparison.csv").write_text(rows_csv(rows), encoding="utf-8")
        return {
            self.table: [[row[column] for column in COLUMNS] for row in rows],
            self.cards: "\n\n---\n\n".join(cards),
            self.card_file: gr.update(value=str(folder / "report-cards.md"), visible=True),
            self.table_file: gr.update(value=str(folder / "comparison.csv"), visible=True),
        }


def build_eval_tab(runner: PipelineRunner, cache: ModelCache, tab: gr.Tab) -> None:
    view = EvalTab(runner, cache)
    pickers = [
        view.rm_run,
        view.rm_data,
        view.candidate,
        view.baseline,
        view.judge,
        view.prompts,
        view.report_runs,
    ]
    tab.select(user_errors(view.on_open), pickers, pickers)
    view.rm_run.input(user_errors(view.on_rm_run), view.rm_run, view.rm_data)
    view.rm_go.click(
        user_errors(view.on_rm), [view.rm_run, view.rm_data, view.rm_split], [view.rm_result, view.rm_plot]
    )
    win_inputs = {view.candidate, view.baseline, view.judge, view.prompts, view.limit, view.max_new}
    win_inputs |= {view.temperature, view.seed}
    view.win_go.click(
        user_errors(view.on_win_rate), win_inputs, [view.win_result, view.win_plot, view.samples]
    )
    view.report_go.click(
        user_errors(view.on_report),
        view.report_runs,
        [view.table, view.cards, view.card_file, view.table_file],
    )
