"""GRPO on a verifiable task: does an answer-match reward raise held-out answer accuracy?

    RLHF_STUDIO_HOME=... python bench/grpo_answers.py [--model SPEC] [--stage grpo|rloo] [--max-steps N]

Trains the stage with its defaults and one reward, answer match (numeric) against the `answer` column of the
demo arithmetic set (assets/demo/arithmetic.jsonl, 120 prompts), from `--model` (default: the bundled model),
as a `python -m rlhf_studio train` child. Before and after, every one of the 40 held-out prompts of
assets/demo/arithmetic_eval.jsonl (none of them in the training file) is answered at temperature 0.05 (near
greedy, fixed seed) and scored by the same answer reward: prints both accuracies, their Wilson 95% intervals,
the training's wall time and its first and last `rewards/answer/mean`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rlhf_studio.chat import ModelCache  # noqa: E402
from rlhf_studio.config import save_config  # noqa: E402
from rlhf_studio.data import import_dataset, list_datasets, load_split  # noqa: E402
from rlhf_studio.evaluation.settings import WinRateSettings  # noqa: E402
from rlhf_studio.evaluation.stats import wilson_interval  # noqa: E402
from rlhf_studio.evaluation.win_rate import generate  # noqa: E402
from rlhf_studio.models import BUNDLED_MODEL  # noqa: E402
from rlhf_studio.rewards import RuleRewardSettings, answer_reward  # noqa: E402
from rlhf_studio.runner.runs import create_run_dir  # noqa: E402
from rlhf_studio.stages import get_stage  # noqa: E402
from rlhf_studio.workspace import Workspace  # noqa: E402

TRAIN, HELD_OUT = "demo-arithmetic", "demo-arithmetic-eval"
NEAR_GREEDY = WinRateSettings(max_new_tokens=48, temperature=0.05, seed=0)


def import_sets(workspace: Workspace) -> None:
    have = {info.name for info in list_datasets(workspace)}
    for name, file in ((TRAIN, "arithmetic.jsonl"), (HELD_OUT, "arithmetic_eval.jsonl")):
        if name not in have:
            import_dataset(workspace, REPO / "assets" / "demo" / file, name, eval_fraction=0.0)


def accuracy(cache: ModelCache, spec: str, rows: list[dict]) -> tuple[float, tuple[float, float]]:
    """Share of held-out prompts whose reply's last number is the answer, with its 95% interval."""
    replies = generate(cache.load(spec), [row["prompt"] for row in rows], NEAR_GREEDY).texts
    scores = answer_reward("answer", "numeric")(completions=replies, answer=[row["answer"] for row in rows])
    right = sum(1 for score in scores if score == 1.0)
    return right / len(rows), wilson_interval(right, len(rows))


def train(workspace: Workspace, stage: str, model: str, max_steps: int | None) -> tuple[str, float]:
    rewards = RuleRewardSettings(answer_column="answer", answer_match="numeric")
    overrides = {"max_steps": max_steps} if max_steps else {}
    config = get_stage(stage).config(model=model, dataset=TRAIN, rewards=rewards, **overrides)
    run_id, folder = create_run_dir(workspace, stage)
    save_config(config, folder / "config.yaml")
    command = [
        sys.executable,
        "-m",
        "rlhf_studio",
        "train",
        str(folder / "config.yaml"),
        "--run-dir",
        str(folder),
    ]
    started = time.perf_counter()
    with open(folder / "train.log", "ab") as log:
        finished = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        raise SystemExit(f"{stage} failed; see {folder / 'train.log'}")
    return run_id, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BUNDLED_MODEL)
    parser.add_argument("--stage", default="grpo", choices=["grpo", "rloo"])
    parser.add_argument("--max-steps", type=int)
    args = parser.parse_args()
    workspace = Workspace.from_env()
    import_sets(workspace)
    rows = list(load_split(workspace, HELD_OUT, "train"))
    cache = ModelCache(workspace)
    before, (low, high) = accuracy(cache, args.model, rows)
    print(f"start {args.model}: held-out accuracy {before:.1%} [95% CI {low:.1%}-{high:.1%}] on {len(rows)}")
    run_id, seconds = train(workspace, args.stage, args.model, args.max_steps)
    metrics = [json.loads(line) for line in (workspace.runs_dir / run_id / "metrics.jsonl").open()]
    curve = [row["rewards/answer/mean"] for row in metrics if "rewards/answer/mean" in row]
    print(f"{args.stage} {run_id}: {seconds:.0f} s; rewards/answer/mean {curve[0]:.3f} -> {curve[-1]:.3f}")
    after, (low, high) = accuracy(cache, f"run:{run_id}", rows)
    print(f"after {args.stage}: held-out accuracy {after:.1%} [95% CI {low:.1%}-{high:.1%}]")


if __name__ == "__main__":
    main()
