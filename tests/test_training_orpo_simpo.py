"""ORPO and SimPO on the tiny model: preference pairs, no reference model, metrics under TRL's names."""

import pytest
from test_training_common import (
    PREFERENCE_ROWS,
    add_dataset,
    assert_every_weight_changed,
    read_metrics,
    tiny_config,
    weights,
)

from rlhf_studio.stages import config_errors
from rlhf_studio.stages.orpo import ORPOJobConfig
from rlhf_studio.stages.simpo import SimPOJobConfig
from rlhf_studio.training import run_stage

METRICS = {
    ORPOJobConfig: {
        "loss",
        "nll_loss",
        "log_odds_ratio",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
    },
    SimPOJobConfig: {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"},
}


@pytest.mark.parametrize("config_class", [ORPOJobConfig, SimPOJobConfig], ids=["orpo", "simpo"])
def test_logs_trl_metrics_and_trains_every_weight(tiny_model_dir, workspace, config_class):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(config_class, tiny_model_dir, dataset, use_eval_split=True, eval_steps=3)
    run_dir = workspace.runs_dir / config.stage
    summary = run_stage(config, run_dir, workspace)

    rows = read_metrics(run_dir)
    train_rows = [row for row in rows if "loss" in row]
    assert len(train_rows) == 3 and all(METRICS[config_class] <= row.keys() for row in train_rows)
    eval_rows = [row for row in rows if "eval_loss" in row]
    assert eval_rows[-1]["eval_rewards/margins"] > eval_rows[0]["eval_rewards/margins"]
    assert summary["global_step"] == 3
    assert_every_weight_changed(weights(tiny_model_dir), weights(run_dir / "model"))


@pytest.mark.parametrize("config_class", [ORPOJobConfig, SimPOJobConfig], ids=["orpo", "simpo"])
def test_a_lora_run_saves_only_the_adapter(tiny_model_dir, workspace, config_class):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS)
    config = tiny_config(config_class, tiny_model_dir, dataset, max_steps=2)
    config.lora.enabled = True
    run_dir = workspace.runs_dir / f"{config.stage}-lora"
    run_stage(config, run_dir, workspace)
    names = sorted(path.name for path in (run_dir / "model").iterdir())
    assert "adapter_model.safetensors" in names and "model.safetensors" not in names


def test_bad_settings_are_named():
    assert "beta: must be above 0" in config_errors(ORPOJobConfig(model="m", dataset="d", beta=0))
    errors = config_errors(SimPOJobConfig(model="m", dataset="d", simpo_gamma=-1, cpo_alpha=-0.5))
    assert {"simpo_gamma: must be 0 or more", "cpo_alpha: must be 0 or more"} <= set(errors)
