"""PPO under `accelerate launch` with two CPU processes: one run, metrics and model written once."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_studio.data import import_dataset

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import os
import sys
from pathlib import Path

from rlhf_studio.config import LoraSettings
from rlhf_studio.stages.ppo import PPOJobConfig
from rlhf_studio.training.ppo.loop import train
from rlhf_studio.workspace import Workspace


def low_token_reward(responses):
    return ((responses.tokens < 100) & responses.mask).float().sum(dim=1)


config = PPOJobConfig(
    model=sys.argv[1], dataset="prompts", max_steps=3, save_steps=2, learning_rate=3e-3, response_length=8,
    per_device_train_batch_size=2, num_mini_batches=2, lora=LoraSettings(enabled=False),
)
summary = train(config, Path(sys.argv[2]), Workspace.from_env(), reward_fn=low_token_reward)
rank = os.environ["RANK"]  # a file per process: their prints interleave on the shared stdout
(Path(sys.argv[3]) / f"steps-{rank}").write_text(str(summary["global_step"]))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_one_ppo_run(tiny_model_dir, workspace, tmp_path):
    import_dataset(workspace, "assets/demo/prompts.jsonl", "prompts", eval_fraction=0.0)
    (tmp_path / "train.py").write_text(SCRIPT)
    run_dir = workspace.runs_dir / "ppo-ddp"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        str(tmp_path / "train.py"), str(tiny_model_dir), str(run_dir), str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [(tmp_path / f"steps-{rank}").read_text() for rank in (0, 1)] == ["3", "3"]  # both ran every step
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert rows[-1]["epoch"] == pytest.approx(3 * 4 * 2 / 60)  # 4 prompts per process per step, 60 prompts
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir() if path.name[0] != ".") == [
        "checkpoint-2"
    ]
    assert (run_dir / "model" / "model.safetensors").is_file()
    assert not list(run_dir.glob(".*partial"))
