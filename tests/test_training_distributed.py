"""The accelerate command the UI shows (DDP config), run as shown with two CPU processes: one run, its metrics
and model written once."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_training_common import PREFERENCE_ROWS, add_dataset, read_metrics, tiny_config

from rlhf_studio.runner.commands import command_text
from rlhf_studio.runner.runs import COMPLETED, read_status
from rlhf_studio.stages.dpo import DPOJobConfig

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_shown_ddp_command_trains_one_run_with_two_processes(tiny_model_dir, workspace, tmp_path):
    add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(
        DPOJobConfig, tiny_model_dir, "prefs", max_steps=3, save_steps=2, per_device_train_batch_size=2
    )
    config.lora.enabled = True
    text = command_text(config, workspace, gpus=0)
    (tmp_path / text.file_name).write_text(text.yaml)  # what the UI says to do with the YAML
    (tmp_path / "configs").symlink_to(REPO / "configs")  # run from "the studio's folder"
    # The line exactly as shown, plus a free port so that it never meets another test's processes. On a
    # machine without GPUs the ddp config starts the processes on the CPU, where they join over gloo.
    line = text.cluster["ddp"].replace(
        "accelerate launch ", f"accelerate launch --main_process_port {free_port()} ", 1
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # this venv's accelerate
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    finished = subprocess.run(
        line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    [run_dir] = workspace.runs_dir.iterdir()  # one run folder, made by the main process only
    assert read_status(run_dir).state == COMPLETED
    rows = read_metrics(run_dir)
    train_rows = [row for row in rows if "loss" in row]
    assert [row["step"] for row in train_rows] == [1, 2, 3]
    assert train_rows[-1]["epoch"] == 1.0  # 12 pairs in 3 steps of 2 x 2: both processes took part
    assert sum("train_runtime" in row for row in rows) == 1
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    assert not list(run_dir.glob(".*partial"))
