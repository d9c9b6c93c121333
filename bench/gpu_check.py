"""The GPU path, proven: bf16, LoRA, QLoRA, a 7B in 16 GB, the job runner and chat on CUDA, in one short call.

    bash bench/gpu_wheels.sh     # where pip reaches PyPI: the wheels a bare GPU machine lacks, and the
                                 # one-line command that installs them there and runs this check
    python3 bench/gpu_check.py [--out DIR] [--budget 530] [--sections stages qlora big runner chat]
    python3 bench/gpu_check.py --smoke      # the check itself tested on a tiny model, on any device (tests)

Without CUDA (and without --smoke) it says so in one line and exits 0.

Nothing is downloaded: models are built from configs with random weights (bench/gpu_setup.py: the bundled
SmolLM2-135M-Instruct's shape and Llama-2-7B's) with the tests' local tokenizer. Each section runs in a child
process of its own within its share of the time budget (time a section leaves unused goes to the next), so a
section that crashes or overruns costs only itself, and keeps the rows it wrote. What each section measures:
bench/gpu_train.py (stages, qlora, big) and bench/gpu_jobs.py (runner, chat).
Writes DIR/gpu_check.json (every figure), DIR/gpu_check.txt (the short report, also printed) and each
section's log DIR/<section>.log; DIR is --out, else $OUT (the device tool's folder), else /tmp/gpu-check.

The module imports only the standard library at the top, so that the line without CUDA comes at once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpu_setup import Plan

REPO = Path(__file__).resolve().parents[1]
SHARES = {"stages": 170, "qlora": 60, "big": 170, "runner": 100, "chat": 40}  # relative time of each section
CUDA_ONLY = ("qlora", "big")  # bitsandbytes needs CUDA; a 7B needs a GPU's memory
SIZES = dict(
    shape="bundled", steps=20, rounds=3, batch=8, prompt_tokens=128, reply_tokens=256, max_length=512
)
SMOKE_SIZES = dict(shape="tiny", steps=2, rounds=1, batch=4, prompt_tokens=16, reply_tokens=32, max_length=64)
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "pyarrow")


def plan_for(args: argparse.Namespace, root: Path) -> Plan:
    from gpu_setup import Plan

    from rlhf_studio.stages import stage_names

    sizes = SMOKE_SIZES if args.smoke else SIZES
    return Plan(root=str(root), stages=args.stages or stage_names(), smoke=args.smoke, **sizes)


def prepare(plan: Plan) -> None:
    """The bundled-shape model, a reward model of the same shape and the two datasets, on the CPU."""
    from gpu_setup import (
        DATASETS,
        SHAPES,
        add_dataset,
        build_model_dir,
        preference_rows,
        sft_rows,
        shaped_tokenizer,
    )

    from rlhf_studio.training.common import REWARD

    shape = SHAPES[plan.shape]
    tokenizer = shaped_tokenizer(shape["vocab_size"])
    build_model_dir(plan.model_dir, shape, tokenizer)
    build_model_dir(plan.reward_dir, shape, tokenizer, head=REWARD, seed=1)
    add_dataset(
        plan.workspace, DATASETS["sft"], sft_rows(tokenizer, 64, plan.prompt_tokens, plan.reply_tokens)
    )
    add_dataset(
        plan.workspace,
        DATASETS["preference"],
        preference_rows(tokenizer, 64, plan.prompt_tokens, plan.reply_tokens),
    )


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "packages": versions}


def device() -> dict:
    """The GPU as a section sees it (the parent never starts CUDA, so that it holds no GPU memory)."""
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False}
    properties = torch.cuda.get_device_properties(0)
    return {
        "cuda": True,
        "name": properties.name,
        "memory_gb": round(properties.total_memory / 1e9, 1),
        "torch_cuda": torch.version.cuda,
        "bf16": torch.cuda.is_bf16_supported(),
    }


# ---------------------------------------------------------------- sections, each in its own process


def run_section(name: str, plan: Plan, deadline: float, log_file: Path) -> dict:
    """Run one section in a child process until it ends or its deadline passes; its results."""
    results = plan.folder / "results" / f"{name}.json"
    command = [sys.executable, __file__, "--section", name, str(plan.folder / "plan.json"), str(deadline)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # the training lock of this check alone: no other studio's training to wait for
    env["RLHF_STUDIO_TRAINING_LOCK"] = str(plan.folder / "training.lock")
    with log_file.open("w") as log:
        child = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = child.wait(max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            code = stop(child)
    found = json.loads(results.read_text()) if results.is_file() else {"rows": []}
    if code != 0:
        found["ended"] = (
            f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name} at its time limit"
        )
        found["log_tail"] = log_file.read_text(errors="replace").splitlines()[-30:]
    return found


def stop(child: subprocess.Popen) -> int:
    """SIGTERM to the section's process group (its finally blocks stop its training), then SIGKILL."""
    os.killpg(child.pid, signal.SIGTERM)
    try:
        return child.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        return child.wait()


def section_main(name: str, plan_file: Path, deadline: float) -> None:
    """Inside the section's process: its rows go to results/<name>.json as they are measured."""
    import gpu_jobs
    import gpu_train
    from gpu_setup import Plan, SectionLog

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # unwind: finally blocks run
    plan = Plan.load(plan_file)
    run = {
        "stages": gpu_train.stages_section,
        "qlora": gpu_train.qlora_section,
        "big": gpu_train.big_section,
        "runner": gpu_jobs.runner_section,
        "chat": gpu_jobs.chat_section,
    }[name]
    (plan.folder / "results").mkdir(exist_ok=True)
    log = SectionLog(plan.folder / "results" / f"{name}.json")
    log.set(device=device())
    run(plan, log, deadline)


# ---------------------------------------------------------------- the whole check


def check(args: argparse.Namespace, out: Path) -> dict:
    import torch

    started = time.time()
    budget_end = started + args.budget
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        plan = plan_for(args, Path(scratch))
        plan.save(plan.folder / "plan.json")
        prepare(plan)
        results: dict = {"environment": environment(), "plan": asdict(plan), "sections": {}}
        results["setup_s"] = round(time.time() - started, 1)
        names = [name for name in args.sections if torch.cuda.is_available() or name not in CUDA_ONLY]
        results["not_run"] = {name: "needs CUDA" for name in args.sections if name not in names}
        for index, name in enumerate(names):
            left = budget_end - time.time()
            share = left * SHARES[name] / sum(SHARES[later] for later in names[index:])
            print(f"{name}: up to {share:.0f} s", flush=True)
            section_started = time.time()
            results["sections"][name] = run_section(name, plan, time.time() + share, out / f"{name}.log")
            results["sections"][name]["wall_s"] = round(time.time() - section_started, 1)
            write(out, results)
    results["total_s"] = round(time.time() - started, 1)
    return results


def write(out: Path, results: dict) -> None:
    from gpu_report import report

    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "gpu_check.txt").write_text(report(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the JSON, the report and the logs")
    parser.add_argument("--budget", type=float, default=530, help="seconds for the whole check")
    parser.add_argument("--sections", nargs="+", choices=list(SHARES), default=list(SHARES))
    parser.add_argument(
        "--stages", nargs="+", help="stages to time in `stages` (default: every registered one)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny model on any device: tests the check itself"
    )
    parser.add_argument("--section", nargs=3, help=argparse.SUPPRESS)  # NAME PLAN_FILE DEADLINE, in a child
    args = parser.parse_args()
    if args.section:
        name, plan_file, deadline = args.section
        section_main(name, Path(plan_file), float(deadline))
        return
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device on this machine (torch {torch.__version__}); nothing to check.")
        return
    out = args.out or Path(os.environ.get("OUT") or Path(tempfile.gettempdir()) / "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    results = check(args, out)
    write(out, results)
    print((out / "gpu_check.txt").read_text() + f"\nfigures and logs: {out}", flush=True)


if __name__ == "__main__":
    main()
