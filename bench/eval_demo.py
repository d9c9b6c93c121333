"""Did RLHF help on the bundled demo? RM held-out accuracy and each policy's win rate against the base.

    RLHF_STUDIO_HOME=... python bench/eval_demo.py --rm-run RM_ID --policies SFT_ID DPO_ID PPO_ID

Runs after bench/demo_defaults.py trained the chain (SFT -> RM, SFT -> DPO, SFT -> PPO with default
settings). Judges every policy against the base model (the root of its lineage) with the RM run on the 70
held-out prompts of assets/demo/eval_prompts.jsonl (no stage trains on them), with the evaluation's default
sampling settings and seed, and stores each result with its run. Prints the RM's accuracy on the held-out
split of its own preference data and, per policy, win / tie / loss with the 95% interval, mean KL to the
model the run started from, and mean reply length beside the base's. Targets: RM accuracy >= 0.90, win
rate >= 75% for DPO and PPO.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from demo_defaults import EVAL_PROMPTS, import_demo  # noqa: E402

from rlhf_studio.chat import ModelCache  # noqa: E402
from rlhf_studio.evaluation.reward_eval import evaluate_reward_model  # noqa: E402
from rlhf_studio.evaluation.store import save_eval  # noqa: E402
from rlhf_studio.evaluation.win_rate import evaluate_win_rate  # noqa: E402
from rlhf_studio.runner.runs import read_status, run_dir  # noqa: E402
from rlhf_studio.stages import load_config  # noqa: E402
from rlhf_studio.workspace import Workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rm-run", required=True)
    parser.add_argument("--policies", nargs="+", required=True, help="policy run ids (SFT, DPO, PPO)")
    parser.add_argument("--prompts", default=EVAL_PROMPTS)
    args = parser.parse_args()
    workspace = Workspace.from_env()
    import_demo(workspace)
    cache = ModelCache(workspace)

    started = time.perf_counter()
    dataset = load_config(run_dir(workspace, args.rm_run) / "config.yaml").dataset
    rm = evaluate_reward_model(cache, args.rm_run, dataset, split="eval")
    save_eval(workspace, args.rm_run, rm.to_dict())
    low, high = rm.accuracy_interval
    print(
        f"RM {args.rm_run} on {dataset} (held-out, {rm.pairs} pairs): accuracy {rm.accuracy:.3f} "
        f"[95% CI {low:.3f}-{high:.3f}], mean margin {rm.mean_margin:.2f}, calibration error "
        f"{rm.calibration_error:.3f} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    header = f"{'policy':<34} {'stage':<5} {'win':>6} {'95% CI':>13} {'tie':>5} {'loss':>5} "
    print(header + f"{'KL':>6} {'tokens':>7} {'base tok':>8} {'win|not longer':>14} {'time':>6}")
    for run_id in args.policies:
        started = time.perf_counter()
        result = evaluate_win_rate(cache, run_id, "base", args.rm_run, args.prompts)
        save_eval(workspace, run_id, result.to_dict())
        rate = result.win_rate
        low, high = rate["win_interval"]
        not_longer = "-" if result.win_when_not_longer is None else f"{result.win_when_not_longer:.1%}"
        print(
            f"{run_id:<34} {read_status(run_dir(workspace, run_id)).stage:<5} {rate['win']:>6.1%} "
            f"{f'{low:.1%}-{high:.1%}':>13} {rate['tie']:>5.1%} {rate['loss']:>5.1%} "
            f"{result.mean_kl if result.mean_kl is not None else float('nan'):>6.2f} "
            f"{result.candidate_length:>7.1f} {result.baseline_length:>8.1f} "
            f"{not_longer:>14} {time.perf_counter() - started:>5.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
