import dataclasses

import pytest
import torch
import yaml

from rlhf_studio.config import ConfigError, field_help, save_config
from rlhf_studio.data import import_dataset
from rlhf_studio.stages import (
    all_stages,
    config_errors,
    config_from_dict,
    get_stage,
    load_config,
    stage_names,
    validate,
)
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.ppo import PPOJobConfig
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.stages.sft import SFTJobConfig


@pytest.mark.parametrize("stage", sorted(stage_names()))
def test_every_stage_default_is_valid_and_round_trips_through_yaml(stage, tmp_path):
    scored = {"reward_model": "run:20261122-141501-rm-3f2a"}  # the RL stages need a reward
    required = {"ppo": scored, "grpo": scored, "rloo": scored}.get(stage, {})
    config = get_stage(stage).config(dataset="demo", **required)
    assert config.stage == stage and config_errors(config) == []
    save_config(config, tmp_path / "job.yaml")
    assert load_config(tmp_path / "job.yaml") == config


def test_yaml_is_plain_and_editable(tmp_path):
    config = DPOJobConfig(dataset="demo", beta=0.2)
    config.lora.enabled = True
    config.lora.target_modules = ["q_proj", "v_proj"]
    save_config(config, tmp_path / "dpo.yaml")
    text = (tmp_path / "dpo.yaml").read_text()
    assert text.startswith("# RLHF Studio dpo job: python -m rlhf_studio train dpo.yaml\nstage: dpo\n")
    assert "lora:\n  enabled: true\n" in text and "beta: 0.2\n" in text
    edited = text.replace("learning_rate: 5.0e-05", "learning_rate: 1e-5")  # YAML reads 1e-5 as a string
    (tmp_path / "dpo.yaml").write_text(edited)
    loaded = load_config(tmp_path / "dpo.yaml")
    assert loaded.learning_rate == 1e-5 and loaded.lora.target_modules == ["q_proj", "v_proj"]


def test_unknown_keys_are_refused_by_name():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"stage": "sft", "lerning_rate": 1e-5, "lora": {"rank": 8}})
    assert caught.value.errors == [
        "lerning_rate: unknown key (did you mean 'learning_rate'?)",
        "lora.rank: unknown key",
    ]


def test_stage_specific_keys_belong_to_their_stage():
    with pytest.raises(ConfigError, match="beta: unknown key"):
        config_from_dict({"stage": "sft", "beta": 0.1})
    assert (
        config_from_dict({"stage": "rm", "center_rewards_coefficient": 0.01}).center_rewards_coefficient
        == 0.01
    )


def test_wrong_types_and_stage_name_the_field():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(
            {"stage": "dpo", "max_steps": 2.5, "learning_rate": "fast", "lora": {"enabled": "yes"}}
        )
    assert caught.value.errors == [
        "max_steps: expected a whole number, got 2.5",
        "learning_rate: expected a number, got 'fast'",
        "lora.enabled: expected true/false, got 'yes'",
    ]
    with pytest.raises(ConfigError, match=f"stage: expected one of {', '.join(stage_names())}, got 'ppo2'"):
        config_from_dict({"stage": "ppo2"})
    with pytest.raises(ConfigError, match="config: expected a mapping"):
        config_from_dict(["stage", "sft"])


def test_validation_lists_every_problem_as_field_and_reason():
    config = DPOJobConfig(
        dataset="", learning_rate=0, per_device_train_batch_size=0, beta=0, loss_type="nope"
    )
    config.lora.r = 0
    errors = config_errors(config)
    assert "dataset: choose a dataset from the library" in errors
    assert "learning_rate: must be above 0 and below 1" in errors
    assert "per_device_train_batch_size: must be at least 1" in errors
    assert "beta: must be above 0" in errors
    assert any(error.startswith("loss_type: must be one of sigmoid") for error in errors)
    assert "lora.r: must be at least 1" in errors
    with pytest.raises(ConfigError) as caught:
        validate(config)
    assert caught.value.errors == errors


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantization_is_refused_without_cuda(bits):
    config = SFTJobConfig(dataset="demo", quantization=bits)
    config.lora.enabled = True
    [error] = config_errors(config)
    assert error.startswith(f"quantization: {bits} loading needs a CUDA GPU (bitsandbytes)")
    assert "set it to none" in error


def test_unknown_quantization_is_refused():
    assert config_errors(SFTJobConfig(dataset="demo", quantization="2bit")) == [
        "quantization: must be one of none, 4bit, 8bit"
    ]


def test_a_tracker_must_be_known_and_installed(monkeypatch):
    assert config_errors(SFTJobConfig(dataset="demo", report_to="no_such_tracker")) == [
        "report_to: unknown tracker 'no_such_tracker'; choose one of "
        "none, tensorboard, wandb, mlflow, trackio, comet_ml, clearml"
    ]
    assert config_errors(SFTJobConfig(dataset="demo", report_to="tensorboard")) == []  # a requirement
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert config_errors(SFTJobConfig(dataset="demo", report_to="wandb")) == [
        "report_to: wandb is not installed here; install it or set none"
    ]


def test_a_run_model_records_its_parent(tmp_path):
    config = RewardJobConfig(model="run:20261122-sft-ab12", dataset="demo")
    assert config.parent_run == "20261122-sft-ab12"
    save_config(config, tmp_path / "rm.yaml")
    assert yaml.safe_load((tmp_path / "rm.yaml").read_text())["parent_run"] == "20261122-sft-ab12"
    mismatch = RewardJobConfig(model="run:a", dataset="demo", parent_run="b")
    assert config_errors(mismatch) == ["parent_run: is b but the model is run:a"]


def test_workspace_checks_find_missing_and_mismatched_data_and_models(workspace, tiny_model_dir):
    source = workspace.root / "pairs.jsonl"
    source.write_text('{"prompt": "Hi?", "chosen": "Ahoy!", "rejected": "Hello."}\n' * 4)
    import_dataset(workspace, source, "pairs")
    assert config_errors(DPOJobConfig(model=str(tiny_model_dir), dataset="pairs"), workspace) == []
    assert config_errors(SFTJobConfig(model=str(tiny_model_dir), dataset="pairs"), workspace) == [
        "dataset: pairs: sft needs demonstrations (prompt/completion, messages or text), but this dataset is "
        "preference"
    ]
    [missing_data, missing_run] = config_errors(DPOJobConfig(model="run:nope", dataset="gone"), workspace)
    assert missing_data.startswith("dataset: no dataset named 'gone'")
    assert (
        missing_run == "model: Run nope has no finished model yet: wait for it to complete or pick another."
    )


def test_every_field_has_help():
    for config_class in (stage.config for stage in all_stages()):
        helps = field_help(config_class)
        config = config_class()
        names = {item.name for item in dataclasses.fields(config_class)}
        for name in names.copy():  # nested settings (lora, rewards): each of their fields too
            value = getattr(config, name)
            if dataclasses.is_dataclass(value):
                names |= {f"{name}.{item.name}" for item in dataclasses.fields(value)}
        assert set(helps) == names and "lora.r" in names
        assert all(helps.values())


def test_ppo_settings_are_checked_by_name():
    config = PPOJobConfig(
        dataset="demo", reward_model="run:rm", top_p=0.0, ptx_coef=0.1, response_length=600, value_model="x"
    )
    assert config_errors(config) == [
        "value_model: must be one of reward_model, policy_head",
        "response_length: must leave at least 8 of max_length (512) tokens for the prompt",
        "top_p: must be above 0 and at most 1",
        "ptx_dataset: choose an SFT dataset",
    ]
    assert config_errors(PPOJobConfig(dataset="demo")) == [
        "reward_model: choose a reward-model run (or a local one)"
    ]


def test_ppo_needs_a_reward_model_and_sft_data_for_ptx(workspace, tiny_model_dir):
    source = workspace.root / "pairs.jsonl"
    source.write_text('{"prompt": "Hi?", "chosen": "Ahoy!", "rejected": "Hello."}\n' * 4)
    import_dataset(workspace, source, "pairs")
    config = PPOJobConfig(
        model=str(tiny_model_dir),
        dataset="pairs",
        reward_model=str(tiny_model_dir),
        ptx_coef=0.5,
        ptx_dataset="pairs",
    )
    assert config_errors(config, workspace) == [
        f"reward_model: {tiny_model_dir} is a language model; pick a reward-model run "
        "(a sequence classifier)",
        "ptx_dataset: pairs: sft needs demonstrations (prompt/completion, messages or text), but this "
        "dataset is preference",
    ]
