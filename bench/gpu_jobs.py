"""The job runner and the chat on the GPU: sections `runner` and `chat` of bench/gpu_check.py.

runner  five jobs in a row through the real JobManager (each a child process that owns the GPU while it
        trains), one of them failing: on CUDA it asks for far more memory than any card has (the failure a
        GPU user meets), elsewhere its weights file cannot be read. After each job the GPU's used memory must
        be back at the baseline taken before the first; a job that never raised it above that did not use
        the GPU.
chat    three LoRA runs of one base in three panes on the GPU (one base in memory, the adapters switched per
        token): the time to the first token in every pane, in one pane, and on the base alone, each divided by
        a bare `apply_chat_template` + `model.generate(max_new_tokens=1)` on a second copy of the weights.
"""

from __future__ import annotations

import shutil
import statistics
import time

from chat import MESSAGE, RUN_IDS, engine_first_token, make_lora_runs
from gpu_setup import (
    DevicePeak,
    Plan,
    SectionLog,
    add_dataset,
    device_used_bytes,
    gb,
    sft_rows,
)
from gpu_train import job_config

from rlhf_studio.stages import get_stage

RELEASED_BYTES = 64 * 2**20  # what "back at the baseline" allows: allocator noise, not a model
RELEASE_SECONDS = 30
JOB_SECONDS = 300
JOB_STEPS = 5  # the runner's jobs prove the process and the memory, not the speed
OOM_ROWS, OOM_TOKENS = 512, 2048  # 512 x 2048 tokens x a 49152-token vocabulary: ~100 GB of logits alone


def runner_jobs(plan: Plan, cuda: bool) -> list[tuple[str, object, str]]:
    """(name, config, the state it must end in) for the five jobs."""
    sft, dpo, reward = get_stage("sft"), get_stage("dpo"), get_stage("rm")
    if cuda and not plan.smoke:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(plan.model_dir)
        rows = sft_rows(tokenizer, OOM_ROWS, OOM_TOKENS // 4, OOM_TOKENS * 3 // 4)
        failing = job_config(
            sft, plan, True, dataset=add_dataset(plan.workspace, "gpu-oom", rows),
            per_device_train_batch_size=OOM_ROWS, max_length=OOM_TOKENS,
        )  # fmt: skip
        how = "out of GPU memory"
    else:  # no GPU memory to run out of: weights that cannot be read
        broken = plan.folder / "models" / "unreadable"
        shutil.copytree(plan.model_dir, broken, dirs_exist_ok=True)
        (broken / "model.safetensors").write_bytes(b"not a safetensors file")
        failing = job_config(sft, plan, False, model=str(broken))
        how = "unreadable weights"
    steps = min(plan.steps, JOB_STEPS)
    return [
        ("SFT full", job_config(sft, plan, False, max_steps=steps), "completed"),
        ("SFT LoRA", job_config(sft, plan, True, max_steps=steps), "completed"),
        (f"SFT failing ({how})", failing, "failed"),
        ("DPO LoRA", job_config(dpo, plan, True, max_steps=steps), "completed"),
        ("RM LoRA", job_config(reward, plan, True, max_steps=steps), "completed"),
    ]


def runner_section(plan: Plan, log: SectionLog, deadline: float) -> None:
    import torch

    from rlhf_studio.runner.jobs import JobManager

    jobs = runner_jobs(plan, torch.cuda.is_available())
    baseline = device_used_bytes()  # this process's CUDA context is in it, and stays
    log.set(baseline_gb=gb(baseline))
    manager = JobManager(plan.workspace)
    try:
        for name, config, expected in jobs:
            if time.time() > deadline - 20:
                log.attempt(name, lambda: {"skipped": "time budget spent"})
            else:
                log.attempt(name, one_job, manager, config, expected, baseline)
    finally:
        manager.shutdown()


def one_job(manager, config, expected: str, baseline: int | None) -> dict:
    started = time.perf_counter()
    with DevicePeak(interval=0.2) as device:
        run_id = manager.submit(config)
        status = manager.wait(run_id, timeout=JOB_SECONDS)
    row = {
        "run_id": run_id,
        "state": status.state,
        "as_expected": status.state == expected,
        "message": status.message,
        "job_s": round(time.perf_counter() - started, 1),
    }
    if baseline is None:
        return row
    released_after = None
    waited = time.perf_counter()
    while time.perf_counter() - waited < RELEASE_SECONDS:
        if device_used_bytes() - baseline <= RELEASED_BYTES:
            released_after = round(time.perf_counter() - waited, 2)
            break
        time.sleep(0.1)
    return {
        **row,
        "peak_above_baseline_gb": gb(device.peak - baseline),
        "trained_on_gpu": device.peak - baseline > RELEASED_BYTES,
        "after_above_baseline_gb": gb(device_used_bytes() - baseline),
        "released_after_s": released_after,  # None: not back at the baseline within RELEASE_SECONDS
    }


# ---------------------------------------------------------------- chat


def chat_section(plan: Plan, log: SectionLog, deadline: float) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_studio.chat import ChatArena, ModelCache
    from rlhf_studio.workspace import Workspace

    root = plan.folder / "chat-workspace"
    make_lora_runs(plan.model_dir, root)
    cache = ModelCache(Workspace.at(root))
    model = AutoModelForCausalLM.from_pretrained(plan.model_dir, dtype=cache.dtype).to(cache.device).eval()
    tokenizer = AutoTokenizer.from_pretrained(plan.model_dir)
    base = ChatArena(cache, [str(plan.model_dir), str(plan.model_dir)])
    lora = ChatArena(cache, [f"run:{run_id}" for run_id in RUN_IDS])
    variants = {
        "bare generate": lambda: bare_first_token(model, tokenizer),
        "engine, base pane": lambda: engine_first_token(base, 8),
        "engine, one LoRA pane": lambda: engine_first_token(lora, 8),
        "engine, three LoRA panes": lambda: engine_first_token(lora, 8, panes=3),
    }
    log.set(chat_device=str(cache.device), chat_dtype=str(cache.dtype))
    log.attempt("first token", first_token_times, variants, 3 if plan.smoke else 12)
    cuda = torch.cuda.is_available()
    log.attempt("memory", lambda: {
        "cache_gb": gb(cache.memory_bytes()),  # one base and three adapters
        "one_model_gb": gb(sum(p.numel() * p.element_size() for p in model.parameters())),
        "allocated_gb": gb(torch.cuda.memory_allocated()) if cuda else None,  # the cache and the bare copy
    })  # fmt: skip


def first_token_times(variants: dict, rounds: int) -> dict:
    for measure in variants.values():  # warm-up: lazy initialisation, kernel selection
        measure()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(variants[name]())
    median = {name: statistics.median(values) for name, values in times.items()}
    bare = median["bare generate"]
    return {
        "median_ms": {name: round(value * 1000, 2) for name, value in median.items()},
        "ratio_to_bare": {
            name: round(value / bare, 3) for name, value in median.items() if name != "bare generate"
        },
    }


def bare_first_token(model, tokenizer) -> float:
    """bench/chat.py's bare side on the model's device: the chat template, then one sampled token."""
    import torch

    started = time.perf_counter()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": MESSAGE}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    ).to(model.device)
    with torch.no_grad():
        model.generate(**inputs, do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=1).tolist()
    return time.perf_counter() - started
