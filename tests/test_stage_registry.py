"""A stage is one module: a throwaway stage registered from the test (tests/toy_stage) is everywhere.

Nothing in rlhf_studio names it. In this process the test adds it to the registry; the app, its training
children and the CLI get it from tests/toy_stage/sitecustomize.py on their PYTHONPATH. It then shows in the
Train tab's stage list with its own setting and check, trains through the runner (started from the browser)
and through `python -m rlhf_studio train`, its charts are the Monitor's first ones, its runs are offered as
starting models and as the Chat tab's SFT pane, and the data check, launch lines and report card know it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser import REPO, chromium_page, needs_chromium, running_studio, screenshot, stop_leftover_runs
from playwright.sync_api import expect
from test_ui_train_monitor import first_chart_titles

from rlhf_studio.cli import main
from rlhf_studio.config import ConfigError, save_config
from rlhf_studio.data import import_dataset
from rlhf_studio.evaluation.report import report_card
from rlhf_studio.runner.commands import command_text
from rlhf_studio.runner.runs import COMPLETED, METRICS_FILE, list_runs, read_status, run_dir
from rlhf_studio.stages import config_errors, config_from_dict, registry, stage_fit, stage_names
from rlhf_studio.ui.monitor_view import chart_metrics
from rlhf_studio.workspace import Workspace

TOY_DIR = Path(__file__).parent / "toy_stage"
sys.path.insert(0, str(TOY_DIR))
import toy  # noqa: E402

DEMO = REPO / "assets" / "demo"
TRAINING_MS = 300_000


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setattr(registry, "STAGES", [*registry.STAGES, toy.STAGE])


def toy_env(**extra: str) -> dict[str, str]:
    """The environment of a process that registers the toy stage at start-up (and finds the studio)."""
    path = os.pathsep.join(filter(None, [str(TOY_DIR), str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_the_registry_alone_makes_the_toy_stage_a_stage(toy_registered, workspace, capsys):
    assert stage_names()[-1] == "toy"
    config = config_from_dict({"stage": "toy", "model": "m", "dataset": "d", "toy_weight": 0})
    assert isinstance(config, toy.ToyJobConfig)
    assert "toy_weight: must be above 0" in config_errors(config)
    with pytest.raises(ConfigError, match="toy_wieght: unknown key \\(did you mean 'toy_weight'\\?\\)"):
        config_from_dict({"stage": "toy", "toy_wieght": 1})
    fits, reason = stage_fit("sft", "toy")
    assert fits and reason.startswith("toy trains on demonstrations")
    assert stage_fit("preference", "toy")[0] is False
    assert set(command_text(config, workspace, gpus=2).cluster) == {"ddp", "fsdp"}
    assert chart_metrics("toy", ["loss", "grad_norm", "learning_rate"], []) == ["grad_norm", "loss"]

    assert main(["data", "check", str(DEMO / "preference.jsonl"), "--stage", "toy", "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["stage_fits"] is False
    assert main(["data", "import", str(DEMO / "sft.jsonl"), "--name", "demo-sft", "--stage", "toy"]) == 0


@pytest.mark.slow
def test_the_cli_trains_the_toy_stage(workspace, tiny_model_dir, tmp_path, toy_registered):
    import_dataset(workspace, DEMO / "sft.jsonl", "demo-sft")
    config_file = tmp_path / "toy.yaml"
    save_config(toy.ToyJobConfig(model=str(tiny_model_dir), dataset="demo-sft", max_length=64), config_file)
    train = [sys.executable, "-m", "rlhf_studio", "train", str(config_file)]
    result = subprocess.run(train, env=toy_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = list_runs(workspace)
    assert (row.stage, row.state) == ("toy", COMPLETED)
    rows = [json.loads(line) for line in (run_dir(workspace, row.run_id) / METRICS_FILE).open()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    card = report_card(workspace, row.run_id)
    assert set(card["learning"]) == {"loss"}


@pytest.mark.slow
@needs_chromium
def test_the_toy_stage_in_the_app(tmp_path, tiny_model_dir):
    root = tmp_path / "workspace"
    import_dataset(Workspace.at(root), DEMO / "sft.jsonl", "demo-sft")
    env = {"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir), "PYTHONPATH": toy_env()["PYTHONPATH"]}
    try:
        with running_studio(root, env=env) as url, chromium_page() as page:
            page.goto(url)
            page.get_by_role("tab", name="Train").click()
            page.locator("#train-stage").get_by_role("radio", name="Toy", exact=True).check()
            expect(page.locator("#train-data-toy input")).to_have_value("demo-sft")
            page.get_by_text("Toy settings").click()
            page.locator("#setting-toy-weight input").fill("0")
            page.locator("#setting-max-length input").fill("64")
            page.locator("#train-start").click()
            expect(page.locator("#train-message")).to_contain_text("toy_weight: must be above 0")
            page.locator("#setting-toy-weight input").fill("2")
            page.locator("#train-start").click()
            expect(page.locator("#train-message")).to_contain_text("Started")

            page.get_by_role("tab", name="Monitor").click()
            expect(page.locator("#monitor-progress")).to_contain_text("completed", timeout=TRAINING_MS)
            assert first_chart_titles(page) == ["grad_norm", "loss"]
            (row,) = list_runs(Workspace.at(root))
            screenshot(page, "monitor-tab-toy-stage")

            page.get_by_role("tab", name="Train").click()
            page.locator("#train-model input").click()
            offered = page.get_by_role("option", name=f"run:{row.run_id} · toy on demo-sft")
            expect(offered).to_be_visible()
            page.get_by_role("tab", name="Chat").click()
            expect(page.locator("#chat-model-b input")).to_have_value(re.compile(row.run_id))
        status = read_status(run_dir(Workspace.at(root), row.run_id))
        assert (status.stage, status.state) == ("toy", COMPLETED)
    finally:
        stop_leftover_runs(root)
