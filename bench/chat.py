"""Chat arena on the bundled model: memory of three LoRA panes on one base, and time to first token.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/chat.py [--rounds 2] [--ttft-rounds 12] [--tokens 32]

(a) Peak memory, in child processes run alternately (order flipped every round): "bare" loads the bundled
model with `from_pretrained` and writes `--tokens` tokens with `model.generate`; "arena" opens a ChatArena of
three panes showing three LoRA runs of the bundled model (the studio's default LoRA: r=16 on every attention
and MLP projection, random weights) and streams `--tokens` tokens in every pane. Each child reports its peak
RSS (ru_maxrss) and its RSS right after the imports (both import the same modules); the ratio is printed for
the whole process and for the part above the imports. Target: arena / bare <= 1.2.

(b) Time to first token, in this process, alternating: the chat engine (`ChatArena.send` with the bundled
model, until pane A shows text: chat template, tokenizing, cache lookup, prefill, one sampled token) vs a
bare `apply_chat_template` + `model.generate(max_new_tokens=1)` with the same sampling settings, on a second
copy of the same weights. Medians and the ratio; target <= 1.2. For information also the first token of a
LoRA pane, and of all three LoRA panes.

The bundled model comes from $RLHF_STUDIO_HOME (default ./workspace; converted on first use); the LoRA runs
are written to a temporary workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MESSAGE = "Write a short paragraph about why the sky is blue."
RUN_IDS = ("bench-lora-1", "bench-lora-2", "bench-lora-3")


def settings(tokens: int):
    from rlhf_studio.chat import GenerationSettings

    return GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=tokens, seed=0)


def make_lora_runs(base: Path, workspace_root: Path) -> None:
    """Three finished LoRA "runs" of the bundled model, saved as training saves them (adapter + tokenizer)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_studio.config import LoraSettings
    from rlhf_studio.training.common import auto_target_modules

    defaults = LoraSettings()
    tokenizer = AutoTokenizer.from_pretrained(base)
    for seed, run_id in enumerate(RUN_IDS):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        lora = LoraConfig(
            r=defaults.r,
            lora_alpha=defaults.alpha,
            target_modules=auto_target_modules(model),
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
        torch.manual_seed(seed)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # B starts at zero: give each run a small update of its own
                torch.nn.init.normal_(parameter, std=0.002)
        folder = workspace_root / "runs" / run_id / "model"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


# ---------------------------------------------------------------- (a) memory, one child per measurement


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_child(kind: str, base: Path, workspace_root: Path, tokens: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_studio.chat import ChatArena, ModelCache
    from rlhf_studio.workspace import Workspace

    after_imports = rss_bytes()
    if kind == "bare":
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
        bare_generate(model, AutoTokenizer.from_pretrained(base), tokens)
    else:
        arena = ChatArena(ModelCache(Workspace.at(workspace_root)), [f"run:{run_id}" for run_id in RUN_IDS])
        for _ in arena.send(MESSAGE, settings(tokens)):
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps({"peak": peak, "after_imports": after_imports}), flush=True)


def measure_memory(base: Path, workspace_root: Path, tokens: int, rounds: int) -> None:
    results: dict[str, list[dict]] = {"bare": [], "arena": []}
    for round_index in range(rounds):
        for kind in ("bare", "arena") if round_index % 2 == 0 else ("arena", "bare"):
            command = [sys.executable, __file__, "--memory-child", kind, str(base), str(workspace_root)]
            command += ["--tokens", str(tokens)]
            finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            if finished.returncode != 0:
                raise SystemExit(f"{kind} child failed:\n{finished.stderr[-4000:]}")
            line = next(line for line in finished.stdout.splitlines() if line.startswith("RESULT "))
            result = json.loads(line.removeprefix("RESULT "))
            results[kind].append(result)
            print(
                f"memory round {round_index} {kind}: peak {mib(result['peak'])}, "
                f"above imports {mib(result['peak'] - result['after_imports'])}",
                flush=True,
            )
    peak = {kind: statistics.median(r["peak"] for r in runs) for kind, runs in results.items()}
    above = {
        kind: statistics.median(r["peak"] - r["after_imports"] for r in runs)
        for kind, runs in results.items()
    }
    print(
        f"(a) peak memory: bare model {mib(peak['bare'])}, three LoRA panes {mib(peak['arena'])}, "
        f"ratio {peak['arena'] / peak['bare']:.3f} | above imports: bare {mib(above['bare'])}, "
        f"three LoRA panes {mib(above['arena'])}, ratio {above['arena'] / above['bare']:.3f} (target <= 1.2)",
        flush=True,
    )


def mib(size: float) -> str:
    return f"{size / 2**20:.0f} MiB"


# ---------------------------------------------------------------- (b) time to first token, side by side


def engine_first_token(arena, tokens: int, panes: int = 1) -> float:
    """Seconds from send() until the first `panes` panes show text."""
    started = time.perf_counter()
    stream = arena.send(MESSAGE, settings(tokens))
    for views in stream:
        if all(view.messages[-1]["content"] for view in views[:panes]):
            elapsed = time.perf_counter() - started
            stream.close()
            arena.clear()
            return elapsed
    raise RuntimeError("no pane wrote anything")


def bare_generate(model, tokenizer, tokens: int) -> None:
    """What a plain script does: the chat template, then `generate` with the engine's sampling settings."""
    import torch

    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": MESSAGE}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        model.generate(**inputs, do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=tokens)


def bare_first_token(model, tokenizer) -> float:
    started = time.perf_counter()
    bare_generate(model, tokenizer, tokens=1)
    return time.perf_counter() - started


def measure_first_token(base: Path, workspace_root: Path, tokens: int, rounds: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_studio.chat import ChatArena, ModelCache
    from rlhf_studio.workspace import Workspace

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(base)
    cache = ModelCache(Workspace.at(workspace_root))
    engine = ChatArena(cache, [str(base), str(base)])
    lora = ChatArena(cache, [f"run:{run_id}" for run_id in RUN_IDS])
    variants = {
        "engine": lambda: engine_first_token(engine, tokens),
        "bare": lambda: bare_first_token(model, tokenizer),
        "lora pane": lambda: engine_first_token(lora, tokens),
        "3 lora panes": lambda: engine_first_token(lora, tokens, panes=3),
    }
    for measure in variants.values():  # warm-up: first calls pay for lazy initialisation
        measure()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(rounds):
        order = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(variants[name]())
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(
            f"first token {name}: median {median[name] * 1000:.1f} ms over {len(values)} rounds", flush=True
        )
    print(
        f"(b) time to first token: chat engine {median['engine'] * 1000:.1f} ms vs bare generate "
        f"{median['bare'] * 1000:.1f} ms, ratio {median['engine'] / median['bare']:.3f} (target <= 1.2) | "
        f"LoRA pane {median['lora pane'] * 1000:.1f} ms, all three LoRA panes "
        f"{median['3 lora panes'] * 1000:.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="memory measurements of each kind")
    parser.add_argument("--ttft-rounds", type=int, default=12, help="first-token measurements of each kind")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per pane in the memory runs")
    parser.add_argument(
        "--memory-child", nargs=3, metavar=("KIND", "BASE", "WORKSPACE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_child:
        kind, base, workspace_root = args.memory_child
        memory_child(kind, Path(base), Path(workspace_root), args.tokens)
        return

    import torch

    from rlhf_studio.models import ensure_bundled_model
    from rlhf_studio.workspace import Workspace

    print(f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    base = ensure_bundled_model(Workspace.from_env())
    with tempfile.TemporaryDirectory(prefix="rlhf-chat-bench-") as scratch:
        workspace_root = Path(scratch) / "workspace"
        make_lora_runs(base, workspace_root)
        measure_memory(base, workspace_root, args.tokens, args.rounds)
        measure_first_token(base, workspace_root, args.tokens, args.ttft_rounds)


if __name__ == "__main__":
    main()
