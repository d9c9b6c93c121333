"""Eval tab in a real browser: a reward model with known answers scores 70%, a copy of the base ties on every
held-out prompt with zero KL, and the report table and its CSV download show both results."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from browser import chromium_page, needs_chromium, running_studio, screenshot
from playwright.sync_api import expect

from rlhf_studio.data import import_dataset
from rlhf_studio.runner.runs import COMPLETED, create_run, finish_status, run_dir
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.workspace import Workspace

EVAL_MS = 120_000


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def completed_run(workspace: Workspace, config, model_dir: Path) -> str:
    run_id = create_run(workspace, config)
    shutil.copytree(model_dir, run_dir(workspace, run_id) / "model")
    finish_status(run_dir(workspace, run_id), COMPLETED)
    return run_id


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir, known_reward_dir):
    scratch = tmp_path_factory.mktemp("ui-eval")
    workspace = Workspace.at(scratch / "workspace")
    pairs = [{"prompt": f"Q{i}?", "chosen": f"Yes {i}!", "rejected": f"No {i}?"} for i in range(7)]
    pairs += [{"prompt": f"R{i}?", "chosen": f"Hm {i}?", "rejected": f"Ok {i}!"} for i in range(3)]
    import_dataset(workspace, write_jsonl(scratch / "known.jsonl", pairs), "known-pairs", eval_fraction=0.0)
    prompts = [{"prompt": f"Tell me fact {i}."} for i in range(5)]
    import_dataset(workspace, write_jsonl(scratch / "p.jsonl", prompts), "held-out", eval_fraction=0.0)
    sft_run = completed_run(
        workspace, SFTJobConfig(model=str(tiny_model_dir), dataset="held-out"), tiny_model_dir
    )
    rm_config = RewardJobConfig(model=str(tiny_model_dir), dataset="known-pairs")
    rm_run = completed_run(workspace, rm_config, known_reward_dir)
    with running_studio(workspace.root, env={"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}) as url:
        yield url, sft_run, rm_run


@pytest.mark.slow
@needs_chromium
def test_eval_tab_scores_a_reward_model_judges_a_policy_and_downloads_the_comparison(studio):
    url, sft_run, rm_run = studio
    with chromium_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Eval").click()
        expect(page.locator("#eval-rm-run input")).to_have_value(f"run:{rm_run} · rm on known-pairs")
        expect(page.locator("#eval-rm-data input")).to_have_value("known-pairs")
        page.get_by_label("all", exact=True).check()
        page.locator("#eval-rm-go").click()
        expect(page.locator("#eval-rm-result")).to_contain_text("70.0%", timeout=EVAL_MS)
        expect(page.locator("#eval-rm-result")).to_contain_text("10 pairs")

        expect(page.locator("#eval-candidate input")).to_have_value(f"run:{sft_run} · sft on held-out")
        expect(page.locator("#eval-prompts input")).to_have_value("held-out")
        page.locator("#eval-max-new input").fill("4")
        page.locator("#eval-win-go").click()
        result = page.locator("#eval-win-result")
        expect(result).to_contain_text("Win rate vs", timeout=EVAL_MS)
        expect(result).to_contain_text("5 prompts")
        expect(result).to_contain_text("tie 100.0%")  # the run is a copy of its base: same replies
        expect(page.locator("#eval-samples")).to_contain_text("Tell me fact 0.")
        screenshot(page, "eval-tab-win-rate")

        runs = page.locator("#eval-report-runs input")
        for run_id in (rm_run, sft_run):
            runs.fill(run_id)
            runs.press("Enter")
        page.locator("#eval-report-go").click()
        expect(page.locator("#eval-table")).to_contain_text(sft_run)
        expect(page.locator("#eval-cards")).to_contain_text("Reward-model accuracy")
        link = page.locator("#eval-table-file a").first
        with page.expect_download() as download:
            link.click()
        rows = list(csv.DictReader(Path(download.value.path()).read_text().splitlines()))
        screenshot(page, "eval-tab-report")
    by_run = {row["run_id"]: row for row in rows}
    assert float(by_run[rm_run]["rm_accuracy"]) == pytest.approx(0.7)
    assert float(by_run[sft_run]["tie_rate"]) == 1.0 and abs(float(by_run[sft_run]["mean_kl"])) < 1e-3
