import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import build_last_token_reward_dir, build_tiny_model_dir  # noqa: E402

from rlhf_studio.workspace import Workspace  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random causal LM with a locally built tokenizer, saved as a safetensors folder."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def known_reward_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A reward model with known answers: +4 for a text ending in '!', -4 for one ending in '?'."""
    return build_last_token_reward_dir(tiny_model_dir, tmp_path_factory.mktemp("known-reward"))


@pytest.fixture
def stand_in(tmp_path) -> str:
    """A stand-in for the training's python: takes its arguments (the run folder is the 6th) and prints a step
    every 0.05 s until RUN/release exists. JobManager(workspace, python=stand_in) queues without training."""
    script = tmp_path / "stand-in-python"
    script.write_text('#!/bin/sh\nwhile [ ! -e "$6/release" ]; do echo step; sleep 0.05; done\n')
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
    """An empty workspace; child processes find it through RLHF_STUDIO_HOME. The training lock is the test's
    own, so that tests never wait for a training the developer runs on the same machine."""
    monkeypatch.setenv("RLHF_STUDIO_HOME", str(tmp_path / "workspace"))
    monkeypatch.setenv("RLHF_STUDIO_TRAINING_LOCK", str(tmp_path / "training.lock"))
    return Workspace.at(tmp_path / "workspace")


@pytest.fixture(scope="session")
def tiny_reward_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A sequence classifier (random one-output head) on the tiny model: a stand-in reward-model run."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-reward")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture
def manager(workspace):
    """A job runner on the test's workspace, shut down afterwards."""
    from rlhf_studio.runner.jobs import JobManager

    manager = JobManager(workspace)
    yield manager
    manager.shutdown()
