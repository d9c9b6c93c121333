"""`report_to: tensorboard` on a TRL stage (SFT) and on our own PPO: both write event files into the run
folder's tensorboard/ with the same metric names the Monitor tab plots."""

from __future__ import annotations

from test_ppo_train import low_token_reward
from test_ppo_train import tiny_config as tiny_ppo_config
from test_training_common import SFT_ROWS, add_dataset, tiny_config

from rlhf_studio.data import import_dataset
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.training import run_stage
from rlhf_studio.training.ppo.loop import train


def scalar_tags(folder) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_sft_reports_to_tensorboard_in_the_run_folder(tiny_model_dir, workspace, monkeypatch):
    dataset = add_dataset(workspace, "demo-sft", SFT_ROWS)
    run_dir = workspace.runs_dir / "sft-tb"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(run_dir / "tensorboard"))  # restored afterwards
    run_stage(tiny_config(SFTJobConfig, tiny_model_dir, dataset, report_to="tensorboard"), run_dir, workspace)
    assert "train/loss" in scalar_tags(run_dir / "tensorboard")


def test_ppo_reports_to_tensorboard_in_the_run_folder(tiny_model_dir, workspace):
    import_dataset(workspace, "assets/demo/prompts.jsonl", "prompts", eval_fraction=0.0)
    run_dir = workspace.runs_dir / "ppo-tb"
    train(
        tiny_ppo_config(tiny_model_dir, report_to="tensorboard"),
        run_dir,
        workspace,
        reward_fn=low_token_reward,
    )
    tags = scalar_tags(run_dir / "tensorboard")
    assert {"objective/scores", "objective/kl", "loss/policy"} <= tags, tags
