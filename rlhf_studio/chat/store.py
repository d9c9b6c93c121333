"""Arena votes on disk: the votes log, the preference dataset they grow, and its JSONL export.

    workspace/arena/votes.jsonl           every vote, ties and both-bad included (the arena statistics)
    workspace/datasets/<name>/train.jsonl the pairs, in TRL's conversational explicit-prompt format:
        {"prompt": [messages...], "chosen": [{"role": "assistant", ...}], "rejected": [...],
         "metadata": {"vote_id", "time", "vote", "chosen_model", "rejected_model", "blind", "settings"}}
                             /eval.jsonl  empty: every vote is training data (export and re-import to split)
                             /manifest.json  format "preference", source_file "arena/votes.jsonl"

The data doctor decides which pairs are stored: new rows are checked with `check_file` as the preference
layout first, and rows it would drop (identical or empty replies, ...) are skipped with its reason, so the
dataset is always one the RM and DPO stages accept as it is.

A crash never leaves a broken file: a new dataset is written in a hidden folder and renamed into place; a
grown `train.jsonl` is written next to the old one and swapped in with `os.replace`, then the manifest (whose
counts are recounted from the file on every write, so a crash between the two heals on the next vote). The
votes log is appended one fsynced line at a time; a torn last line is skipped when reading and closed before
the next append. One file lock (arena/.lock) serializes writers across threads and processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from rlhf_studio.data import DataError, Manifest, check_file, read_manifest
from rlhf_studio.data.library import SPLITS, dataset_dir
from rlhf_studio.workspace import Workspace, write_json_atomic

ARENA_DIR = "arena"
VOTES_FILE = "votes.jsonl"
ARENA_SOURCE = f"{ARENA_DIR}/{VOTES_FILE}"  # the manifest's source_file: marks datasets the arena owns
DEFAULT_DATASET = "arena-votes"


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
    """The votes log and the arena's preference datasets of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.folder = workspace.root / ARENA_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.votes_path = self.folder / VOTES_FILE

    @contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # ---------------------------------------------------------------- the votes log

    def append_vote(self, record: dict) -> None:
        with self.locked(), open(self.votes_path, "a+b") as log:
            if log.tell() > 0:
                log.seek(-1, os.SEEK_END)
                if log.read(1) != b"\n":  # a crash tore the last line: close it off
                    log.write(b"\n")
            log.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            log.flush()
            os.fsync(log.fileno())

    def votes(self) -> list[dict]:
        """Every vote in the log, oldest first; a torn line is skipped."""
        if not self.votes_path.is_file():
            return []
        records = []
        for line in self.votes_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    # ---------------------------------------------------------------- the preference dataset

    def check_dataset(self, name: str) -> None:
        """DataError unless `name` is a valid dataset name that is free or already the arena's."""
        if (
            dataset_dir(self.workspace, name).exists()
            and read_manifest(self.workspace, name).source_file != ARENA_SOURCE
        ):
            raise DataError(f"dataset {name!r} was not made by the arena: pick another name for the votes")

    def add_pairs(self, name: str, rows: list[dict]) -> tuple[int, list[str]]:
        """Append the rows the data doctor accepts to dataset `name` (created when missing).

        Returns (rows stored, "reason" for each skipped row).
        """
        accepted, skipped = self.doctor(rows)
        if not accepted:
            return 0, skipped
        with self.locked():
            folder = dataset_dir(self.workspace, name)
            if not folder.exists():
                self._create(name, accepted)
            else:
                self._append(name, accepted)
        return len(accepted), skipped

    def doctor(self, rows: list[dict]) -> tuple[list[dict], list[str]]:
        """(rows the data doctor accepts as preference pairs, the reasons it drops the others)."""
        if not rows:
            return [], []
        with tempfile.TemporaryDirectory(dir=self.folder) as scratch:
            path = Path(scratch) / "pairs.jsonl"
            path.write_text(jsonl(rows), encoding="utf-8")
            report = check_file(path, format_name="preference", keep_everything=True)
        dropped = {problem.line: problem.describe() for problem in report.problems}
        accepted = [row for line, row in enumerate(rows, start=1) if line not in dropped]
        return accepted, list(dropped.values())

    def _create(self, name: str, rows: list[dict]) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.workspace.datasets_dir))
        try:
            write_text_atomic(staging / "train.jsonl", jsonl(rows))
            write_text_atomic(staging / "eval.jsonl", "")
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            write_json_atomic(staging / "manifest.json", asdict(self._manifest(name, len(rows), created)))
            staging.rename(dataset_dir(self.workspace, name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename happened

    def _append(self, name: str, rows: list[dict]) -> None:
        self.check_dataset(name)
        manifest = read_manifest(self.workspace, name)
        train = dataset_dir(self.workspace, name) / "train.jsonl"
        text = train.read_text(encoding="utf-8") + jsonl(rows)
        write_text_atomic(train, text)
        write_json_atomic(
            train.with_name("manifest.json"), asdict(self._manifest(name, text.count("\n"), manifest.created))
        )

    @staticmethod
    def _manifest(name: str, rows: int, created: str) -> Manifest:
        return Manifest(
            name=name,
            source_file=ARENA_SOURCE,
            format="preference",
            kind="preference",
            style="conversational",
            rows_total=rows,
            rows_train=rows,
            rows_eval=0,
            dropped=0,
            created=created,
            eval_fraction=0.0,
        )
