"""The newer stages stop and resume like the others: one shared loop around each TRL trainer."""

import pytest
from test_training_common import PREFERENCE_ROWS, add_dataset, read_metrics, tiny_config
from test_training_online import PROMPT_ROWS, online_config
from test_training_safety import SigtermAtStep2, with_extra

from rlhf_studio.rewards import RuleRewardSettings
from rlhf_studio.stages.grpo import GRPOJobConfig
from rlhf_studio.stages.kto import KTOJobConfig
from rlhf_studio.stages.orpo import ORPOJobConfig
from rlhf_studio.stages.rloo import RLOOJobConfig
from rlhf_studio.stages.simpo import SimPOJobConfig
from rlhf_studio.training import TrainingStopped, run_stage

LENGTH = RuleRewardSettings(min_words=1, max_words=4)


def config_for(config_class, model, workspace, **overrides):
    if config_class in (GRPOJobConfig, RLOOJobConfig):
        dataset = add_dataset(workspace, "sums", PROMPT_ROWS, eval_fraction=0)
        return online_config(config_class, model, dataset, rewards=LENGTH, **overrides)
    dataset = add_dataset(workspace, "prefs", PREFERENCE_ROWS, eval_fraction=0)
    return tiny_config(config_class, model, dataset, **overrides)


@pytest.mark.parametrize(
    "config_class",
    [KTOJobConfig, ORPOJobConfig, SimPOJobConfig, GRPOJobConfig, RLOOJobConfig],
    ids=["kto", "orpo", "simpo", "grpo", "rloo"],
)
def test_resume_from_a_checkpoint_without_duplicate_rows(tiny_model_dir, workspace, config_class):
    config = config_for(config_class, tiny_model_dir, workspace, max_steps=4, save_steps=2)
    run_dir = workspace.runs_dir / config.stage
    run_stage(config, run_dir, workspace)
    summary = run_stage(config, run_dir, workspace, resume_from=run_dir / "checkpoints" / "checkpoint-2")
    assert [row["step"] for row in read_metrics(run_dir) if "loss" in row] == [1, 2, 3, 4]
    assert summary["global_step"] == 4 and (run_dir / "model").is_dir()


def test_sigterm_stops_a_grpo_run_after_the_current_step(tiny_model_dir, workspace, monkeypatch):
    with_extra(monkeypatch, SigtermAtStep2)
    config = config_for(GRPOJobConfig, tiny_model_dir, workspace, max_steps=20)
    with pytest.raises(TrainingStopped, match="at step 3"):
        run_stage(config, workspace.runs_dir / "grpo-stopped", workspace)
    assert not (workspace.runs_dir / "grpo-stopped" / "model").exists()
