"""Shared helpers of the training tests (imported by the other test_training_* files) and tests of the pieces
of rlhf_studio.training.common / callbacks that need no training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf_studio.config import JobConfig, LoraSettings
from rlhf_studio.data import import_dataset
from rlhf_studio.training.callbacks import (
    GracefulStop,
    TrainingStopped,
    finite_or_none,
    publish,
    trim_metrics,
)
from rlhf_studio.training.common import as_conversations, auto_target_modules

SFT_ROWS = [{"prompt": f"What is {n} plus {n}?", "completion": f"It is {2 * n}."} for n in range(16)]
PREFERENCE_ROWS = [
    {
        "prompt": f"What is {n} plus {n}?",
        "chosen": f"Ahoy! It be {2 * n}. Arr!",
        "rejected": f"It is {2 * n}.",
    }
    for n in range(16)
]


def add_dataset(workspace, name: str, rows: list[dict], eval_fraction: float = 0.25) -> str:
    """Store `rows` in the workspace library through the data library's own import."""
    source = workspace.root / f"{name}.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    import_dataset(workspace, source, name, eval_fraction=eval_fraction)
    return name


def tiny_config(config_class: type[JobConfig], model: Path | str, dataset: str, **overrides) -> JobConfig:
    """A few fast steps on the tiny model, full fine-tuning; no evaluation or checkpoints unless asked for."""
    settings = {
        "model": str(model),
        "lora": LoraSettings(enabled=False),
        "dataset": dataset,
        "max_steps": 3,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "use_eval_split": False,
        "save_steps": 1000,
        **overrides,
    }
    return config_class(**settings)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(folder: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(folder / name))


def assert_every_weight_changed(before: dict, after: dict, skip: tuple[str, ...] = ()) -> None:
    """TRL's own check: every trained tensor differs from where it started."""
    shared = [name for name in after if name in before and not name.startswith(skip)]
    assert shared
    unchanged = [name for name in shared if torch.equal(before[name], after[name])]
    assert not unchanged, f"not trained: {unchanged}"


# ---------------------------------------------------------------- tests


def test_auto_target_modules_are_attention_and_mlp_projections(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert auto_target_modules(model) == [
        "down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj",
    ]  # fmt: skip


def test_auto_target_modules_cover_gpt2_conv1d_and_leave_the_head_out():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    assert auto_target_modules(model) == ["c_attn", "c_fc", "c_proj"]


def test_string_prompts_become_one_turn_conversations():
    from datasets import Dataset

    wrapped = as_conversations(Dataset.from_list(PREFERENCE_ROWS[:2]))
    assert wrapped[0]["prompt"] == [{"role": "user", "content": "What is 0 plus 0?"}]
    assert wrapped[0]["chosen"] == [{"role": "assistant", "content": "Ahoy! It be 0. Arr!"}]
    text_rows = Dataset.from_list([{"text": "plain text"}])
    assert as_conversations(text_rows) is text_rows


def test_trim_metrics_keeps_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')  # last line cut by a kill
    trim_metrics(path, after_step=2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_publish_replaces_a_checkpoint_in_one_rename(tmp_path):
    staging, final = tmp_path / ".partial", tmp_path / "checkpoints"
    staging.mkdir()
    final.mkdir()
    (staging / "checkpoint-2").mkdir()
    (staging / "checkpoint-2" / "new").write_text("new")
    (final / "checkpoint-2").mkdir()
    (final / "checkpoint-2" / "old").write_text("old")
    publish(staging / "checkpoint-2", final / "checkpoint-2", staging)
    assert [path.name for path in (final / "checkpoint-2").iterdir()] == ["new"]
    assert list(staging.iterdir()) == []


def test_non_finite_values_are_written_as_null():
    assert json.dumps({"loss": finite_or_none(float("nan"))}) == '{"loss": null}'
    assert finite_or_none(1.5) == 1.5


def test_sigterm_outside_the_training_loop_stops_at_once():
    import os
    import signal

    assert issubclass(TrainingStopped, KeyboardInterrupt)  # the runner reports it as cancelled
    stop = GracefulStop()
    with pytest.raises(TrainingStopped), stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
    with stop.installed(), stop.training_loop():
        os.kill(os.getpid(), signal.SIGTERM)  # inside the loop: only remembered
    assert stop.requested
