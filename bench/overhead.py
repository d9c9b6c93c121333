"""Overhead of the studio's training path over calling TRL directly, on the bundled model and demo data.

    python bench/overhead.py [--stages dpo sft kto grpo] [--steps 8] [--rounds 2] [--threads N]

For each stage the same job config (the stage defaults, fixed seed, `--steps` steps, no evaluation) runs
(a) as a plain script that builds the TRL trainer itself (`--direct`, below), and
(b) as the runner starts it: `python -m rlhf_studio train config.yaml --run-dir DIR` in a child process,
alternating a/b (order flipped every round). Samples/s come from the Trainer's own `train_runtime` in both,
so they cover the training loop only (with the studio's callbacks in b); process start, imports, model and
data loading are reported apart as "setup". Prints each run, the medians and the ratio b/a (target >= 0.97).
GRPO is scored on both sides by the same rule reward (a length band; no reward model), KTO trains on the demo
pairs split into good and bad replies. Uses $RLHF_STUDIO_HOME (default ./workspace); converts the bundled
model and imports the demo data if needed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf_studio.config import JobConfig, save_config  # noqa: E402
from rlhf_studio.models import BUNDLED_MODEL, ensure_bundled_model  # noqa: E402
from rlhf_studio.rewards import RuleRewardSettings  # noqa: E402
from rlhf_studio.stages import (  # noqa: E402
    get_stage,
    load_config,  # noqa: E402
)
from rlhf_studio.workspace import Workspace  # noqa: E402

DEMO = {"sft": ("bench-sft", "sft.jsonl"), "rm": ("bench-preference", "preference.jsonl")}
DEMO["dpo"] = DEMO["kto"] = DEMO["rm"]
DEMO["grpo"] = ("bench-prompts", "prompts.jsonl")
LENGTH_BAND = {"min_words": 5, "max_words": 20}  # GRPO's reward on both sides


# ---------------------------------------------------------------- (a) the plain TRL script


def direct(config_path: Path, output_dir: Path) -> None:
    """Build the stage's TRL trainer by hand from the same config and train; print its train_runtime."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    config = load_config(config_path)
    workspace = Workspace.from_env()
    model_dir = ensure_bundled_model(workspace)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in (workspace.datasets_dir / config.dataset / "train.jsonl").open()]
    roles = {"prompt": "user", "completion": "assistant", "chosen": "assistant", "rejected": "assistant"}
    if config.stage == "kto":  # pairs as one desirable and one undesirable row, as the studio splits them
        rows = [
            {"prompt": row["prompt"], "completion": row[reply], "label": reply == "chosen"}
            for row in rows
            for reply in ("chosen", "rejected")
        ]
    rows = [
        {
            key: [{"role": roles[key], "content": value}] if key in roles else value
            for key, value in row.items()
        }
        for row in rows
    ]
    auto_class = AutoModelForSequenceClassification if config.stage == "rm" else AutoModelForCausalLM
    extra = {"num_labels": 1} if config.stage == "rm" else {}
    torch.manual_seed(config.seed)
    model = auto_class.from_pretrained(model_dir, dtype=torch.float32, **extra)
    model.config.pad_token_id = tokenizer.pad_token_id
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_config = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=targets,
        task_type="SEQ_CLS" if config.stage == "rm" else "CAUSAL_LM",
    )
    common = dict(
        output_dir=str(output_dir),
        seed=config.seed,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        activation_checkpointing=config.gradient_checkpointing,
        max_length=config.max_length,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    )
    trainer = build_direct_trainer(config, model, tokenizer, Dataset.from_list(rows), common, peft_config)
    result = trainer.train()
    print("RESULT " + json.dumps({"train_runtime": result.metrics["train_runtime"]}), flush=True)


def build_direct_trainer(config, model, tokenizer, dataset, common: dict, peft_config):
    import copy

    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

    data = {"train_dataset": dataset, "processing_class": tokenizer}
    peft = peft_config if config.lora.enabled else None
    if config.stage in ("kto", "grpo"):
        return build_newer_trainer(config, model, common, peft, data)
    if config.stage == "sft":
        return SFTTrainer(model=model, args=SFTConfig(**common, packing=False), peft_config=peft, **data)
    if config.stage == "rm":
        return RewardTrainer(model=model, args=RewardConfig(**common), peft_config=peft, **data)
    args = DPOConfig(**common, beta=config.beta, loss_type=[config.loss_type])
    reference = None if peft else copy.deepcopy(model).eval().requires_grad_(False)
    return DPOTrainer(model=model, ref_model=reference, args=args, peft_config=peft, **data)


def build_newer_trainer(config, model, common: dict, peft, data: dict):
    from trl import GRPOConfig, GRPOTrainer, KTOConfig, KTOTrainer

    from rlhf_studio.rewards import length_reward

    if config.stage == "kto":
        args = KTOConfig(
            **common,
            beta=config.beta,
            desirable_weight=config.desirable_weight,
            undesirable_weight=config.undesirable_weight,
            loss_type=config.loss_type,
        )
        return KTOTrainer(model=model, args=args, peft_config=peft, **data)
    common = {key: value for key, value in common.items() if key != "max_length"}
    args = GRPOConfig(
        **common,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        reward_weights=[config.rewards.length_weight],
    )
    reward = length_reward(LENGTH_BAND["min_words"], LENGTH_BAND["max_words"])
    return GRPOTrainer(model=model, reward_funcs=[reward], args=args, peft_config=peft, **data)


# ---------------------------------------------------------------- the comparison


def prepare(workspace: Workspace, stage: str, steps: int, folder: Path) -> Path:
    from rlhf_studio.data import import_dataset

    ensure_bundled_model(workspace)
    name, file = DEMO[stage]
    if not (workspace.datasets_dir / name / "manifest.json").is_file():
        import_dataset(workspace, REPO / "assets" / "demo" / file, name)
    extra = {"rewards": RuleRewardSettings(**LENGTH_BAND)} if stage == "grpo" else {}
    config: JobConfig = get_stage(stage).config(
        model=BUNDLED_MODEL, dataset=name, max_steps=steps, seed=0, use_eval_split=False, **extra
    )
    path = folder / f"{stage}.yaml"
    save_config(config, path)
    return path


def run_child(command: list[str], env: dict, marker_file: Path | None = None) -> dict:
    """Run one child; return its train_runtime and the rest of its wall time (setup)."""
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{finished.stderr[-4000:]}")
    if marker_file is None:
        line = next(line for line in finished.stdout.splitlines() if line.startswith("RESULT "))
        runtime = json.loads(line.removeprefix("RESULT "))["train_runtime"]
    else:
        rows = [json.loads(line) for line in marker_file.read_text().splitlines()]
        runtime = next(row["train_runtime"] for row in rows if "train_runtime" in row)
    return {"train_runtime": runtime, "setup": wall - runtime}


def compare(stage: str, config_path: Path, rounds: int, folder: Path, env: dict) -> None:
    config = load_config(config_path)
    samples = config.max_steps * config.per_device_train_batch_size * config.gradient_accumulation_steps
    results: dict[str, list[dict]] = {"a": [], "b": []}
    for round_index in range(rounds):
        for variant in "ab" if round_index % 2 == 0 else "ba":
            out = folder / f"{stage}-{variant}-{round_index}"
            if variant == "a":
                command = [sys.executable, __file__, "--direct", str(config_path), str(out)]
                result = run_child(command, env)
            else:
                command = [
                    sys.executable,
                    "-m",
                    "rlhf_studio",
                    "train",
                    str(config_path),
                    "--run-dir",
                    str(out),
                ]
                result = run_child(command, env, out / "metrics.jsonl")
            result["samples_per_s"] = samples / result["train_runtime"]
            results[variant].append(result)
            print(
                f"{stage} round {round_index} {variant}: {result['samples_per_s']:.3f} samples/s "
                f"(train {result['train_runtime']:.1f}s, setup {result['setup']:.1f}s)",
                flush=True,
            )
    median = {key: statistics.median(r["samples_per_s"] for r in runs) for key, runs in results.items()}
    setup = {key: statistics.median(r["setup"] for r in runs) for key, runs in results.items()}
    print(
        f"{stage}: (a) TRL direct {median['a']:.3f} samples/s, setup {setup['a']:.1f}s | "
        f"(b) studio child {median['b']:.3f} samples/s, setup {setup['b']:.1f}s | "
        f"ratio b/a {median['b'] / median['a']:.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["dpo", "sft"], choices=sorted(DEMO))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per child (OMP_NUM_THREADS); on a shared "
        "machine 1 keeps both variants off each other's cores",
    )
    parser.add_argument(
        "--direct", nargs=2, type=Path, metavar=("CONFIG", "OUTPUT_DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.direct:
        direct(*args.direct)
        return
    workspace = Workspace.from_env()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    with tempfile.TemporaryDirectory(prefix="rlhf-overhead-") as scratch:
        for stage in args.stages:
            config_path = prepare(workspace, stage, args.steps, Path(scratch))
            compare(stage, config_path, args.rounds, Path(scratch), env)


if __name__ == "__main__":
    main()
