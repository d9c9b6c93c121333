"""Train and Monitor tabs.

In a real browser (slow): data in, a short DPO run started, watched, listed, still there after a reload;
a long run stopped from the UI. The app trains the tiny model (RLHF_STUDIO_DEFAULT_MODEL).
Without a browser (fast): the settings form round-trips every stage's defaults; the chart choice per stage.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import gradio as gr
import pytest
from browser import REPO, chromium_page, needs_chromium, running_studio, screenshot, stop_leftover_runs
from playwright.sync_api import expect

from rlhf_studio.data import import_dataset, list_datasets
from rlhf_studio.runner.commands import gpu_count
from rlhf_studio.runner.jobs import JobManager
from rlhf_studio.runner.monitor import MetricsReader
from rlhf_studio.runner.pipelines import PipelineRunner
from rlhf_studio.runner.runs import (
    CANCELLED,
    COMPLETED,
    RUNNING,
    create_run,
    finish_status,
    read_status,
    run_dir,
    update_status,
)
from rlhf_studio.stages import config_from_dict, get_stage, load_config, stage_names
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.ui.monitor_tab import MonitorTab
from rlhf_studio.ui.monitor_view import chart_metrics, samples_frame, warnings_html
from rlhf_studio.ui.settings_form import NO_CUDA, SettingsForm, nest
from rlhf_studio.workspace import Workspace

TRAINING_MS = 300_000  # a few tiny-model steps, on a 2-core CI machine that may be busy
DEMO_PREFERENCES = REPO / "assets" / "demo" / "preference.jsonl"


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("ui-train") / "workspace"
    root.mkdir()
    try:
        with running_studio(root, env={"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}) as url:
            yield url, root
    finally:
        stop_leftover_runs(root)


def run_ids(root: Path) -> set[str]:
    return {folder.name for folder in (root / "runs").iterdir() if not folder.name.startswith(".")}


def save_demo_preferences(page) -> None:
    page.locator("input[type=file]").first.set_input_files(str(DEMO_PREFERENCES))
    page.locator("#data-verdict").get_by_text("preference data").wait_for()
    page.get_by_label("Dataset name").fill("demo-prefs")
    page.get_by_role("button", name="Save to library").click()
    page.locator("#data-saved").get_by_text("Saved").wait_for()


def choose_dpo(page, max_steps: int) -> None:
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-stage").get_by_role("radio", name="DPO", exact=True).check()
    expect(page.locator("#train-data-dpo input")).to_have_value("demo-prefs")
    page.locator("#setting-max-steps input").fill(str(max_steps))
    page.locator("#setting-max-length input").fill("64")
    page.get_by_text("Schedule, evaluation and checkpoints").click()
    page.locator("#setting-logging-steps input").fill("1")


def chart_points(page) -> int:
    return page.evaluate(
        "() => { const plot = document.querySelector('#monitor-chart-0 .js-plotly-plot');"
        " return plot && plot.data ? plot.data.reduce((n, trace) => n + trace.x.length, 0) : 0; }"
    )


def first_chart_titles(page) -> list[str]:
    """The titles of the Monitor's first two charts, once both are drawn."""
    page.wait_for_function("() => document.querySelector('#monitor-chart-1 .js-plotly-plot')")
    return page.evaluate(
        "() => [0, 1].map(i => document.querySelector(`#monitor-chart-${i} .js-plotly-plot`)"
        ".layout.title.text)"
    )


def watch_progress(page) -> list[str]:
    """The progress line every half second until the run completes."""
    seen: list[str] = []
    progress = page.locator("#monitor-progress")
    for _ in range(TRAINING_MS // 500):
        text = progress.inner_text()
        step = re.search(r"step \d+/\S+", text)
        if step and (not seen or seen[-1] != step.group()):
            seen.append(step.group())
        if "completed" in text.lower() or "failed" in text.lower():
            return seen
        page.wait_for_timeout(500)
    raise AssertionError(f"the run did not finish; progress seen: {seen}")


@pytest.mark.parametrize("stage", sorted(stage_names()))
def test_settings_form_round_trips_the_stage_defaults(stage):
    with gr.Blocks():
        form = SettingsForm()
    updates = form.show(stage, form.defaults(stage))
    widgets = set(form.widgets.values())
    shown = {
        widget: update["value"]
        for widget, update in updates.items()
        if widget in widgets and update["visible"]
    }
    assert set(shown) == {form.widgets[name] for name in form.defaults(stage)}
    values = nest(form.read(stage, shown))
    rebuilt = config_from_dict({"stage": stage, "model": "m", "dataset": "d", **values})
    assert rebuilt == get_stage(stage).config(model="m", dataset="d")


def test_a_field_several_stages_share_shows_each_stage_its_own_choices():
    with gr.Blocks():
        form = SettingsForm()
    widget = form.widgets["loss_type"]
    assert {"sigmoid", "kto", "dapo"} <= {value for _, value in widget.choices}  # any stage's value is valid
    for stage, default in (("dpo", "sigmoid"), ("kto", "kto"), ("grpo", "dapo")):
        update = form.show(stage, form.defaults(stage))[widget]
        own = get_stage(stage).config.__dataclass_fields__["loss_type"].metadata["choices"]
        assert (update["value"], update["choices"]) == (default, list(own))
        assert widget.preprocess(default) == default  # what Start submits passes the server's check


@pytest.mark.skipif(gpu_count() > 0, reason="this machine has a CUDA device")
def test_quantization_is_off_and_explained_without_cuda():
    with gr.Blocks():
        form = SettingsForm()
    assert form.widgets["quantization"].interactive is False
    assert form.show("dpo", form.defaults("dpo"))[form.widgets["quantization"]]["info"] == NO_CUDA


def test_charts_are_the_stage_defaults_that_were_logged_then_the_picked_ones():
    available = ["loss", "rewards/margins", "grad_norm", "rewards/chosen"]
    assert chart_metrics("dpo", available, ["grad_norm", "missing"]) == [
        "loss",
        "rewards/chosen",
        "rewards/margins",
        "grad_norm",
    ]
    assert chart_metrics("rm", ["loss", "accuracy"], []) == ["loss", "accuracy"]


def test_warnings_banner_and_samples_table():
    banner = warnings_html(["KL 25.0 is above the budget 20", "KL 25.0 is above the budget 20", "<b>NaN</b>"])
    assert banner.count("KL 25.0") == 1 and "&lt;b&gt;NaN" in banner and warnings_html([]) == ""
    samples = [{"step": 5, "prompt": "a", "response": "b", "score": 0.1}, {"step": 10, "prompt": "c"}]
    latest = samples_frame(samples).to_dict("records")
    assert latest == [{"step": 10, "prompt": "c", "response": "", "score": ""}]


def append_rows(path: Path, *rows: dict) -> None:
    with open(path, "a") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows))


def test_monitor_refresh_sends_only_what_changed(workspace):
    jobs = JobManager(workspace)
    try:
        with gr.Blocks():
            view = MonitorTab(PipelineRunner(jobs, poll_seconds=None), MetricsReader(), gr.State({}))
        run_id = create_run(workspace, DPOJobConfig(dataset="d", max_steps=4))
        folder = run_dir(workspace, run_id)
        update_status(folder, state=RUNNING, started="2026-11-22T14:15:01+00:00")
        append_rows(folder / "metrics.jsonl", {"step": 1, "max_steps": 4, "time": 1.0, "loss": 0.69})
        picked = {view.run: run_id, view.overlay: [], view.x_axis: "step", view.smoothing: 0.0}
        picked[view.extra] = []

        first = view.refresh({**picked, view.drawn: {}})
        charts = [plot for plot in view.plots if first[plot].get("visible")]
        assert len(charts) == 1 and "step 1/4" in first[view.progress]
        again = view.refresh({**picked, view.drawn: first[view.drawn]})
        assert not any(plot in again for plot in view.plots) and view.log not in again
        append_rows(folder / "metrics.jsonl", {"step": 2, "max_steps": 4, "time": 2.0, "loss": 0.68})
        append_rows(folder / "warnings.jsonl", {"message": "reward hacking?"})
        moved = view.refresh({**picked, view.drawn: again[view.drawn]})
        assert list(moved[charts[0]]["value"].data[0].x) == [1, 2]
        assert "reward hacking?" in moved[view.warnings]["value"] and moved[view.warnings]["visible"]
    finally:
        jobs.shutdown()


@pytest.mark.slow
@needs_chromium
def test_dpo_run_from_data_to_history(studio):
    url, root = studio
    with chromium_page() as page:
        page.goto(url)
        save_demo_preferences(page)
        page.locator(".js-plotly-plot").first.wait_for()  # the token-length histogram
        screenshot(page, "data-tab-saved")
        choose_dpo(page, max_steps=6)
        page.locator("#setting-learning-rate input").fill("0")
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("learning_rate: must be above 0")
        assert run_ids(root) == set()  # refused before anything started
        page.locator("#setting-learning-rate input").fill("0.000005")
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("Started")
        (run_id,) = run_ids(root)
        expect(page.locator("#train-status")).to_contain_text(run_id)
        screenshot(page, "train-tab-started")

        page.get_by_role("tab", name="Monitor").click()
        steps = watch_progress(page)
        expect(page.locator("#monitor-progress")).to_contain_text("completed")
        assert steps[-1] == "step 6/6" and len(steps) >= 2, steps  # the bar moved
        page.wait_for_function("() => document.querySelector('#monitor-chart-0 .js-plotly-plot')")
        assert chart_points(page) >= 6
        expect(page.locator("#monitor-runs")).to_contain_text(run_id)
        expect(page.locator("#monitor-runs")).to_contain_text("completed")
        screenshot(page, "monitor-tab-completed")

        page.reload()
        page.get_by_role("tab", name="Monitor").click()
        expect(page.locator("#monitor-runs")).to_contain_text(run_id)
        expect(page.locator("#monitor-progress")).to_contain_text("completed")
    assert read_status(root / "runs" / run_id).state == COMPLETED


@pytest.mark.slow
@needs_chromium
def test_stop_button_cancels_a_running_job(studio):
    url, root = studio
    before = run_ids(root)
    with chromium_page() as page:
        page.goto(url)
        choose_dpo(page, max_steps=100_000)
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("Started")
        (run_id,) = run_ids(root) - before
        status = page.locator("#train-status")
        expect(status).to_contain_text(re.compile(r"step [1-9]"), timeout=TRAINING_MS)
        page.locator("#train-stop").click()
        expect(status).to_contain_text("cancelled", timeout=60_000)
        screenshot(page, "train-tab-stopped")
    assert read_status(root / "runs" / run_id).state == CANCELLED


def finished_reward_model_run(root: Path, reward_dir: Path) -> str:
    """A completed reward-model run in the app's workspace (the tiny classifier as its model)."""
    workspace = Workspace.at(root)
    if "demo-prefs" not in {manifest.name for manifest in list_datasets(workspace)}:
        import_dataset(workspace, DEMO_PREFERENCES, "demo-prefs")
    run_id = create_run(workspace, RewardJobConfig(model=str(reward_dir), dataset="demo-prefs"))
    shutil.copytree(reward_dir, run_dir(workspace, run_id) / "model")
    finish_status(run_dir(workspace, run_id), COMPLETED)
    return run_id


@pytest.mark.slow
@needs_chromium
def test_ppo_run_shows_score_and_kl_charts_and_samples(studio, tiny_reward_dir):
    url, root = studio
    reward_run = finished_reward_model_run(root, tiny_reward_dir)
    before = run_ids(root)
    with chromium_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-stage").get_by_role("radio", name="PPO", exact=True).check()
        expect(page.locator("#train-reward input")).to_have_value(re.compile(reward_run))
        expect(page.locator("#train-data-ppo input")).to_have_value("demo-prefs")
        page.locator("#setting-max-steps input").fill("3")
        page.locator("#setting-max-length input").fill("64")
        page.locator("#setting-response-length input").fill("8")
        page.locator("#setting-per-device-train-batch-size input").fill("2")
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("Started")
        (run_id,) = run_ids(root) - before - {reward_run}
        screenshot(page, "train-tab-ppo")

        page.get_by_role("tab", name="Monitor").click()
        steps = watch_progress(page)
        assert steps[-1] == "step 3/3", steps
        titles = first_chart_titles(page)
        assert titles == ["objective/scores", "objective/kl"]
        assert chart_points(page) >= 3
        samples = page.get_by_text("PPO samples (latest step)")
        expect(samples).to_be_visible()
        screenshot(page, "monitor-tab-ppo")
    assert read_status(root / "runs" / run_id).state == COMPLETED
    config = load_config(root / "runs" / run_id / "config.yaml")
    assert (config.stage, config.reward_model, config.max_steps) == ("ppo", f"run:{reward_run}", 3)


@pytest.mark.slow
@needs_chromium
def test_grpo_run_shows_reward_and_kl_charts_and_samples(studio, tiny_reward_dir):
    url, root = studio
    reward_run = finished_reward_model_run(root, tiny_reward_dir)
    before = run_ids(root)
    with chromium_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-stage").get_by_role("radio", name="GRPO", exact=True).check()
        expect(page.locator("#train-stage-note")).to_contain_text("Pick it when")
        expect(page.locator("#train-reward input")).to_have_value(re.compile(reward_run))
        expect(page.locator("#train-data-grpo input")).to_have_value("demo-prefs")
        for name, value in (("max-steps", 3), ("max-length", 64), ("max-completion-length", 8)):
            page.locator(f"#setting-{name} input").fill(str(value))
        page.locator("#setting-per-device-train-batch-size input").fill("4")
        page.locator("#train-start").click()
        expect(page.locator("#train-message")).to_contain_text("Started")
        (run_id,) = run_ids(root) - before - {reward_run}

        page.get_by_role("tab", name="Monitor").click()
        steps = watch_progress(page)
        assert steps[-1] == "step 3/3", steps
        titles = first_chart_titles(page)
        assert titles == ["reward", "kl"]
        expect(page.get_by_text("GRPO samples (latest step)")).to_be_visible()
        screenshot(page, "monitor-tab-grpo")
    assert read_status(root / "runs" / run_id).state == COMPLETED
