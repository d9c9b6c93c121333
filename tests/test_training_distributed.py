"""Two CPU processes under `accelerate launch` train one run: metrics and the model are written once."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_training_common import PREFERENCE_ROWS, add_dataset, read_metrics, tiny_config

from rlhf_studio.config import DPOJobConfig, save_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from pathlib import Path
from rlhf_studio.config import load_config
from rlhf_studio.training import run_stage
from rlhf_studio.workspace import Workspace

run_stage(load_config(sys.argv[1]), Path(sys.argv[2]), Workspace.from_env())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_metrics_and_model_once(tiny_model_dir, workspace, tmp_path):
    add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(
        DPOJobConfig, tiny_model_dir, "prefs", max_steps=3, save_steps=2, per_device_train_batch_size=2
    )
    config.lora.enabled = True
    save_config(config, tmp_path / "dpo.yaml")
    (tmp_path / "train.py").write_text(SCRIPT)
    run_dir = workspace.runs_dir / "ddp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        str(tmp_path / "train.py"), str(tmp_path / "dpo.yaml"), str(run_dir),
    ]  # fmt: skip
    # `--multi_gpu` starts torchrun, which is what CPU processes need too: accelerate 1.15 runs `--cpu` as one
    # process unless MPI is set up. run_stage passes use_cpu=True, so the processes join over gloo.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]

    rows = read_metrics(run_dir)
    train_rows = [row for row in rows if "loss" in row]
    assert [row["step"] for row in train_rows] == [1, 2, 3]
    assert train_rows[-1]["epoch"] == 1.0  # 12 pairs in 3 steps of 2 x 2: both processes took part
    assert sum("train_runtime" in row for row in rows) == 1
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    assert not list(run_dir.glob(".*partial"))
