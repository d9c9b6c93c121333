"""What every stage shares: the starting model (with its lineage), data splits, precision, LoRA, 4/8-bit,
the TrainingArguments fields common to TRL's configs, and the final save.

Lineage: `model: run:<id>` starts from that run's `model/` folder. A full-model run loads directly. An adapter
run is loaded as its base plus the adapter, merged (`merge_and_unload`), so that the new stage trains (or adds
its own adapter) on exactly the model the user chatted with; for DPO that merged model is also the reference.
An adapter's `base_model_name_or_path` names the folder it was trained on, which may itself be an adapter run:
the chain is followed down to a full model. A reward stage started from a causal LM keeps its body and gets a
new one-output head (AutoModelForSequenceClassification, num_labels=1).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState

from rlhf_studio.config import JobConfig
from rlhf_studio.models import (
    ModelError,
    device_precision,
    load_tokenizer,
    resolve_model,
    trust_remote_code_allowed,
)
from rlhf_studio.workspace import Workspace

CAUSAL, REWARD = "causal", "reward"
OUTPUT_HEADS = {"lm_head", "score", "classifier", "embed_out", "output"}  # never get LoRA adapters
ROUTERS = {"gate", "router"}  # mixture-of-experts routers: tiny, and adapting them destabilises routing
STAGING_DIR = ".partial"  # inside checkpoints/: the trainer writes here, complete checkpoints are renamed out


def cpu_only() -> bool:
    """No CUDA or Apple GPU: train on the CPU, and let several launched processes meet over gloo."""
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def process_state() -> PartialState:
    """This process's place in an `accelerate launch` (rank, main or not); one process when not launched.

    Without cpu=True, accelerate sees no distributed setup on a CPU-only machine, even when launched.
    """
    return PartialState(cpu=cpu_only())


@dataclass
class StartingPoint:
    source: str  # resolved folder or hub id of `config.model`
    model: Any
    tokenizer: Any


# ---------------------------------------------------------------- model and tokenizer


def load_starting_point(config: JobConfig, workspace: Workspace, head: str) -> StartingPoint:
    from transformers import set_seed

    source = resolve_model(config.model, workspace)
    tokenizer = load_tokenizer(config.model, workspace)
    set_seed(config.seed)  # a new reward head is random: make it reproducible
    model = load_model_chain(source, head, model_load_kwargs(config), workspace)
    return StartingPoint(source=source, model=model, tokenizer=tokenizer)


def load_model_chain(source: str, head: str, load_kwargs: dict[str, Any], workspace: Workspace):
    """Load `source` with the given head; an adapter folder is loaded as its base plus the adapter, merged."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    adapter_file = Path(source) / "adapter_config.json"
    if adapter_file.is_file():
        if "quantization_config" in load_kwargs:
            raise ModelError(
                "4-bit/8-bit training cannot start from an adapter run (its adapter would be merged into "
                "quantized weights): start from its base model, or train without quantization."
            )
        base_source = resolve_model(
            json.loads(adapter_file.read_text())["base_model_name_or_path"], workspace
        )
        return merge_adapter(load_model_chain(base_source, head, load_kwargs, workspace), source, head)
    auto_class = AutoModelForCausalLM if head == CAUSAL else AutoModelForSequenceClassification
    extra = {"num_labels": 1} if head == REWARD else {}
    try:
        return auto_class.from_pretrained(
            source,
            use_safetensors=True,
            trust_remote_code=trust_remote_code_allowed(),
            **extra,
            **load_kwargs,
        )
    except OSError as error:
        raise ModelError(f"Could not load '{source}': {str(error).splitlines()[0]}") from error


def merge_adapter(base, adapter_folder: str, head: str):
    """Apply a saved LoRA adapter to `base` and merge it into the weights."""
    from peft import PeftConfig, PeftModel

    adapter_config = PeftConfig.from_pretrained(adapter_folder)
    if head == REWARD and adapter_config.task_type != "SEQ_CLS":
        adapter_config.task_type = None  # an SFT adapter under a new reward head: the body names match
    merged = PeftModel.from_pretrained(base, adapter_folder, config=adapter_config).merge_and_unload()
    return merged.requires_grad_(True)  # peft froze the base weights when it wrapped them


def model_load_kwargs(config: JobConfig) -> dict[str, Any]:
    """dtype (and bitsandbytes settings) for from_pretrained.

    Full fine-tuning keeps fp32 master weights (bf16 autocast on a GPU); a frozen LoRA base is loaded in bf16
    where the device has it, to halve its memory; quantized bases compute in bf16 (fp32 without it).
    """
    precision = device_precision()
    if config.quantization == "none":
        frozen_in_bf16 = config.lora.enabled and precision == "bf16"
        return {"dtype": torch.bfloat16 if frozen_in_bf16 else torch.float32}
    from transformers import BitsAndBytesConfig

    compute_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if config.quantization == "4bit":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    else:
        quantization = BitsAndBytesConfig(load_in_8bit=True)
    return {
        "dtype": compute_dtype,
        "quantization_config": quantization,
        "device_map": {"": process_state().local_process_index},
    }


# ---------------------------------------------------------------- LoRA


def lora_config(config: JobConfig, model, task_type: str):
    """TRL's `peft_config` for this job, or None for full fine-tuning."""
    if not config.lora.enabled:
        return None
    from peft import LoraConfig

    targets = config.lora.target_modules
    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=auto_target_modules(model) if targets == "auto" else list(targets),
        task_type=task_type,
    )


def auto_target_modules(model) -> list[str]:
    """Names of the linear projections of attention and MLP blocks, for any architecture.

    Llama/Mistral/Qwen give q/k/v/o_proj + gate/up/down_proj, GPT-2 c_attn/c_proj/c_fc (Conv1D), Falcon
    query_key_value/dense...; the output head and MoE routers are left out.
    """
    from transformers.pytorch_utils import Conv1D

    output_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = set()
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear | Conv1D) and module is not output_head:
            if leaf not in OUTPUT_HEADS and leaf not in ROUTERS:
                names.add(leaf)
    if not names:
        raise ModelError("No linear layers to put LoRA adapters on: list lora.target_modules by name.")
    return sorted(names)


# ---------------------------------------------------------------- data


def load_splits(config: JobConfig, workspace: Workspace, tokenizer):
    """(train, eval or None) from the workspace library, as TRL rows.

    Plain-string prompts become one-turn conversations when the tokenizer has a chat template, so that
    training sees the same template as chat does at inference; plain `text` rows stay as they are.
    """
    from rlhf_studio.data import DataError, load_split_dataset

    with (
        process_state().main_process_first()
    ):  # the first process builds the Arrow cache, the others reuse it
        train = load_split_dataset(workspace, config.dataset, "train")
        evaluation = load_split_dataset(workspace, config.dataset, "eval") if config.use_eval_split else None
        if len(train) == 0:
            raise DataError(f"dataset {config.dataset!r} has no training rows")
        if evaluation is not None and len(evaluation) == 0:
            evaluation = None
        if tokenizer.chat_template:
            train = as_conversations(train)
            evaluation = as_conversations(evaluation) if evaluation is not None else None
    return train, evaluation


def as_conversations(dataset):
    """Wrap string prompt/completion/chosen/rejected columns as user/assistant messages (conversational)."""
    roles = {"prompt": "user", "completion": "assistant", "chosen": "assistant", "rejected": "assistant"}
    columns = [name for name in roles if name in dataset.column_names]
    if "prompt" not in columns or not isinstance(dataset[0]["prompt"], str):
        return dataset

    def wrap(row: dict) -> dict:
        return {name: [{"role": roles[name], "content": row[name]}] for name in columns}

    return dataset.map(wrap, desc="Applying the chat format")


# ---------------------------------------------------------------- TRL trainers


def trainer_inputs(
    config: JobConfig, start: StartingPoint, train, evaluation, callbacks: list, task: str
) -> dict:
    """The keyword arguments every TRL trainer of a stage takes: model, data, tokenizer, callbacks, LoRA."""
    return {
        "model": start.model,
        "train_dataset": train,
        "eval_dataset": evaluation,
        "processing_class": start.tokenizer,
        "callbacks": callbacks,
        "peft_config": lora_config(config, start.model, task),
    }


def frozen_reference(inputs: dict):
    """DPO/KTO's `ref_model`: None with LoRA (TRL disables the adapter for reference log-probs: one copy of
    the weights), else a frozen copy made before training (a merged adapter run exists only in memory)."""
    if inputs["peft_config"] is not None:
        return None
    return copy.deepcopy(inputs["model"]).eval().requires_grad_(False)


# ---------------------------------------------------------------- TRL arguments


def staging_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / STAGING_DIR


def training_arguments(config: JobConfig, run_dir: Path, has_eval: bool) -> dict[str, Any]:
    """The TrainingArguments fields every TRL config takes, from the job config (names unchanged)."""
    precision = device_precision()
    return {
        "output_dir": str(staging_dir(run_dir)),
        "seed": config.seed,
        "use_cpu": cpu_only(),
        "max_steps": config.max_steps or -1,
        "num_train_epochs": config.num_train_epochs,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "activation_checkpointing": config.gradient_checkpointing,  # transformers 5's name for it
        "max_length": config.max_length,
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "logging_nan_inf_filter": False,  # let a NaN loss reach the logs, where the guard stops the run
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": config.eval_steps,
        "eval_on_start": has_eval and config.eval_on_start,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": None,  # CheckpointPublisher prunes the published checkpoints itself
        "report_to": "none" if config.report_to == "none" else [config.report_to],
        "dataloader_pin_memory": torch.cuda.is_available(),
        "disable_tqdm": True,  # one line per log in train.log rather than progress bars
        "bf16": precision == "bf16",  # TRL defaults bf16=True, ~14x slower on CPUs without bf16 matmul units
        "fp16": False,
    }


# ---------------------------------------------------------------- run folder


def save_final_model(trainer, target: Path, start_source: str) -> None:
    """Save model (or adapter) and tokenizer to `target`, visible only once complete; main process writes."""
    from accelerate.utils import is_peft_model

    state = process_state()
    partial = target.with_name(f".{target.name}.partial")
    if state.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    if is_peft_model(trainer.model):
        trainer.model.peft_config["default"].base_model_name_or_path = start_source  # for lineage chains
    trainer.save_model(str(partial))  # every process takes part (sharded setups); only the main one writes
    state.wait_for_everyone()
    if state.is_main_process:
        (partial / "training_args.bin").unlink(missing_ok=True)  # a pickle, and checkpoints keep it anyway
        replace_folder(partial, target)


def replace_folder(complete: Path, target: Path) -> None:
    """Put the folder `complete` in place of `target`. An older target is renamed aside first and removed
    after, so that a process killed at any moment leaves `target` complete (old or new) or absent, never
    half-deleted; what a kill leaves aside is hidden, and removed by the next replace."""
    retired = target.with_name(f".{target.name}.replaced")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        os.replace(target, retired)
    os.replace(complete, target)
    shutil.rmtree(retired, ignore_errors=True)
