"""Each stage's default settings on the bundled model and the demo data: wall time and whether it learns.

    python bench/demo_defaults.py [--stages sft rm dpo kto orpo simpo ppo grpo rloo] [--sft-run ID]
                                  [--rm-run ID]

Runs the chain the README promises, one stage after another as `python -m rlhf_studio train` children (the
runner's path): SFT on demo SFT data, then a reward model, DPO, KTO, PPO, GRPO and RLOO each from the SFT run
(the RL stages scored by the RM run), and ORPO and SimPO from the base model (they need no SFT first). Every
config is the stage's defaults with only model, dataset and reward model set. Prints per stage the wall time
(process start included; target <= 10 min, PPO <= 15 min on a 2-core CPU) and the first and last value of the
metrics that show learning. `--sft-run` / `--rm-run` reuse finished runs. Uses $RLHF_STUDIO_HOME (default
./workspace); converts the bundled model and imports the demo data if needed.
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

from rlhf_studio.config import save_config  # noqa: E402
from rlhf_studio.data import import_dataset, list_datasets  # noqa: E402
from rlhf_studio.runner.runs import create_run_dir  # noqa: E402
from rlhf_studio.stages import get_stage  # noqa: E402
from rlhf_studio.workspace import Workspace  # noqa: E402

DATASETS = {
    "sft": "demo-sft",
    "rm": "demo-preference",
    "dpo": "demo-preference",
    "kto": "demo-preference",  # each pair: one desirable and one undesirable reply
    "orpo": "demo-preference",
    "simpo": "demo-preference",
    "ppo": "demo-prompts",
    "grpo": "demo-prompts",
    "rloo": "demo-prompts",
}
FROM_BASE = ("orpo", "simpo")  # one stage from the base model, no SFT first
EVAL_PROMPTS = "demo-eval-prompts"  # held out from every stage, for win rates (bench/eval_demo.py)
LIMITS = {stage: 900 if stage == "ppo" else 600 for stage in DATASETS}  # seconds


def import_demo(workspace: Workspace) -> None:
    have = {info.name for info in list_datasets(workspace)}
    for name in (set(DATASETS.values()) | {EVAL_PROMPTS}) - have:
        source = REPO / "assets" / "demo" / f"{name.removeprefix('demo-').replace('-', '_')}.jsonl"
        prompts_only = name in ("demo-prompts", EVAL_PROMPTS)
        import_dataset(workspace, source, name, eval_fraction=0.0 if prompts_only else 0.1)


def run_stage(workspace: Workspace, stage: str, links: dict[str, str]) -> tuple[str, float]:
    values = {"dataset": DATASETS[stage]}
    if stage not in ("sft", *FROM_BASE) and links.get("sft"):
        values["model"] = f"run:{links['sft']}"
    if get_stage(stage).scored_by_reward_model:
        values["reward_model"] = f"run:{links['rm']}"
    config = get_stage(stage).config(**values)
    run_id, folder = create_run_dir(workspace, stage)
    save_config(config, folder / "config.yaml")
    started = time.perf_counter()
    command = [sys.executable, "-m", "rlhf_studio", "train", str(folder / "config.yaml"), "--run-dir"]
    command.append(str(folder))
    with open(folder / "train.log", "ab") as log:
        finished = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{stage} failed; see {folder / 'train.log'}")
    return run_id, seconds


def curve(folder: Path, metric: str) -> tuple[float, float, int] | None:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    values = [row[metric] for row in rows if isinstance(row.get(metric), int | float)]
    return (values[0], values[-1], len(values)) if values else None


def report(workspace: Workspace, stage: str, run_id: str, seconds: float) -> None:
    verdict = "ok" if seconds <= LIMITS[stage] else f"OVER {LIMITS[stage]} s"
    print(f"{stage:>4}: {run_id}  {seconds:6.0f} s  ({verdict})")
    for metric, better in get_stage(stage).learning.items():
        found = curve(workspace.runs_dir / run_id, metric)
        if found:
            first, last, count = found
            print(f"      {metric:<24} {first:9.3f} -> {last:9.3f}  ({count} points; {better})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["sft", "rm", "dpo", "ppo"], choices=list(DATASETS))
    parser.add_argument("--sft-run")
    parser.add_argument("--rm-run")
    args = parser.parse_args()
    workspace = Workspace.from_env()
    import_demo(workspace)
    links = {"sft": args.sft_run, "rm": args.rm_run}
    for stage in args.stages:
        if get_stage(stage).scored_by_reward_model and not links.get("rm"):
            raise SystemExit(f"{stage} needs a reward model: run the rm stage first or pass --rm-run")
        run_id, seconds = run_stage(workspace, stage, links)
        links[stage] = run_id
        report(workspace, stage, run_id, seconds)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
