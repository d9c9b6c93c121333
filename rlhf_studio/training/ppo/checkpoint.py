"""PPO checkpoints and final save. A checkpoint holds everything needed to continue a run exactly:

    checkpoints/checkpoint-<step>/trainable.safetensors  trained policy and critic weights (LoRA: adapters)
                                 /optimizer.pt, scheduler.pt  AdamW and learning-rate schedule state
                                 /rng_state.pt                torch, sampler and shuffler generator states
                                 /trainer_state.json          global_step, beta, health monitor state

It is written under checkpoints/.partial and renamed into place only once complete (as for the other stages).
The frozen parts (reference, reward model, LoRA base) are loaded from their sources again on resume.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rlhf_studio.training.callbacks import publish, published_steps
from rlhf_studio.training.common import STAGING_DIR, replace_folder
from rlhf_studio.workspace import write_json_atomic

TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.json"  # same name and `global_step` key as the Trainer's, read by run_stage


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().cpu() for name, p in module.named_parameters() if p.requires_grad}


def save_checkpoint(folder: Path, keep: int | None, step: int, parts: dict, state: dict) -> None:
    """Write checkpoint-<step> (main process only). parts: actor_critic, optimizer, scheduler, generators."""
    staging = folder / STAGING_DIR
    partial = staging / f"checkpoint-{step}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file(trainable_state(parts["actor_critic"]), partial / TRAINABLE_FILE)
    torch.save(parts["optimizer"].state_dict(), partial / "optimizer.pt")
    torch.save(parts["scheduler"].state_dict(), partial / "scheduler.pt")
    rng = {name: generator.get_state() for name, generator in parts["generators"].items()}
    torch.save({"torch": torch.get_rng_state(), **rng}, partial / "rng_state.pt")
    write_json_atomic(partial / STATE_FILE, {"global_step": step, **state})
    publish(partial, folder / partial.name, staging)
    if keep:
        for old in sorted(published_steps(folder))[:-keep]:
            publish(folder / f"checkpoint-{old}", None, staging)


def load_checkpoint(checkpoint: Path, parts: dict) -> dict:
    """Restore what save_checkpoint wrote into `parts`; return the trainer state (global_step, beta, ...)."""
    weights = load_file(checkpoint / TRAINABLE_FILE)
    module = parts["actor_critic"]
    result = module.load_state_dict(weights, strict=False)
    expected = set(trainable_state(module))
    if result.unexpected_keys or expected - set(weights):
        raise ValueError(
            f"{checkpoint.name} does not match this run's trainable weights (another model or LoRA setting?)"
        )
    parts["optimizer"].load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
    parts["scheduler"].load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    rng = torch.load(checkpoint / "rng_state.pt", weights_only=True)
    torch.set_rng_state(rng.pop("torch"))
    for name, generator in parts["generators"].items():
        generator.set_state(rng[name])
    return json.loads((checkpoint / STATE_FILE).read_text())


def save_models(actor_critic, tokenizer, run_dir: Path, start_source: str, save_value_model: bool) -> None:
    """run_dir/model: the policy (model or LoRA adapter) and tokenizer; run_dir/value_model optionally."""
    from accelerate.utils import is_peft_model

    policy = actor_critic.policy
    if is_peft_model(policy):
        policy.peft_config["default"].base_model_name_or_path = start_source  # for lineage chains
    publish_folder(
        run_dir / "model",
        lambda partial: (policy.save_pretrained(partial), tokenizer.save_pretrained(partial)),
    )
    if not save_value_model:
        return
    if actor_critic.critic is not None:
        publish_folder(run_dir / "value_model", actor_critic.critic.save_pretrained)
    else:
        publish_folder(
            run_dir / "value_model",
            lambda partial: save_file(
                trainable_state(actor_critic.value_head), Path(partial) / "value_head.safetensors"
            ),
        )


def publish_folder(target: Path, write) -> None:
    """Call write(partial folder), then rename it to `target` in one step (replacing an older one)."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write(str(partial))
    replace_folder(partial, target)
