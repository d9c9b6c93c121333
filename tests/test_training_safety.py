"""NaN/Inf guard, atomic checkpoints and final model, resume and graceful stop, on the tiny model."""

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_training_common import SFT_ROWS, add_dataset, read_metrics, tiny_config
from transformers import TrainerCallback

import rlhf_studio.training as training
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.training import NonFiniteLossError, TrainingStopped, run_stage
from rlhf_studio.training.common import replace_folder


def with_extra(monkeypatch, make_callback) -> None:
    """Make run_stage's trainers carry one more callback (built from the trainer)."""
    real_builder = training.stage_builder

    def builder(stage):
        def build(*args):
            trainer, source = real_builder(stage)(*args)
            trainer.add_callback(make_callback(trainer))
            return trainer, source

        return build

    monkeypatch.setattr(training, "stage_builder", builder)


def test_nan_loss_stops_training_with_the_step_named(tiny_model_dir, workspace, tmp_path):
    broken = tmp_path / "nan-model"
    shutil.copytree(tiny_model_dir, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["lm_head.weight"] = torch.full_like(tensors["lm_head.weight"], float("nan"))
    save_file(tensors, str(broken / "model.safetensors"), metadata={"format": "pt"})
    dataset = add_dataset(workspace, "sft-rows", SFT_ROWS)
    run_dir = workspace.runs_dir / "nan"

    with pytest.raises(NonFiniteLossError, match="loss is nan at step 1"):
        run_stage(tiny_config(SFTJobConfig, broken, dataset), run_dir, workspace)
    assert read_metrics(run_dir)[0]["loss"] is None  # the NaN row is kept, as strict-JSON null
    assert not (run_dir / "model").exists()


def test_checkpoints_appear_only_when_complete_and_are_pruned(tiny_model_dir, workspace, monkeypatch):
    dataset = add_dataset(workspace, "sft-rows", SFT_ROWS)
    run_dir = workspace.runs_dir / "ckpt"
    seen_while_saving = []

    class Spy(TrainerCallback):
        def __init__(self, trainer):
            original = trainer._save_checkpoint

            def save(model, trial):
                original(model, trial)  # fully written to the staging folder
                name = f"checkpoint-{trainer.state.global_step}"
                seen_while_saving.append((run_dir / "checkpoints" / name).exists())

            trainer._save_checkpoint = save

    with_extra(monkeypatch, Spy)
    config = tiny_config(SFTJobConfig, tiny_model_dir, dataset, max_steps=4, save_steps=1, save_total_limit=2)
    run_stage(config, run_dir, workspace)
    assert seen_while_saving == [False] * 4
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == [
        "checkpoint-3",
        "checkpoint-4",
    ]


def test_resume_continues_from_a_checkpoint_without_duplicate_rows(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "sft-rows", SFT_ROWS)
    run_dir = workspace.runs_dir / "resume"
    config = tiny_config(SFTJobConfig, tiny_model_dir, dataset, max_steps=4, save_steps=2)
    run_stage(config, run_dir, workspace)
    first_losses = {row["step"]: row["loss"] for row in read_metrics(run_dir) if "loss" in row}

    summary = run_stage(config, run_dir, workspace, resume_from=run_dir / "checkpoints" / "checkpoint-2")
    rows = [row for row in read_metrics(run_dir) if "loss" in row]
    assert [row["step"] for row in rows] == [1, 2, 3, 4]
    assert rows[3]["loss"] == pytest.approx(first_losses[4], rel=1e-4)  # same data order and state
    assert summary["global_step"] == 4 and (run_dir / "model" / "model.safetensors").is_file()


class SigtermAtStep2(TrainerCallback):
    """Sends this process SIGTERM at the end of step 2, as `stop` does."""

    def __init__(self, trainer):
        pass

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_training_stops_after_the_current_step(tiny_model_dir, workspace, monkeypatch):
    with_extra(monkeypatch, SigtermAtStep2)
    dataset = add_dataset(workspace, "sft-rows", SFT_ROWS)
    run_dir = workspace.runs_dir / "stopped"
    with pytest.raises(TrainingStopped, match="at step 3"):
        run_stage(tiny_config(SFTJobConfig, tiny_model_dir, dataset, max_steps=20), run_dir, workspace)
    assert max(row["step"] for row in read_metrics(run_dir)) == 3
    assert not (run_dir / "model").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_replacing_a_saved_model_never_leaves_it_half_deleted(tmp_path, monkeypatch):
    target, complete = tmp_path / "model", tmp_path / ".model.partial"
    for folder, content in ((target, "old"), (complete, "new")):
        folder.mkdir()
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (folder / name).write_text(content)
    real_rmtree = shutil.rmtree

    def killed_midway(path, ignore_errors=False):  # the process dies after removing one file
        files = sorted(Path(path).iterdir()) if Path(path).is_dir() else []
        if files:
            files[0].unlink()
            raise KeyboardInterrupt
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        replace_folder(complete, target)
    assert {path.name: path.read_text() for path in target.iterdir()} == {
        "config.json": "new",
        "model.safetensors": "new",
        "tokenizer.json": "new",
    }
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    (tmp_path / ".model.partial").mkdir()
    (tmp_path / ".model.partial" / "config.json").write_text("newer")
    replace_folder(tmp_path / ".model.partial", target)  # the next save clears what the kill left aside
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
