"""PPO throughput: RLHF Studio's PPO vs TRL 1.12's `trl.experimental.ppo.PPOTrainer`, side by side.

    .venv/bin/python -m rlhf_studio prepare-model     # the bundled model as a safetensors folder (once)
    python3 -m venv bench/.venv-trl112                  # TRL's side lives in its own (git-ignored) venv;
    bench/.venv-trl112/bin/pip install torch==2.13.0 trl==1.12.0   # + transformers, accelerate, datasets
    .venv/bin/python bench/ppo.py [--steps 4] [--batch 16] [--response-length 48] [--epochs 2]
                                  [--fixed-length]

Both sides get the same prompts (assets/demo/prompts.jsonl, chat-formatted), the same policy (the bundled
SmolLM2-135M-Instruct folder), the same reward model (that folder as a one-output sequence classifier with
a seeded random head, saved once to a temp folder; it also initialises both critics), and the same rollout
batch, response length (stop at EOS), temperature, PPO epochs, micro-batch (4) and gradient accumulation
(one optimizer update per epoch), fp32. Each side is timed over its training loop only (models loaded and
data tokenized before the clock starts). Prints samples/s for each and the ratio studio / TRL (target >= 1).
Responses stop at EOS, so the two sides sample different lengths (and so do different amounts of work);
`--fixed-length` turns EOS stopping off on both sides, so every response has exactly --response-length tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRL_PYTHON = ROOT / "bench" / ".venv-trl112" / "bin" / "python"
PROMPTS_FILE = ROOT / "assets" / "demo" / "prompts.jsonl"
MICRO_BATCH = 4
TEMPERATURE = 0.7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="PPO steps (rollout batches) per side")
    parser.add_argument("--batch", type=int, default=16, help="prompts per rollout batch")
    parser.add_argument("--response-length", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2, help="PPO epochs per rollout batch")
    parser.add_argument(
        "--fixed-length", action="store_true", help="no stop at EOS: every response is --response-length long"
    )
    parser.add_argument("--trl-side", type=Path, help=argparse.SUPPRESS)  # internal: run TRL, write JSON here
    parser.add_argument("--policy", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reward", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_side:
        result = run_trl(args)
        args.trl_side.write_text(json.dumps(result))
        return
    sys.path.insert(0, str(ROOT))  # run as a script: make the rlhf_studio package importable
    if not TRL_PYTHON.is_file():
        sys.exit(f"missing {TRL_PYTHON}: make it with the two commands in this file's docstring")
    policy = prepare_policy()
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as scratch:
        reward = build_reward_model(policy, Path(scratch) / "reward")
        print(f"policy {policy}\nreward model (random head) {reward}")
        print(
            f"{args.steps} steps x {args.batch} prompts, response <= {args.response_length} tokens, "
            f"{args.epochs} PPO epochs, micro-batch {MICRO_BATCH}, fp32, {torch_threads()} threads"
        )
        studio = run_studio(args, policy, reward, Path(scratch))
        report("studio", studio)
        trl = run_trl_subprocess(args, policy, reward, Path(scratch))
        report("trl 1.12", trl)
    ratio = studio["samples_per_second"] / trl["samples_per_second"]
    cpu_ratio = studio["samples_per_cpu_second"] / trl["samples_per_cpu_second"]
    print(f"ratio studio / trl = {ratio:.2f}x samples/s  ({cpu_ratio:.2f}x per CPU second)  (target >= 1.0)")
    token_ratio = ratio * studio["response_length"] / trl["response_length"]
    print(f"ratio studio / trl = {token_ratio:.2f}x response tokens/s (the sides sample different lengths)")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def report(name: str, result: dict) -> None:
    print(
        f"{name:>9}: {result['samples_per_second']:.3f} samples/s  ({result['samples']} samples in "
        f"{result['seconds']:.1f} s, {result['cpu_seconds']:.1f} CPU s; mean response "
        f"{result['response_length']:.1f} tokens)"
    )


def prepare_policy() -> Path:
    from rlhf_studio.models import ensure_bundled_model
    from rlhf_studio.workspace import Workspace

    return ensure_bundled_model(Workspace.at(ROOT / "workspace"))


def build_reward_model(policy: Path, folder: Path) -> Path:
    """The policy folder as a one-output sequence classifier with a seeded random head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def bench_prompts(count: int) -> list[str]:
    rows = [json.loads(line)["prompt"] for line in PROMPTS_FILE.read_text().splitlines()]
    return (rows * (count // len(rows) + 1))[:count]


# ---------------------------------------------------------------- (a) RLHF Studio


def run_studio(args, policy: Path, reward: Path, scratch: Path) -> dict:
    from rlhf_studio.config import LoraSettings
    from rlhf_studio.data import import_dataset
    from rlhf_studio.stages.ppo import PPOJobConfig
    from rlhf_studio.training.ppo.loop import PPOTrainer
    from rlhf_studio.workspace import Workspace

    workspace = Workspace.at(scratch / "workspace")
    prompts_file = scratch / "prompts.jsonl"
    prompts_file.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in bench_prompts(args.batch * args.steps))
    )
    import_dataset(workspace, prompts_file, "bench-prompts", eval_fraction=0.0)
    config = PPOJobConfig(
        model=str(policy),
        reward_model=str(reward),
        dataset="bench-prompts",
        max_steps=args.steps,
        per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=args.batch // MICRO_BATCH,
        num_mini_batches=1,
        num_ppo_epochs=args.epochs,
        response_length=args.response_length,
        temperature=TEMPERATURE,
        missing_eos_penalty=None,  # TRL's default
        max_grad_norm=0.0,  # TRL's PPO does not clip gradients
        local_rollout_forward_batch_size=args.batch,
        save_steps=10**6,
        sample_steps=10**6,
        lora=LoraSettings(enabled=False),  # full fine-tuning, as TRL's side
    )
    trainer = PPOTrainer(config, scratch / "studio-run", workspace, reward_fn=None)
    if args.fixed_length:
        trainer.settings.eos_token_ids = []  # as TRL with stop_token=None: EOS is a token like any other
    rows = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        rows.append(trainer.train_step())
    result = timing(args, started, cpu_started, sum(row["response/length"] for row in rows) / len(rows))
    phases = ("time/generation", "time/scoring", "time/update")
    means = [f"{phase[5:]} {sum(row[phase] for row in rows) / len(rows):.1f}" for phase in phases]
    print("   studio phases (s per step): " + ", ".join(means))
    return result


def timing(args, started: float, cpu_started: float, response_length: float) -> dict:
    """Samples per second of wall-clock time, and per second of this process's CPU time (which a busy,
    shared machine disturbs less: with one thread it is close to the wall time on an idle core)."""
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    samples = args.steps * args.batch
    return {
        "samples": samples,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "cpu_seconds": cpu_seconds,
        "samples_per_cpu_second": samples / cpu_seconds,
        "response_length": response_length,
    }


# ---------------------------------------------------------------- (b) TRL 1.12, in its own venv


def run_trl_subprocess(args, policy: Path, reward: Path, scratch: Path) -> dict:
    out = scratch / "trl.json"
    command = [str(TRL_PYTHON), __file__, "--trl-side", str(out), "--policy", str(policy)]
    command += ["--reward", str(reward), "--steps", str(args.steps), "--batch", str(args.batch)]
    command += ["--response-length", str(args.response_length), "--epochs", str(args.epochs)]
    command += ["--fixed-length"] if args.fixed_length else []
    environment = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "PYTHONPATH": ""}
    subprocess.run(command, check=True, env=environment, cwd=scratch)
    return json.loads(out.read_text())


def run_trl(args) -> dict:
    """TRL's side (runs inside bench/.venv-trl112): PPOTrainer.train() on the same setup."""
    import torch
    import trl.experimental.ppo.ppo_trainer as trl_ppo
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.policy, padding_side="left")
    lengths = count_response_lengths(trl_ppo, tokenizer.eos_token_id)
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in bench_prompts(args.batch * args.steps)
    ]
    dataset = Dataset.from_dict(
        {"input_ids": [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]}
    )
    policy = AutoModelForCausalLM.from_pretrained(args.policy, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(args.policy, dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(
        args.reward, num_labels=1, dtype=torch.float32
    )
    value = AutoModelForSequenceClassification.from_pretrained(args.reward, num_labels=1, dtype=torch.float32)
    config = PPOConfig(
        output_dir=str(Path.cwd() / "trl-run"),
        per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=args.batch // MICRO_BATCH,
        num_mini_batches=1,
        num_ppo_epochs=args.epochs,
        total_episodes=args.batch * args.steps,
        response_length=args.response_length,
        temperature=TEMPERATURE,
        local_rollout_forward_batch_size=args.batch,
        stop_token=None if args.fixed_length else "eos",
        num_sample_generations=0,
        save_strategy="no",
        report_to="none",
        bf16=False,
        seed=42,
        disable_tqdm=True,
        logging_steps=1,
    )
    trainer = PPOTrainer(
        args=config,
        processing_class=tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=reward,
        train_dataset=dataset,
        value_model=value,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    length = args.response_length if args.fixed_length else sum(lengths) / max(len(lengths), 1)
    return timing(args, started, cpu_started, length)


def count_response_lengths(trl_ppo, eos_token_id: int) -> list[int]:
    """Wrap TRL's batch_generation to record each response's length up to EOS (TRL does not log it)."""
    import torch

    lengths = []
    generate = trl_ppo.batch_generation

    def batch_generation_counting(model, queries, *rest, **kwargs):
        query_responses, logits = generate(model, queries, *rest, **kwargs)
        is_eos = query_responses[:, queries.shape[1] :] == eos_token_id
        first_eos = is_eos.int().argmax(dim=1) + 1
        lengths.extend(torch.where(is_eos.any(dim=1), first_eos, is_eos.shape[1]).tolist())
        return query_responses, logits

    trl_ppo.batch_generation = batch_generation_counting
    return lengths


if __name__ == "__main__":
    main()
