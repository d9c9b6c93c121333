"""KTO on the tiny model: from labelled completions, and from preference pairs split into good and bad."""

import pytest
from test_training_common import (
    PREFERENCE_ROWS,
    add_dataset,
    assert_every_weight_changed,
    read_metrics,
    tiny_config,
    weights,
)

from rlhf_studio.stages import config_errors, kto
from rlhf_studio.stages.kto import KTOJobConfig
from rlhf_studio.training import run_stage

KTO_METRICS = {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl"}
UNPAIRED_ROWS = [
    {"prompt": row["prompt"], "completion": row[reply], "label": reply == "chosen"}
    for row in PREFERENCE_ROWS
    for reply in ("chosen", "rejected")
]


@pytest.mark.parametrize("rows", [UNPAIRED_ROWS, PREFERENCE_ROWS], ids=["unpaired", "pairs"])
def test_kto_logs_rewards_and_trains_every_weight(tiny_model_dir, workspace, rows):
    dataset = add_dataset(workspace, "feedback", rows)
    config = tiny_config(KTOJobConfig, tiny_model_dir, dataset, use_eval_split=True, eval_steps=3)
    run_dir = workspace.runs_dir / "kto"
    summary = run_stage(config, run_dir, workspace)

    metrics = read_metrics(run_dir)
    train_rows = [row for row in metrics if "loss" in row]
    assert len(train_rows) == 3 and all(KTO_METRICS <= row.keys() for row in train_rows)
    eval_rows = [row for row in metrics if "eval_loss" in row]
    assert eval_rows[-1]["eval_rewards/margins"] > eval_rows[0]["eval_rewards/margins"]
    assert summary["global_step"] == 3
    assert_every_weight_changed(weights(tiny_model_dir), weights(run_dir / "model"))


def test_pairs_become_one_desirable_and_one_undesirable_row(tiny_model_dir, workspace):
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS, eval_fraction=0)
    config = tiny_config(KTOJobConfig, tiny_model_dir, dataset)
    config.lora.enabled = True
    trainer = kto.build_trainer(config, workspace.runs_dir / "k", workspace, [])[0]
    assert trainer.ref_model is None  # the adapter-disabled base is the reference
    labels = trainer.train_dataset["label"]
    assert len(labels) == 2 * len(PREFERENCE_ROWS) and sum(labels) == len(PREFERENCE_ROWS)


def test_kto_refuses_a_batch_of_one_and_unknown_losses():
    config = KTOJobConfig(model="m", dataset="d", per_device_train_batch_size=1, loss_type="sigmoid")
    errors = config_errors(config)
    assert any(line.startswith("per_device_train_batch_size: KTO needs at least 2 rows") for line in errors)
    assert "loss_type: must be one of kto, apo_zero_unpaired" in errors
