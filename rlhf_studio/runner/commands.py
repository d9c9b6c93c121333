"""The terminal equivalent of what the Train tab would start: a config's YAML and the commands that run it.

    text = command_text(config, workspace)   # YAML + `python -m rlhf_studio train CONFIG.yaml` + accelerate
    print(text.single)                       # RLHF_STUDIO_HOME=/path/ws python -m rlhf_studio train dpo.yaml
    print(text.cluster["fsdp"])              # accelerate launch --config_file configs/accelerate/fsdp.yaml
    print("\n".join(shell_lines(text)))      # all of them, commented, as the UI shows them

The YAML is exactly what `save_config` writes (what "Save config" downloads), so copying the text into a file
and running the printed line trains the same run. RLHF_STUDIO_HOME is part of the line because a `run:<id>`
model and a dataset name only mean something inside this workspace.

The cluster lines name the accelerate configs in the repository's configs/accelerate/ (DDP, FSDP2, DeepSpeed
ZeRO-2/3), relative to the studio's folder, where they are run from. A stage that runs under fewer of them
says so in its `launch` (PPO, the studio's own loop: DDP only).
"""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config import JobConfig, save_config
from rlhf_studio.stages import find_stage
from rlhf_studio.workspace import Workspace

EXAMPLE_GPU_COUNT = 2  # what the multi-GPU line shows on a machine with fewer GPUs than that
ACCELERATE_CONFIGS = "configs/accelerate"  # in the repository, relative to where the commands run
CLUSTER_CONFIGS = {
    "ddp": "DDP: a full copy of the model per GPU (also runs CPU processes)",
    "fsdp": "FSDP2: parameters, gradients and optimizer state sharded across the GPUs",
    "deepspeed_zero2": "DeepSpeed ZeRO-2: optimizer state and gradients sharded (pip install deepspeed)",
    "deepspeed_zero3": "DeepSpeed ZeRO-3: parameters sharded too (pip install deepspeed)",
}
MULTI_NODE_FLAGS = (
    "--num_machines 2 --machine_rank 0 --main_process_ip MAIN_MACHINE_IP --main_process_port 29500"
)


@dataclass(frozen=True)
class CommandText:
    file_name: str  # what the YAML is called in the commands, e.g. dpo-demo-prefs.yaml
    yaml: str
    single: str  # one process: CPU, or one GPU
    multi: str  # several GPUs under accelerate (DDP)
    cluster: dict[str, str]  # accelerate config name (ddp, fsdp, ...) -> the line that launches with it


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


def cluster_configs(stage: str) -> tuple[str, ...]:
    """The accelerate configs a stage can be launched with (its `launch`; every one unless it says)."""
    known = find_stage(stage)
    return known.launch if known and known.launch else tuple(CLUSTER_CONFIGS)


def cluster_command(file_name: str, workspace: Workspace, processes: int, kind: str) -> str:
    config_file = f"{ACCELERATE_CONFIGS}/{kind}.yaml"
    launch = f"accelerate launch --config_file {config_file} --num_processes {processes}"
    return f"{home(workspace)} {launch} -m rlhf_studio train {shlex.quote(file_name)}"


def command_text(
    config: JobConfig, workspace: Workspace, gpus: int | None = None, file_name: str | None = None
) -> CommandText:
    """The YAML and the command lines; the accelerate lines use this machine's GPU count when it has 2+."""
    gpus = gpu_count() if gpus is None else gpus
    processes = gpus if gpus >= 2 else EXAMPLE_GPU_COUNT
    file_name = file_name or config_file_name(config)
    return CommandText(
        file_name=file_name,
        yaml=config_yaml(config, file_name),
        single=train_command(file_name, workspace),
        multi=accelerate_command(file_name, workspace, processes),
        cluster={
            kind: cluster_command(file_name, workspace, processes, kind)
            for kind in cluster_configs(config.stage)
        },
    )


def shell_lines(text: CommandText) -> list[str]:
    """Every command line with a comment above it, as the UI shows them."""
    lines = [
        f"# one process (CPU or one GPU); save the YAML as {text.file_name}",
        text.single,
        "# several GPUs of this machine (one process per GPU)",
        text.multi,
        f"# with an accelerate config from {ACCELERATE_CONFIGS}/, run from the studio's folder",
    ]
    for kind, line in text.cluster.items():
        lines += [f"# {CLUSTER_CONFIGS[kind]}", line]
    lines += [
        "# several machines: the same line on every machine, --num_processes counting every GPU of every",
        f"# machine, plus {MULTI_NODE_FLAGS} (1, 2, ... on the others)",
    ]
    return lines
