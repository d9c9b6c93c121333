"""Training on the GPU, measured: sections `stages`, `qlora` and `big` of bench/gpu_check.py.

stages  every registered stage, full and LoRA, on the bundled model's shape (random init) in bf16: the
        studio's run (`run_stage`, with its callbacks) against the same TRL trainer called directly,
        alternating the order each round, as bench/overhead.py does on a CPU. SFT, RM and DPO are built by
        hand the way overhead.py builds them (its `build_direct_trainer`), other TRL stages by their own
        builder without the studio's callbacks; a stage with a loop of its own (PPO) has no TRL trainer to
        compare against.
        Samples/s from the Trainer's `train_runtime`; for a loop of its own, from its steps' clock times.
qlora   SFT and DPO on a 4-bit and an 8-bit base + LoRA; then the model loaded at each precision, the memory
        it took beside rlhf_studio.model_memory's estimate from the config alone.
big     a Llama-2-7B-shaped model (random init) in 4-bit + LoRA, DPO on 1024-token pairs: peak memory against
        the 16 GB goal, tokens/s, with gradient checkpointing on (and off, if time is left).

Tokens/s = samples/s x the tokens of one sample (prompt + reply, both replies of a pair, cut at max_length).
Memory: PyTorch's allocator peaks (allocated, reserved) and the whole GPU's used memory, sampled every 0.1 s,
which includes this process's CUDA context.
"""

from __future__ import annotations

import gc
import json
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from gpu_setup import (
    DATASETS,
    SHAPES,
    DevicePeak,
    Plan,
    SectionLog,
    add_dataset,
    build_model_dir,
    gb,
    llama_config,
    preference_rows,
    safely,
    shaped_tokenizer,
)

from rlhf_studio.config import JobConfig, LoraSettings
from rlhf_studio.model_memory import PRECISIONS, LoraPlan, estimate_memory, shape_of_config
from rlhf_studio.stages import REWARD_MODEL, Stage, all_stages, get_stage
from rlhf_studio.training.common import CAUSAL

HAND_BUILT = ("sft", "rm", "dpo")  # bench/overhead.py builds these TRL trainers by hand
SEQUENCES = {"preference": 2}  # sequences in one sample, by the kind of data a stage trains on
BIG_STEPS, BIG_LENGTH, BIG_PROMPT = 4, 1024, 256
PEAKS = ("peak_allocated_gb", "peak_reserved_gb", "device_peak_gb", "allocated_before_gb")

Run = Callable[[Stage, JobConfig, Plan, Path], float]  # one training -> samples/s


def job_config(stage: Stage, plan: Plan, lora: bool, **fields) -> JobConfig:
    """The stage's defaults with the check's model, data, length and steps; no evaluation, no checkpoints."""
    values = {
        "model": str(plan.model_dir),
        "dataset": dataset_for(stage),
        "max_steps": plan.steps,
        "learning_rate": 1e-5,  # random weights: keep every loss finite (the NaN guard would stop the run)
        "per_device_train_batch_size": plan.batch,
        "max_length": plan.max_length,
        "logging_steps": 5 if stage.train is None else 1,  # a loop of its own is timed by its rows
        "use_eval_split": False,
        "save_steps": 100_000,
        "seed": 0,
        "lora": LoraSettings(enabled=lora),
        "reward_model": str(plan.reward_dir),
        **fields,
    }
    known = stage.config.__dataclass_fields__
    return stage.config(**{name: value for name, value in values.items() if name in known})


def dataset_for(stage: Stage) -> str:
    for kind, name in DATASETS.items():
        if stage.fit(kind)[0]:
            return name
    raise ValueError(f"none of the check's datasets ({', '.join(DATASETS)}) fits {stage.name}")


def samples_per_step(config: JobConfig) -> int:
    """Samples one optimizer step takes (PPO: its rollout batch, micro-batch x accumulation x minibatches)."""
    minibatches = getattr(config, "num_mini_batches", 1)
    return config.per_device_train_batch_size * config.gradient_accumulation_steps * minibatches


def tokens_per_sample(stage: Stage, config: JobConfig, prompt_tokens: int, reply_tokens: int) -> int:
    sampled = getattr(config, "response_length", None) or getattr(config, "max_completion_length", None)
    reply = sampled or reply_tokens  # an online stage samples its replies, at most this long
    return SEQUENCES.get(stage.data.kind, 1) * min(config.max_length, prompt_tokens + reply)


# ---------------------------------------------------------------- one timed run


def studio_run(stage: Stage, config: JobConfig, plan: Plan, run_dir: Path) -> float:
    """Samples/s of the studio's training path: what the job runner's child runs."""
    from rlhf_studio.training import run_stage

    run_stage(config, run_dir, plan.workspace)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    runtime = next((row["train_runtime"] for row in rows if "train_runtime" in row), None)
    if runtime is not None:
        return config.max_steps * samples_per_step(config) / runtime
    stamps = sorted({row["step"]: row["time"] for row in rows if "step" in row}.items())
    (first_step, first_time), (last_step, last_time) = stamps[0], stamps[-1]  # the first step left out
    return samples_per_step(config) * (last_step - first_step) / (last_time - first_time)


def direct_run(stage: Stage, config: JobConfig, plan: Plan, run_dir: Path) -> float:
    """Samples/s of the same TRL trainer called directly: same arguments, dtype and rows; no studio loop."""
    from rlhf_studio.training.common import training_arguments

    if stage.name in HAND_BUILT:
        trainer = hand_built_trainer(stage, config, plan, training_arguments(config, run_dir, has_eval=False))
    else:
        trainer = stage.build_trainer(config, run_dir, plan.workspace, [])[0]
    runtime = trainer.train().metrics["train_runtime"]
    return config.max_steps * samples_per_step(config) / runtime


def hand_built_trainer(stage: Stage, config: JobConfig, plan: Plan, arguments: dict):
    """bench/overhead.py's plain TRL script: from_pretrained, the library rows, a LoraConfig, the trainer."""
    import torch
    from overhead import build_direct_trainer
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from rlhf_studio.training.common import load_splits, lora_config, model_load_kwargs

    reward = stage.produces == REWARD_MODEL
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    auto_class = AutoModelForSequenceClassification if reward else AutoModelForCausalLM
    torch.manual_seed(config.seed)
    extra = {"num_labels": 1} if reward else {}
    model = auto_class.from_pretrained(config.model, **extra, **model_load_kwargs(config))
    model.config.pad_token_id = tokenizer.pad_token_id
    rows = load_splits(config, plan.workspace, tokenizer)[0]
    peft_config = lora_config(config, model, "SEQ_CLS" if reward else "CAUSAL_LM")
    return build_direct_trainer(config, model, tokenizer, rows, arguments, peft_config)


def measured(run: Run, stage: Stage, config: JobConfig, plan: Plan, label: str) -> dict:
    """One run and its memory: samples/s, tokens/s, the allocator's peaks and the whole GPU's peak."""
    import torch

    run_dir = plan.folder / "runs" / label
    shutil.rmtree(run_dir, ignore_errors=True)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    held_before = torch.cuda.memory_allocated() if cuda else None  # what earlier runs left: a leak
    try:
        with DevicePeak() as device:
            samples_per_s = run(stage, config, plan, run_dir)
        tokens = tokens_per_sample(stage, config, plan.prompt_tokens, plan.reply_tokens)
        return {
            "samples_per_s": round(samples_per_s, 3),
            "tokens_per_s": round(samples_per_s * tokens),
            "allocated_before_gb": gb(held_before),
            "peak_allocated_gb": gb(torch.cuda.max_memory_allocated()) if cuda else None,
            "peak_reserved_gb": gb(torch.cuda.max_memory_reserved()) if cuda else None,
            "device_baseline_gb": gb(device.baseline),
            "device_peak_gb": gb(device.peak),
        }
    finally:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        shutil.rmtree(run_dir, ignore_errors=True)


# ---------------------------------------------------------------- stages


def stages_section(plan: Plan, log: SectionLog, deadline: float) -> None:
    """Round after round over every (stage, full or LoRA) while the time lasts: a first round covers every
    stage, later ones firm up the medians. Within a round the order of studio and TRL alternates. The rows
    are rewritten after every run."""
    sft = get_stage("sft")
    warm_up = job_config(sft, plan, True, max_steps=3)
    log.attempt("warm-up", measured, studio_run, sft, warm_up, plan, "warm-up")
    pairs = [(stage, lora) for stage in all_stages() if stage.name in plan.stages for lora in (False, True)]
    runs: dict[tuple[str, bool], dict[str, list[dict]]] = {(s.name, lora): {} for s, lora in pairs}
    started, done = time.time(), 0
    for round_index in range(plan.rounds):
        for index, (stage, lora) in enumerate(pairs):
            variants: dict[str, Run] = {"studio": studio_run}
            if stage.build_trainer is not None:
                variants["trl"] = direct_run
            order = list(variants) if (round_index + index) % 2 == 0 else list(reversed(variants))
            for name in order:
                if time.time() + 2 * (time.time() - started) / max(done, 1) > deadline:
                    break  # no time for another run
                label = f"{stage.name}-{'lora' if lora else 'full'}-{name}-{round_index}"
                config = job_config(stage, plan, lora)
                runs[stage.name, lora].setdefault(name, []).append(
                    safely(measured, variants[name], stage, config, plan, label)
                )
                done += 1
                rows = [comparison(get_stage(name), lora, found) for (name, lora), found in runs.items()]
                log.set(rows=log.data["rows"][:1] + rows)


def comparison(stage: Stage, lora: bool, found: dict[str, list[dict]]) -> dict:
    """Medians of samples/s and tokens/s, the largest peaks, and the ratio studio / direct."""
    row: dict = {"name": f"{stage.name} {'LoRA' if lora else 'full'}", "stage": stage.name, "lora": lora}
    for name, results in found.items():
        good = [result for result in results if "error" not in result]
        row[name] = {"errors": [result["error"] for result in results if "error" in result]}
        if good:
            row[name].update(
                samples_per_s=round(statistics.median(result["samples_per_s"] for result in good), 3),
                tokens_per_s=round(statistics.median(result["tokens_per_s"] for result in good)),
                runs=[result["samples_per_s"] for result in good],
                **{peak: largest(result[peak] for result in good) for peak in PEAKS},
            )
    if not found:
        row["skipped"] = "time budget spent"
    elif stage.build_trainer is None:
        row["direct"] = "none: no TRL trainer for this stage"
    else:
        row["direct"] = "hand-built (bench/overhead.py)" if stage.name in HAND_BUILT else "its stage builder"
        studio, trl = row.get("studio", {}), row.get("trl", {})
        if "samples_per_s" in studio and "samples_per_s" in trl:
            row["ratio"] = round(studio["samples_per_s"] / trl["samples_per_s"], 3)
    return row


def largest(values) -> float | None:
    """The largest of the figures that were measured; None where none was (no CUDA)."""
    measured_values = [value for value in values if value is not None]
    return max(measured_values) if measured_values else None


# ---------------------------------------------------------------- quantized bases


def qlora_section(plan: Plan, log: SectionLog, deadline: float) -> None:
    for stage in (get_stage("sft"), get_stage("dpo")):
        for quantization in ("4bit", "8bit"):
            config = job_config(stage, plan, True, quantization=quantization)
            label = f"{stage.name}-{quantization}"
            log.attempt(
                f"{stage.name} {quantization} + LoRA", measured, studio_run, stage, config, plan, label
            )
    from transformers import AutoConfig

    shape = shape_of_config(AutoConfig.from_pretrained(plan.model_dir))
    for precision in PRECISIONS:
        log.attempt(f"load {precision}", load_against_estimate, plan, plan.model_dir, precision, shape)


def load_against_estimate(plan: Plan, model_dir: Path, precision: str, shape) -> dict:
    """The GPU memory a load at `precision` takes, as training loads it, beside the config's estimate."""
    import torch

    from rlhf_studio.training.common import load_model_chain, model_load_kwargs

    quantized = precision in ("4bit", "8bit")
    config = get_stage("sft").config(
        lora=LoraSettings(enabled=precision != "fp32"),  # a LoRA base loads in bf16, a full fine-tune in fp32
        quantization=precision if quantized else "none",
    )
    estimate = estimate_memory(shape, precision, None)
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    model = load_model_chain(str(model_dir), CAUSAL, model_load_kwargs(config), plan.workspace)
    if not quantized:
        model.to("cuda")
    used = torch.cuda.memory_allocated() - before
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "measured_gb": gb(used),
        "estimate_gb": gb(estimate.weight_bytes),
        "ratio": round(used / estimate.weight_bytes, 3),
    }


def big_section(plan: Plan, log: SectionLog, deadline: float) -> None:
    """The seed's claim: a 7B Llama in 4-bit + LoRA trains (DPO) in 16 GB."""
    folder = plan.folder / "models" / "7b"
    tokenizer = shaped_tokenizer(SHAPES["7b"]["vocab_size"])
    shape = shape_of_config(llama_config(SHAPES["7b"], tokenizer))
    estimate = estimate_memory(shape, "4bit", LoraPlan(r=LoraSettings().r))
    log.set(estimate_gb={"weights": gb(estimate.weight_bytes), "lora_state": gb(estimate.training_bytes)})
    if "error" in log.attempt("build 7B", build_7b, folder, tokenizer):
        return
    add_dataset(
        plan.workspace, "gpu-prefs-long", preference_rows(tokenizer, 16, BIG_PROMPT, BIG_LENGTH - BIG_PROMPT)
    )
    dpo = get_stage("dpo")
    for checkpointing in (True, False):
        switch = "on" if checkpointing else "off"
        name = f"7B DPO 4-bit + LoRA, {BIG_LENGTH} tokens, gradient checkpointing {switch}"
        if time.time() > deadline - 90:
            log.attempt(name, lambda: {"skipped": "time budget spent"})
            continue
        config = job_config(dpo, plan, True, model=str(folder), dataset="gpu-prefs-long", quantization="4bit",
                            max_length=BIG_LENGTH, per_device_train_batch_size=1, max_steps=BIG_STEPS,
                            gradient_checkpointing=checkpointing, logging_steps=1)  # fmt: skip
        big_plan = Plan(
            **{**plan.__dict__, "prompt_tokens": BIG_PROMPT, "reply_tokens": BIG_LENGTH - BIG_PROMPT}
        )
        row = log.attempt(name, measured, studio_run, dpo, config, big_plan, f"7b-{checkpointing}")
        if row.get("device_peak_gb"):
            log.set(goal_16gb_met={**log.data.get("goal_16gb_met", {}), name: row["device_peak_gb"] <= 16})
    if time.time() < deadline - 60:
        log.attempt("load 7B 4bit", load_against_estimate, plan, folder, "4bit", shape)
    shutil.rmtree(folder, ignore_errors=True)


def build_7b(folder: Path, tokenizer) -> dict:
    """A random-init 7B made on the GPU in bf16 and saved as safetensors, for training to load it in 4-bit."""
    import torch

    started = time.perf_counter()
    build_model_dir(folder, SHAPES["7b"], tokenizer, device="cuda", dtype=torch.bfloat16)
    gc.collect()
    torch.cuda.empty_cache()
    size = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
    return {"build_and_save_s": round(time.perf_counter() - started, 1), "safetensors_gb": gb(size)}
