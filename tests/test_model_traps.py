"""Model folders that must not load: a config asking for remote code, a pickle checkpoint, a pickle adapter.

Each trap writes a marker file if any of its code runs. Every loader refuses them with a sentence unless the
operator started the app with --trust-remote-code (remote code only; pickles are always refused), and no
marker is ever written: the engine's loaders, the chat cache, the training start, the Train tab's checks and
the Chat tab's handler. The real app with and without the flag is in test_security.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import gradio as gr
import pytest
import torch

from rlhf_studio.chat import GenerationSettings, ModelCache
from rlhf_studio.models import (
    TRUST_REMOTE_CODE_ENV,
    ModelError,
    load_causal_lm,
    load_tokenizer,
    resolve_model,
)
from rlhf_studio.runner.pipelines import PipelineRunner
from rlhf_studio.runner.runs import COMPLETED, create_run, finish_status, run_dir
from rlhf_studio.stages import config_errors
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.training.common import CAUSAL, REWARD, load_model_chain, load_starting_point
from rlhf_studio.ui.chat_tab import ChatTab

# -- model folders that must not load


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def remote_code_folder(tiny_model_dir: Path, target: Path, marker: Path) -> Path:
    """The tiny model whose config.json maps AutoModelForCausalLM to evil.py, which writes `marker` when it
    is imported, then defines a working model class."""
    folder = copy_model(tiny_model_dir, target)
    (folder / "evil.py").write_text(
        "from pathlib import Path\n\n"
        f"Path({str(marker)!r}).write_text('remote code ran')\n\n"
        "from transformers import LlamaForCausalLM\n\n\n"
        "class EvilModel(LlamaForCausalLM):\n    pass\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


class Unpickled:
    """A pickle trap: unpickling it runs exec, which writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


def pickle_folder(tiny_model_dir: Path, target: Path, marker: Path, adapter: bool = False) -> Path:
    """The tiny model's config and tokenizer with a pickle checkpoint (a trap) instead of safetensors; with
    adapter=True a LoRA adapter folder whose adapter_model.bin is the trap."""
    folder = copy_model(tiny_model_dir, target)
    (folder / "model.safetensors").unlink()
    if adapter:
        (folder / "config.json").unlink()
        adapter_config = {"peft_type": "LORA", "base_model_name_or_path": str(tiny_model_dir), "r": 4}
        (folder / "adapter_config.json").write_text(json.dumps(adapter_config))
    name = "adapter_model.bin" if adapter else "pytorch_model.bin"
    torch.save({"weight": Unpickled(marker)}, folder / name)
    return folder


@pytest.fixture
def traps(tmp_path, tiny_model_dir) -> dict:
    markers = {name: tmp_path / f"{name}.marker" for name in ("remote", "pickle", "adapter")}
    return {
        "markers": markers,
        "remote": remote_code_folder(tiny_model_dir, tmp_path / "remote-code", markers["remote"]),
        "pickle": pickle_folder(tiny_model_dir, tmp_path / "pickled", markers["pickle"]),
        "adapter": pickle_folder(tiny_model_dir, tmp_path / "pickled-adapter", markers["adapter"], True),
    }


def test_the_traps_are_real(tmp_path, tiny_model_dir):
    """Unpickling the trap writes its marker: its absence elsewhere means nothing was unpickled."""
    marker = tmp_path / "sprung.marker"
    folder = pickle_folder(tiny_model_dir, tmp_path / "sprung", marker)
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.read_text() == "unpickled"


# -- the engine refuses them without running any of their code


def test_remote_code_and_pickles_are_refused_by_every_loader(workspace, traps, monkeypatch):
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    cache = ModelCache(workspace, device="cpu")
    reasons = {"remote": "--trust-remote-code", "pickle": "safetensors only", "adapter": "safetensors only"}
    for name, reason in reasons.items():
        spec = str(traps[name])
        loaders = {
            "resolve_model": lambda spec=spec: resolve_model(spec, workspace),
            "load_tokenizer": lambda spec=spec: load_tokenizer(spec, workspace),
            "load_causal_lm": lambda spec=spec: load_causal_lm(spec, workspace),
            "chat cache": lambda spec=spec: cache.load(spec),
            "reward scorer cache": lambda spec=spec: cache.load(spec, head=REWARD),
            "training start": lambda spec=spec: load_starting_point(
                SFTJobConfig(model=spec, dataset="d"), workspace, CAUSAL
            ),
        }
        for loader, load in loaders.items():
            with pytest.raises(ModelError, match=re.escape(reason)):
                load()
            assert not traps["markers"][name].exists(), f"{name} ran in {loader}"
        errors = config_errors(SFTJobConfig(model=spec, dataset="d"), workspace)  # the Train tab's Start
        assert any(line.startswith("model:") and reason in line for line in errors), errors
    assert cache.loaded() == []


def test_a_run_whose_model_is_a_pickle_is_refused(workspace, traps):
    run_id = create_run(workspace, SFTJobConfig(model="m", dataset="d"))
    shutil.copytree(traps["pickle"], run_dir(workspace, run_id) / "model")
    finish_status(run_dir(workspace, run_id), COMPLETED)
    with pytest.raises(ModelError, match="safetensors only"):
        load_causal_lm(f"run:{run_id}", workspace)
    assert not traps["markers"]["pickle"].exists()


def test_loading_below_the_checks_still_reads_safetensors_only(workspace, traps):
    """load_model_chain trusts its caller to have resolved the folder; even so it never unpickles."""
    with pytest.raises(ModelError, match="Could not load"):
        load_model_chain(str(traps["pickle"]), CAUSAL, {}, workspace)
    assert not traps["markers"]["pickle"].exists()


def test_a_tokenizer_that_asks_for_its_own_code_loads_without_running_it(workspace, tmp_path, tiny_model_dir):
    marker = tmp_path / "tokenizer.marker"
    folder = copy_model(tiny_model_dir, tmp_path / "custom-tokenizer")
    (folder / "evil_tokenizer.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_tokenizer(str(folder), workspace).chat_template
    assert not marker.exists()


def test_the_chat_tab_shows_why_and_runs_nothing(workspace, traps, manager, monkeypatch):
    monkeypatch.delenv(TRUST_REMOTE_CODE_ENV, raising=False)
    with gr.Blocks():
        view = ChatTab(PipelineRunner(manager, poll_seconds=None), ModelCache(workspace, device="cpu"))
    settings = GenerationSettings(max_new_tokens=4, greedy=True)
    inputs = {
        view.arena: None, view.count: 3, view.blind: False, view.reward: "", view.message: "Hi",
        view.system: "", view.temperature: settings.temperature, view.top_p: settings.top_p,
        view.max_new: settings.max_new_tokens, view.seed: 0, view.greedy: True,
        view.models[0]: str(traps["remote"]), view.models[1]: str(traps["pickle"]),
        view.models[2]: str(traps["adapter"]),
    }  # fmt: skip
    footers = {}
    for update in view.on_send(inputs, progress=lambda *args, **kwargs: None):
        footers.update({footer: text for footer, text in update.items() if footer in view.footers})
    remote, pickled, adapter = (footers[footer] for footer in view.footers)
    assert "asks to run its own Python code" in remote and "--trust-remote-code" in remote
    assert "safetensors only" in pickled and "safetensors only" in adapter
    assert not any(marker.exists() for marker in traps["markers"].values())
