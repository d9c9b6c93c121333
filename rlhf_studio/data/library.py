"""The dataset library: normalized datasets stored in the workspace, ready for the trainers.

    workspace/datasets/<name>/train.jsonl    normalized rows (TRL's standard or conversational style)
                             /eval.jsonl
                             /manifest.json  {name, source_file, format, kind, style, rows_*, dropped, ...}

An import checks the whole file first (refusing files with no usable rows), then streams the same
normalized rows straight to disk. The train/eval split is deterministic for a given seed, and it splits
source records, not rows, so the pairs of one ranking never straddle train and eval.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from rlhf_studio.data.check import DataReport, RowStream, check_file
from rlhf_studio.data.problems import DataError
from rlhf_studio.stages import stage_fit
from rlhf_studio.workspace import Workspace, write_json_atomic

SPLITS = ("train", "eval")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass
class Manifest:
    name: str
    source_file: str
    format: str
    kind: str
    style: str
    rows_total: int
    rows_train: int
    rows_eval: int
    dropped: int
    created: str
    column_map: dict[str, str] = field(default_factory=dict)
    eval_fraction: float = 0.1
    seed: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def validate_name(name: str) -> str:
    """Dataset names are 1-64 letters, digits, '-' and '_', starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(f"invalid dataset name {name!r}: use 1-64 letters, digits, '-' or '_'")
    return name


def dataset_dir(workspace: Workspace, name: str) -> Path:
    return workspace.datasets_dir / validate_name(name)


def import_dataset(
    workspace: Workspace,
    source: str | Path | DataReport,
    name: str,
    *,
    format_name: str | None = None,
    column_map: dict[str, str] | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
    stage: str | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Check `source` (a file, or a report whose file, format and column map are reused) and store it."""
    if isinstance(source, DataReport):
        format_name = format_name or source.format
        column_map = column_map if column_map is not None else source.column_map
        source = source.source_file
    target = dataset_dir(workspace, name)
    if not 0 <= eval_fraction < 1:
        raise DataError(f"eval fraction must be at least 0 and below 1, got {eval_fraction}")
    if target.exists() and not overwrite:
        raise DataError(f"dataset {name!r} already exists; choose another name or overwrite it")
    report = check_file(source, format_name=format_name, column_map=column_map)
    if not report.ok:
        raise DataError(report.message)
    if stage is not None:
        fits, reason = stage_fit(report.kind, stage, report.format)
        if not fits:
            raise DataError(reason)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=workspace.datasets_dir))
    try:
        manifest = _write_splits(staging, report, name, eval_fraction, seed)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def eval_count(records: int, eval_fraction: float) -> int:
    """Records held out: round(records * fraction), at least 1 when asked for, never all of them."""
    if eval_fraction == 0 or records < 2:
        return 0
    return min(records - 1, max(1, round(records * eval_fraction)))


def _write_splits(folder: Path, report: DataReport, name: str, eval_fraction: float, seed: int) -> Manifest:
    held_out = set(
        random.Random(seed).sample(range(report.records_used), eval_count(report.records_used, eval_fraction))
    )
    counts = dict.fromkeys(SPLITS, 0)
    stream = RowStream(report.source_file, report.format, report.column_map)
    record_index, last_line = -1, None
    with (
        open(folder / "train.jsonl", "w", encoding="utf-8") as train,
        open(folder / "eval.jsonl", "w", encoding="utf-8") as held,
    ):
        for line, row in stream.rows():
            if line != last_line:
                record_index, last_line = record_index + 1, line
            split = "eval" if record_index in held_out else "train"
            (held if split == "eval" else train).write(json.dumps(row, ensure_ascii=False) + "\n")
            counts[split] += 1
    if counts["train"] + counts["eval"] != report.usable:
        raise DataError(f"{report.source_file} changed while it was being imported; import it again")
    manifest = Manifest(
        name=name,
        # a name with undecodable bytes is kept readable (escaped): the manifest is UTF-8 JSON
        source_file=str(Path(report.source_file).resolve()).encode("utf-8", "backslashreplace").decode(),
        format=report.format,
        kind=report.kind,
        style=report.style,
        rows_total=report.usable,
        rows_train=counts["train"],
        rows_eval=counts["eval"],
        dropped=report.dropped,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        column_map=report.column_map,
        eval_fraction=eval_fraction,
        seed=seed,
        drop_reasons=report.drop_reasons,
    )
    write_json_atomic(folder / "manifest.json", asdict(manifest))
    return manifest


def read_manifest(workspace: Workspace, name: str) -> Manifest:
    path = dataset_dir(workspace, name) / "manifest.json"
    if not path.is_file():
        raise DataError(f"no dataset named {name!r} in the library")
    return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))


def list_datasets(workspace: Workspace) -> list[Manifest]:
    """Manifests of the stored datasets by name; folders being written or without a manifest are skipped."""
    manifests = []
    for folder in sorted(workspace.datasets_dir.iterdir()):
        if folder.is_dir() and _NAME.fullmatch(folder.name) and (folder / "manifest.json").is_file():
            manifests.append(read_manifest(workspace, folder.name))
    return manifests


def split_path(workspace: Workspace, name: str, split: str) -> Path:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    read_manifest(workspace, name)
    return dataset_dir(workspace, name) / f"{split}.jsonl"


def load_split(workspace: Workspace, name: str, split: str) -> list[dict]:
    with open(split_path(workspace, name, split), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def first_row(workspace: Workspace, name: str, split: str) -> dict:
    """The split's first row ({} when it is empty), without reading the rest of the file."""
    with open(split_path(workspace, name, split), encoding="utf-8") as handle:
        line = handle.readline()
    return json.loads(line) if line.strip() else {}


def load_split_dataset(workspace: Workspace, name: str, split: str):
    """The split as a `datasets.Dataset` (Arrow cache kept inside the dataset's folder)."""
    from datasets import Dataset

    path = split_path(workspace, name, split)
    if path.stat().st_size == 0:
        return Dataset.from_list([])
    return Dataset.from_json(str(path), cache_dir=str(path.parent / ".cache"))


def delete_dataset(workspace: Workspace, name: str) -> None:
    read_manifest(workspace, name)
    shutil.rmtree(dataset_dir(workspace, name))
