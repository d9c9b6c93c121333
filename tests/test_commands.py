"""'Show command': the YAML is what save_config writes and the lines are what the CLI accepts."""

import shlex
from pathlib import Path

from rlhf_studio.cli import build_parser
from rlhf_studio.cli.train import train_command
from rlhf_studio.runner.commands import command_text, config_file_name, shell_lines
from rlhf_studio.stages import config_from_dict, load_config
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.sft import SFTJobConfig

REPO = Path(__file__).resolve().parents[1]


def test_yaml_round_trips_to_the_same_config(workspace, tmp_path):
    config = DPOJobConfig(model="run:20261122-141501-sft-3f2a", dataset="demo-prefs", beta=0.2, max_steps=7)
    text = command_text(config, workspace, gpus=0)
    assert text.file_name == "dpo-demo-prefs.yaml"
    saved = tmp_path / text.file_name
    saved.write_text(text.yaml)
    assert load_config(saved) == config
    assert text.yaml.startswith("# RLHF Studio dpo job: python -m rlhf_studio train dpo-demo-prefs.yaml")


def test_command_lines_name_the_workspace_and_parse_with_the_real_cli(workspace):
    text = command_text(SFTJobConfig(dataset="my data/v2"), workspace, gpus=0)
    tokens = shlex.split(text.single)
    assert tokens[0] == f"RLHF_STUDIO_HOME={workspace.root}"
    assert tokens[1:5] == ["python", "-m", "rlhf_studio", "train"]
    args = build_parser().parse_args(tokens[4:])
    assert args.func is train_command and args.config == Path(text.file_name) == Path("sft-my-data-v2.yaml")
    multi = shlex.split(text.multi)
    assert multi[1:7] == ["accelerate", "launch", "--num_processes", "2", "-m", "rlhf_studio"]
    assert multi[7:] == ["train", text.file_name]


def test_multi_gpu_line_uses_the_machines_gpu_count(workspace):
    config = config_from_dict({"stage": "rm", "dataset": "prefs"})
    assert "--num_processes 4 " in command_text(config, workspace, gpus=4).multi
    assert "--num_processes 2 " in command_text(config, workspace, gpus=1).multi


def test_file_names_are_safe_and_readable():
    assert config_file_name(SFTJobConfig(dataset="")) == "sft.yaml"
    assert config_file_name(DPOJobConfig(dataset="../etc/passwd")) == "dpo-etc-passwd.yaml"


def test_cluster_lines_launch_the_repos_accelerate_configs_with_the_real_parsers(workspace):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    text = command_text(SFTJobConfig(dataset="prefs"), workspace, gpus=4)
    assert list(text.cluster) == ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]
    expected_types = {
        "ddp": "MULTI_GPU",
        "fsdp": "FSDP",
        "deepspeed_zero2": "DEEPSPEED",
        "deepspeed_zero3": "DEEPSPEED",
    }
    for kind, line in text.cluster.items():
        tokens = shlex.split(line)
        assert tokens[0] == f"RLHF_STUDIO_HOME={workspace.root}" and tokens[1:3] == ["accelerate", "launch"]
        launch = launch_command_parser().parse_args(tokens[3:])
        assert launch.config_file == f"configs/accelerate/{kind}.yaml" and launch.num_processes == 4
        assert launch.module and launch.training_script == "rlhf_studio"
        assert build_parser().parse_args(launch.training_script_args).config == Path(text.file_name)
        config = load_config_from_file(str(REPO / launch.config_file))  # refuses unknown keys
        assert config.distributed_type == expected_types[kind] and config.mixed_precision == "no"
    shown = "\n".join(shell_lines(text))
    assert all(line in shown for line in (text.single, text.multi, *text.cluster.values()))
    assert "--num_machines 2 --machine_rank 0 --main_process_ip" in shown


def test_ppo_is_offered_ddp_only(workspace):
    config = config_from_dict({"stage": "ppo", "dataset": "prompts", "reward_model": "run:rm"})
    assert list(command_text(config, workspace, gpus=0).cluster) == ["ddp"]
