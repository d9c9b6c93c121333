"""Arena votes and thumbs on disk: their logs, the library datasets they grow, and JSONL export.

    workspace/arena/votes.jsonl           every vote, ties and both-bad included (the arena statistics)
    workspace/arena/feedback.jsonl        every thumb up or down on one pane's reply
    workspace/datasets/<name>/train.jsonl the rows, in TRL's conversational explicit-prompt format:
      votes   {"prompt": [messages...], "chosen": [{"role": "assistant", ...}], "rejected": [...],
               "metadata": {"vote_id", "time", "vote", "chosen_model", "rejected_model", "blind", "settings"}}
      thumbs  {"prompt": [messages...], "completion": [{"role": "assistant", ...}], "label": true|false,
               "metadata": {"thumb_id", "time", "model", "blind", "settings"}}
                             /eval.jsonl  empty: every row is training data (export and re-import to split)
                             /manifest.json  source_file "arena/votes.jsonl" (format and kind "preference")
                                             or "arena/feedback.jsonl" (format "kto", "unpaired_preference")

`VOTES` and `FEEDBACK` (an `ArenaData` each) name a log, the data doctor's layout for its rows and the
default dataset; every method that writes takes one, so both grow their datasets through the same code. A
dataset belongs to the log its manifest names: votes never go into a thumbs dataset, nor either into one the
arena did not make.

The data doctor decides which rows are stored: new rows are checked with `check_file` as the layout first,
and rows it would drop (identical or empty replies, ...) are skipped with its reason, so the dataset is
always one the RM and DPO stages (votes) or the KTO stage (thumbs) accept as it is.

A crash never leaves a broken file: a new dataset is written in a hidden folder and renamed into place; a
grown `train.jsonl` is written next to the old one and swapped in with `os.replace`, then the manifest (whose
counts are recounted from the file on every write, so a crash between the two heals on the next row). A log
is appended one fsynced line at a time; a torn last line is skipped when reading and closed before the next
append. One file lock (arena/.lock) serializes writers across threads and processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from rlhf_studio.data import DataError, Manifest, check_file, read_manifest
from rlhf_studio.data.library import SPLITS, dataset_dir
from rlhf_studio.workspace import Workspace, write_json_atomic

ARENA_DIR = "arena"


@dataclass(frozen=True)
class ArenaData:
    """One kind of arena record: the log it is kept in and the library dataset its rows grow."""

    noun: str  # what the records are called in messages: "votes", "thumbs"
    log: str  # the log's file name under arena/
    format: str  # the data doctor's layout for the rows (check_file's format_name)
    kind: str
    default_dataset: str

    @property
    def source(self) -> str:
        """The manifest's source_file: marks the datasets the arena grows from this log."""
        return f"{ARENA_DIR}/{self.log}"


VOTES = ArenaData("votes", "votes.jsonl", "preference", "preference", "arena-votes")
FEEDBACK = ArenaData("thumbs", "feedback.jsonl", "kto", "unpaired_preference", "arena-feedback")
ARENA_DATA = (VOTES, FEEDBACK)
DEFAULT_DATASET = VOTES.default_dataset
DEFAULT_FEEDBACK_DATASET = FEEDBACK.default_dataset


@dataclass
class Added:
    """What adding rows to an arena dataset did."""

    stored: int
    skipped: list[str]  # the data doctor's reason for each row it refused, e.g. "line 1, rejected: ..."
    total: int  # rows in the dataset now


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a part."""
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8"
    ) as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.replace(out.name, path)
    except OSError:
        os.unlink(out.name)
        raise


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def export_dataset(workspace: Workspace, name: str, path: str | Path) -> Path:
    """Every row of a library dataset (train, then eval) as one JSONL file at `path`."""
    read_manifest(workspace, name)  # DataError when there is no such dataset
    folder = dataset_dir(workspace, name)
    text = "".join((folder / f"{split}.jsonl").read_text(encoding="utf-8") for split in SPLITS)
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, text)
    return target


class ArenaStore:
    """The votes and feedback logs and the arena's datasets of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.folder = workspace.root / ARENA_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.votes_path = self.log_path(VOTES)

    def log_path(self, data: ArenaData) -> Path:
        return self.folder / data.log

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # ---------------------------------------------------------------- the logs

    def append_record(self, data: ArenaData, record: dict) -> None:
        with self.locked(), open(self.log_path(data), "a+b") as log:
            if log.tell() > 0:
                log.seek(-1, os.SEEK_END)
                if log.read(1) != b"\n":  # a crash tore the last line: close it off
                    log.write(b"\n")
            log.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            log.flush()
            os.fsync(log.fileno())

    def records(self, data: ArenaData) -> list[dict]:
        """Every record in `data`'s log, oldest first; a torn line is skipped."""
        path = self.log_path(data)
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def append_vote(self, record: dict) -> None:
        self.append_record(VOTES, record)

    def votes(self) -> list[dict]:
        return self.records(VOTES)

    # ---------------------------------------------------------------- the datasets

    def check_dataset(self, data: ArenaData, name: str) -> None:
        """DataError unless `name` is a valid dataset name that is free or already holds `data`'s rows."""
        if not dataset_dir(self.workspace, name).exists():
            return
        source = read_manifest(self.workspace, name).source_file
        if source == data.source:
            return
        owner = next((other for other in ARENA_DATA if other.source == source), None)
        made = f"holds the arena's {owner.noun}" if owner else "was not made by the arena"
        raise DataError(f"dataset {name!r} {made}: pick another name for the {data.noun}")

    def add_rows(self, data: ArenaData, name: str, rows: list[dict]) -> Added:
        """Add the rows the data doctor accepts in `data`'s layout to dataset `name` (made when missing)."""
        accepted, skipped = self.doctor(data, rows)
        with self.locked():
            folder = dataset_dir(self.workspace, name)
            if not accepted:
                total = self._count(folder / "train.jsonl")
            elif not folder.exists():
                total = self._create(data, name, accepted)
            else:
                total = self._append(data, name, accepted)
        return Added(len(accepted), skipped, total)

    def doctor(self, data: ArenaData, rows: list[dict]) -> tuple[list[dict], list[str]]:
        """(rows the data doctor accepts in `data`'s layout, the reasons it drops the others)."""
        if not rows:
            return [], []
        with tempfile.TemporaryDirectory(dir=self.folder) as scratch:
            path = Path(scratch) / "rows.jsonl"
            path.write_text(jsonl(rows), encoding="utf-8")
            report = check_file(path, format_name=data.format, keep_everything=True)
        dropped = {problem.line: problem.describe() for problem in report.problems}
        accepted = [row for line, row in enumerate(rows, start=1) if line not in dropped]
        return accepted, list(dropped.values())

    @staticmethod
    def _count(train: Path) -> int:
        return train.read_text(encoding="utf-8").count("\n") if train.is_file() else 0

    def _create(self, data: ArenaData, name: str, rows: list[dict]) -> int:
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.workspace.datasets_dir))
        try:
            write_text_atomic(staging / "train.jsonl", jsonl(rows))
            write_text_atomic(staging / "eval.jsonl", "")
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            manifest = self._manifest(data, name, len(rows), created)
            write_json_atomic(staging / "manifest.json", asdict(manifest))
            staging.rename(dataset_dir(self.workspace, name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename happened
        return len(rows)

    def _append(self, data: ArenaData, name: str, rows: list[dict]) -> int:
        self.check_dataset(data, name)
        manifest = read_manifest(self.workspace, name)
        train = dataset_dir(self.workspace, name) / "train.jsonl"
        text = train.read_text(encoding="utf-8") + jsonl(rows)
        write_text_atomic(train, text)
        total = text.count("\n")
        write_json_atomic(
            train.with_name("manifest.json"), asdict(self._manifest(data, name, total, manifest.created))
        )
        return total

    @staticmethod
    def _manifest(data: ArenaData, name: str, rows: int, created: str) -> Manifest:
        return Manifest(
            name=name,
            source_file=data.source,
            format=data.format,
            kind=data.kind,
            style="conversational",
            rows_total=rows,
            rows_train=rows,
            rows_eval=0,
            dropped=0,
            created=created,
            eval_fraction=0.0,
        )
