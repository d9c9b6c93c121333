"""`eval rm`, `eval winrate` and `report` on the command line.

    python -m rlhf_studio eval rm RM_RUN [--data NAME] [--split eval|train|all] [--json]
    python -m rlhf_studio eval winrate RUN --baseline RUN|base --judge RM_RUN --prompts NAME [--json]
    python -m rlhf_studio report RUN [RUN ...] [--json | --csv]

`eval rm` defaults to the held-out split of the dataset the reward model trained on. Results are stored with
the run (`<run>/evals/`) unless --no-save; `report` prints one run's card, or a comparison table of several.
Exit codes: 0 done, 1 refused (the reason is printed as one sentence).
"""

from __future__ import annotations

import argparse
import json
import sys

from rlhf_studio.data import DataError
from rlhf_studio.evaluation.report import (
    card_markdown,
    comparison_rows,
    eval_lines,
    report_card,
    rows_csv,
    rows_markdown,
)
from rlhf_studio.evaluation.settings import WinRateSettings
from rlhf_studio.evaluation.specs import EvaluationError, as_spec
from rlhf_studio.evaluation.store import run_id_of, save_eval
from rlhf_studio.models import ModelError
from rlhf_studio.runner.runs import RunError, run_dir
from rlhf_studio.stages import load_config
from rlhf_studio.workspace import Workspace

REFUSALS = (EvaluationError, DataError, ModelError, RunError, FileNotFoundError)


def add_eval_commands(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("eval", help="reward-model accuracy and RM-judged win rates")
    commands = evaluate.add_subparsers(dest="eval_command", required=True)

    rm = commands.add_parser("rm", help="accuracy, margin and calibration of a reward model")
    rm.add_argument("run", help="reward-model run id (or run:<id>, a folder)")
    rm.add_argument("--data", help="preference dataset (default: the one the run trained on)")
    rm.add_argument("--split", default="eval", choices=("eval", "train", "all"))
    rm.add_argument("--limit", type=int, help="first N pairs only")
    _add_output_options(rm)
    rm.set_defaults(func=guarded(run_rm))

    winrate = commands.add_parser("winrate", help="win / tie / loss of a policy against a baseline")
    winrate.add_argument("run", help="candidate run id")
    winrate.add_argument("--baseline", required=True, help="a run id, or 'base': the lineage's root model")
    winrate.add_argument("--judge", required=True, help="reward-model run that scores both replies")
    winrate.add_argument("--prompts", required=True, help="dataset whose prompts to answer")
    defaults = WinRateSettings()
    winrate.add_argument("--split", default=defaults.split, choices=("eval", "train", "all"))
    winrate.add_argument("--limit", type=int, help="first N prompts only")
    winrate.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    winrate.add_argument("--temperature", type=float, default=defaults.temperature)
    winrate.add_argument("--top-p", type=float, default=defaults.top_p)
    winrate.add_argument("--seed", type=int, default=defaults.seed)
    winrate.add_argument("--batch-size", type=int, default=defaults.batch_size)
    winrate.add_argument("--tie-margin", type=float, default=defaults.tie_margin)
    _add_output_options(winrate)
    winrate.set_defaults(func=guarded(run_winrate))

    report = subparsers.add_parser("report", help="a run's report card, or a table comparing runs")
    report.add_argument("runs", nargs="+", help="run ids")
    output = report.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="the card(s) or rows as JSON")
    output.add_argument("--csv", action="store_true", help="the comparison table as CSV")
    report.set_defaults(func=guarded(run_report))


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--no-save", action="store_true", help="do not store the result with the run")


def guarded(command):
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args, Workspace.from_env())
        except REFUSALS as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    return run


def progress(fraction: float, text: str) -> None:
    if text:
        print(f"[{fraction:4.0%}] {text}", file=sys.stderr, flush=True)


def run_rm(args: argparse.Namespace, workspace: Workspace) -> int:
    from rlhf_studio.chat import ModelCache  # loads torch and transformers: only when evaluating
    from rlhf_studio.evaluation.reward_eval import evaluate_reward_model

    spec = as_spec(workspace, args.run)
    dataset = args.data
    if dataset is None:
        run_id = run_id_of(spec)
        if run_id is None:
            raise EvaluationError("--data is needed for a reward model that is not a run of this workspace.")
        dataset = load_config(run_dir(workspace, run_id) / "config.yaml").dataset
    result = evaluate_reward_model(
        ModelCache(workspace), spec, dataset, args.split, limit=args.limit, progress=progress
    ).to_dict()
    return finish(args, workspace, result, spec)


def run_winrate(args: argparse.Namespace, workspace: Workspace) -> int:
    from rlhf_studio.chat import ModelCache
    from rlhf_studio.evaluation.win_rate import evaluate_win_rate

    settings = WinRateSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
        tie_margin=args.tie_margin,
        limit=args.limit,
        split=args.split,
    )
    result = evaluate_win_rate(
        ModelCache(workspace), args.run, args.baseline, args.judge, args.prompts, settings, progress
    ).to_dict()
    return finish(args, workspace, result, result["candidate"])


def finish(args: argparse.Namespace, workspace: Workspace, result: dict, spec: str) -> int:
    run_id = run_id_of(spec)
    if run_id and not args.no_save:
        print(f"saved {save_eval(workspace, run_id, result)}", file=sys.stderr)
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else "\n".join(eval_lines(result)))
    return 0


def run_report(args: argparse.Namespace, workspace: Workspace) -> int:
    if len(args.runs) == 1 and not args.csv:
        card = report_card(workspace, args.runs[0])
        print(json.dumps(card, indent=2, ensure_ascii=False) if args.json else card_markdown(card), end="")
        return 0
    rows = comparison_rows(workspace, args.runs)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print(rows_csv(rows) if args.csv else rows_markdown(rows), end="")
    return 0
