"""Export tab in a real browser: a finished LoRA run is exported and its zip downloaded; the cluster section
shows the accelerate line that commands.py builds for the run's config (test_training_distributed runs it)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from browser import chromium_page, needs_chromium, running_studio, screenshot
from playwright.sync_api import expect
from test_chat_engine import lora_run
from test_export import completed

from rlhf_studio.runner.commands import command_text
from rlhf_studio.stages import load_config
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.workspace import Workspace


@pytest.mark.slow
@needs_chromium
def test_a_finished_run_is_exported_as_a_zip_and_its_cluster_commands_are_shown(tmp_path, tiny_model_dir):
    workspace = Workspace.at(tmp_path / "workspace")
    spec = lora_run(workspace, tiny_model_dir, "sft-lora", seed=1)
    run_id = completed(workspace, spec, SFTJobConfig(model=str(tiny_model_dir), dataset="demo-sft"))
    shown = command_text(load_config(workspace.runs_dir / run_id / "config.yaml"), workspace).cluster

    with running_studio(workspace.root) as url, chromium_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Export").click()
        expect(page.locator("#export-about")).to_contain_text("SFT on demo-sft")
        commands = page.locator("#export-commands")
        expect(commands).to_contain_text(shown["ddp"])
        expect(commands).to_contain_text("--config_file configs/accelerate/deepspeed_zero3.yaml")

        page.locator("#export-go").click()
        link = page.locator("#export-zip a").first
        expect(link).to_have_attribute("download", f"{run_id}.zip", timeout=120_000)
        with page.expect_download() as download:
            link.click()
        with zipfile.ZipFile(Path(download.value.path())) as archive:
            names = set(archive.namelist())
        assert {
            f"{run_id}/model.safetensors",
            f"{run_id}/README.md",
            f"{run_id}/chat_template.jinja",
        } <= names
        assert not any(name.endswith((".bin", "adapter_config.json")) for name in names)

        page.locator("#export-repo textarea").fill("me/pirate-model")
        page.locator("#export-push").click()  # the test's studio is offline: refused in one sentence
        expect(page.get_by_text("The studio is offline (HF_HUB_OFFLINE=1)")).to_be_visible()
        screenshot(page, "export-tab")
