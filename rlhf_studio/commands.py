"""The terminal equivalent of what the Train tab would start: a config's YAML and the commands that run it.

    text = command_text(config, workspace)   # YAML + `python -m rlhf_studio train CONFIG.yaml` + accelerate
    print(text.single)                       # RLHF_STUDIO_HOME=/path/ws python -m rlhf_studio train dpo.yaml

The YAML is exactly what `save_config` writes (what "Save config" downloads), so copying the text into a file
and running the printed line trains the same run. RLHF_STUDIO_HOME is part of the line because a `run:<id>`
model and a dataset name only mean something inside this workspace.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config import JobConfig, save_config
from rlhf_studio.workspace import Workspace

EXAMPLE_GPU_COUNT = 2  # what the multi-GPU line shows on a machine with fewer GPUs than that


@dataclass(frozen=True)
class CommandText:
    file_name: str  # what the YAML is called in the commands, e.g. dpo-demo-prefs.yaml
    yaml: str
    single: str  # one process: CPU, or one GPU
    multi: str  # several GPUs under accelerate (DDP)


def config_file_name(config: JobConfig) -> str:
    """A readable file name for a config: <stage>-<dataset>.yaml."""
    dataset = re.sub(r"[^\w-]+", "-", config.dataset).strip("-_")
    return f"{config.stage}-{dataset}.yaml" if dataset else f"{config.stage}.yaml"


def config_yaml(config: JobConfig, file_name: str | None = None) -> str:
    """The YAML text `save_config` writes for this config (its header names the file)."""
    name = file_name or config_file_name(config)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        save_config(config, path)
        return path.read_text(encoding="utf-8")


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def home(workspace: Workspace) -> str:
    return f"RLHF_STUDIO_HOME={shlex.quote(str(workspace.root))}"


def train_command(file_name: str, workspace: Workspace) -> str:
    return f"{home(workspace)} python -m rlhf_studio train {shlex.quote(file_name)}"


def accelerate_command(file_name: str, workspace: Workspace, processes: int) -> str:
    launch = f"accelerate launch --num_processes {processes} -m rlhf_studio train {shlex.quote(file_name)}"
    return f"{home(workspace)} {launch}"


def command_text(
    config: JobConfig, workspace: Workspace, gpus: int | None = None, file_name: str | None = None
) -> CommandText:
    """The YAML and both command lines; the multi-GPU line uses this machine's GPU count when it has 2+."""
    gpus = gpu_count() if gpus is None else gpus
    file_name = file_name or config_file_name(config)
    return CommandText(
        file_name=file_name,
        yaml=config_yaml(config, file_name),
        single=train_command(file_name, workspace),
        multi=accelerate_command(file_name, workspace, gpus if gpus >= 2 else EXAMPLE_GPU_COUNT),
    )
