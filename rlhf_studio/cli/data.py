"""`data check` and `data import` on the command line.

    python -m rlhf_studio data check prefs.jsonl --stage dpo
    python -m rlhf_studio data check pairs.csv --map prompt=question,chosen=good,rejected=bad --json
    python -m rlhf_studio data check huge.jsonl --limit 10000       # a quick answer from the first records
    python -m rlhf_studio data import prefs.jsonl --name hh-small --eval-fraction 0.1

Exit codes: 0 usable (and fits --stage), 1 no usable rows or refused, 3 usable but does not fit --stage.
Output never fails on odd text (a file name with undecodable bytes): what the terminal cannot show is escaped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from rlhf_studio.data.check import DataReport, check_file
from rlhf_studio.data.detect import parse_column_map
from rlhf_studio.data.layouts import LAYOUTS_BY_NAME
from rlhf_studio.data.library import import_dataset
from rlhf_studio.data.problems import DataError, listed
from rlhf_studio.stages import stage_fit, stage_names
from rlhf_studio.workspace import Workspace

EXIT_OK, EXIT_UNUSABLE, EXIT_WRONG_STAGE = 0, 1, 3
PROBLEMS_PRINTED = 20


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `data check` and `data import` on a top-level subparsers object."""
    data = subparsers.add_parser("data", help="check and import datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    check = commands.add_parser("check", help="detect a file's format and report usable and dropped rows")
    _add_file_options(check)
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    check.add_argument(
        "--limit",
        type=_positive,
        metavar="N",
        help="check only the first N records (a quick answer for huge files)",
    )
    check.set_defaults(func=run_check)

    store = commands.add_parser("import", help="normalize a file into the workspace dataset library")
    _add_file_options(store)
    store.add_argument("--name", required=True, help="library name: letters, digits, '-' and '_'")
    store.add_argument(
        "--eval-fraction", type=float, default=0.1, help="share of records held out (0 allowed)"
    )
    store.add_argument("--seed", type=int, default=0, help="seed of the train/eval split")
    store.add_argument("--overwrite", action="store_true", help="replace a dataset of the same name")
    store.set_defaults(func=run_import)


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .jsonl, .json, .csv, .tsv or .parquet file")
    parser.add_argument(
        "--stage", choices=stage_names(), help="also check that the data fits this training stage"
    )
    parser.add_argument(
        "--format", choices=sorted(LAYOUTS_BY_NAME), help="skip detection and use this layout"
    )
    parser.add_argument("--map", type=_column_map, default={}, help="FIELD=COLUMN,... e.g. prompt=question")


def _column_map(text: str) -> dict[str, str]:
    try:
        return parse_column_map(text)
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of records of at least 1, got {text!r}")
    return int(text)


def write_out(text: str, stream=None) -> None:
    """Print `text`; characters the stream cannot encode (lone surrogates from undecodable file names) are
    escaped, and a reader that went away (`| head`) ends the output quietly."""
    stream = stream or sys.stdout
    encoding = stream.encoding or "utf-8"
    try:
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def run_check(args: argparse.Namespace) -> int:
    report = check_file(
        args.file,
        format_name=args.format,
        column_map=args.map,
        preview_rows=args.limit,
        keep_everything=args.json,
    )
    fit = stage_fit(report.kind, args.stage, report.format) if report.ok and args.stage else None
    if args.json:
        write_out(json.dumps(check_summary(report, args.stage, fit), ensure_ascii=False))
    else:
        write_out(_check_text(report, args.stage, fit))
    if not report.ok:
        return EXIT_UNUSABLE
    return EXIT_WRONG_STAGE if fit and not fit[0] else EXIT_OK


def check_summary(report: DataReport, stage: str | None, fit: tuple[bool, str] | None) -> dict:
    """The --json object: every normalized row (rankings as their pairs), every problem, and the counts."""
    return {
        "ok": report.ok and (fit is None or fit[0]),
        "message": report.message,
        "file": report.source_file,
        "file_type": report.file_type,
        "format": report.format,
        "kind": report.kind,
        "style": report.style,
        "columns": report.columns,
        "records_read": report.records_read,
        "rows": report.rows,
        "usable": report.usable,
        "dropped": report.dropped,
        "drop_reasons": report.drop_reasons,
        "problems": [problem.to_dict() for problem in report.problems],
        "stage": stage,
        "stage_fits": fit[0] if fit else None,
        "stage_reason": fit[1] if fit else None,
        "stats": report.stats,
    }


def _check_text(report: DataReport, stage: str | None, fit: tuple[bool, str] | None) -> str:
    lines = [report.message]
    if report.format:
        lines.append(f"format: {report.format} (kind {report.kind}, style {report.style})")
        lines.append(f"columns: {listed(report.columns)}")
    if report.unused_columns:
        lines.append(f"ignored columns: {listed(report.unused_columns)}")
    if report.alternatives:
        lines.append(f"also matches: {', '.join(report.alternatives)} (choose with --format)")
    if report.format or report.dropped:
        lines.append(f"usable rows: {report.usable}; dropped: {report.dropped}")
    if report.dropped:
        lines += [f"  {reason}: {count}" for reason, count in report.drop_reasons.items()]
        lines += [f"  {problem.describe()}" for problem in report.problems[:PROBLEMS_PRINTED]]
    if report.dropped > PROBLEMS_PRINTED:
        lines.append(
            f"  ... and {report.dropped - PROBLEMS_PRINTED} more (--json lists up to {len(report.problems)})"
        )
    if fit:
        lines.append(f"stage {stage}: {'fits' if fit[0] else 'does not fit'} ({fit[1]})")
    return "\n".join(lines)


def run_import(args: argparse.Namespace) -> int:
    try:
        manifest = import_dataset(
            Workspace.from_env(),
            args.file,
            args.name,
            format_name=args.format,
            column_map=args.map,
            eval_fraction=args.eval_fraction,
            seed=args.seed,
            stage=args.stage,
            overwrite=args.overwrite,
        )
    except DataError as error:
        write_out(f"not imported: {error}", sys.stderr)
        return EXIT_UNUSABLE
    lines = [
        f"stored {manifest.name}: {manifest.rows_train} train + {manifest.rows_eval} eval "
        f"{manifest.kind} rows ({manifest.format}, {manifest.style}); dropped {manifest.dropped}",
        *(f"  {reason}: {count}" for reason, count in manifest.drop_reasons.items()),
    ]
    write_out("\n".join(lines))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The data commands alone, for tests and `python -m rlhf_studio.cli.data data check FILE`."""
    parser = argparse.ArgumentParser(prog="rlhf_studio")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
