"""Check a data file: detect its layout, normalize every row, and report what is usable and what is not.

    report = check_file("prefs.jsonl")                  # full check, streaming, small memory
    report = check_file("huge.jsonl", preview_rows=50)  # reads only the first 50 records
    print(report.message)

`RowStream` is the single pipeline behind both the check and the import (which streams the same rows to
disk), so what the check promises is exactly what gets stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from pathlib import Path

from rlhf_studio.data.detect import Detection, apply_column_map, detect_layout, other_layout, source_field
from rlhf_studio.data.problems import DataError, Problem, ProblemLog, RowError, printable
from rlhf_studio.data.readers import open_records
from rlhf_studio.data.records import Record
from rlhf_studio.data.stats import DataStats

DETECTION_RECORDS = 20
ROWS_KEPT = 1000
_CONVERSATIONAL_FIELDS = ("prompt", "chosen", "rejected", "completion", "messages")


def row_style(row: dict) -> str:
    """TRL's two dataset styles: "conversational" (message lists) or "standard" (strings)."""
    is_list = any(isinstance(row.get(name), list) for name in _CONVERSATIONAL_FIELDS)
    return "conversational" if is_list else "standard"


class RowStream:
    """Iterate (line, normalized row) over a file; problems go to `log`, the layout to `detection`.

    The layout is detected from the columns of the first few readable records. Every dropped record or
    pair is one problem. Rows whose style differs from the first usable row are dropped too, so that one
    dataset is all standard or all conversational.
    """

    def __init__(self, path: str | Path, format_name: str | None = None, column_map: dict | None = None):
        self.path = Path(path)
        self.format_name = format_name
        self.column_map = dict(column_map or {})
        self.file_type: str | None = None
        self.detection: Detection | None = None
        self.style: str | None = None
        self.log = ProblemLog()
        self.records_read = 0
        self.records_used = 0

    def rows(self, limit: int | None = None) -> Iterator[tuple[int, dict]]:
        """Usable rows of the first `limit` records (all records when None)."""
        self.file_type, records = open_records(self.path)
        records = islice(records, limit)
        head = self._detection_head(records)
        for record in chain(head, records):
            self.records_read += 1
            if record.problem is not None:
                self.log.add(record.problem)
                continue
            used = False
            for row in self._normalized(record):
                used = True
                yield record.line, row
            self.records_used += used

    def _detection_head(self, records: Iterator[Record]) -> list[Record]:
        head: list[Record] = []
        readable: list[dict] = []
        for record in records:
            head.append(record)
            if record.fields is not None:
                readable.append(record.fields)
                if len(readable) == DETECTION_RECORDS:
                    break
        if readable:
            self.detection = detect_layout(readable, self.column_map, self.format_name)
        return head

    def _normalized(self, record: Record) -> Iterator[dict]:
        fields = apply_column_map(record.fields, self.column_map)
        try:
            for item in self.detection.layout.normalize(fields):
                if isinstance(item, RowError):
                    self._drop(item, record.line)
                elif self._same_style(item, record.line):
                    yield item
        except RowError as error:
            self._drop(error, record.line, fields)

    def _same_style(self, row: dict, line: int) -> bool:
        style = row_style(row)
        self.style = self.style or style
        if style != self.style:
            detail = f"a {style} row in a {self.style} dataset; keep one style per file"
            self._drop(RowError(next(iter(row)), "mixed styles", detail), line)
        return style == self.style

    def _drop(self, error: RowError, line: int, fields: dict | None = None) -> None:
        detail = error.detail
        if error.reason == "missing field" and fields is not None:
            other = other_layout(fields, self.detection.layout)
            if other:
                detail = f"a {other} row in a {self.detection.layout.name} file; keep one layout per file"
        self.log.add(Problem(line, source_field(error.field, self.column_map), error.reason, detail))


@dataclass
class DataReport:
    ok: bool
    message: str
    source_file: str
    file_type: str | None = None
    format: str | None = None
    kind: str | None = None
    style: str | None = None
    columns: list[str] = field(default_factory=list)
    column_map: dict[str, str] = field(default_factory=dict)
    unused_columns: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    usable: int = 0
    dropped: int = 0
    problems: list[Problem] = field(default_factory=list)
    drop_reasons: dict[str, int] = field(default_factory=dict)
    records_read: int = 0
    records_used: int = 0
    preview: bool = False
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready; problems as {"line", "field", "reason", "detail"}."""
        return asdict(self)


def check_file(
    path: str | Path,
    *,
    format_name: str | None = None,
    column_map: dict[str, str] | None = None,
    preview_rows: int | None = None,
    keep_everything: bool = False,
) -> DataReport:
    """Check a file; never raises for bad data (a refused file gives ok=False and a one-line message).

    With `preview_rows`, only that many records are read and `rows` holds their normalized rows; otherwise
    the whole file is streamed, `rows` keeps the first ROWS_KEPT rows and the counts cover everything.
    `keep_everything` keeps every row and every problem in memory (the CLI's --json output).
    """
    stream = RowStream(path, format_name, column_map)
    if keep_everything:
        stream.log.limit = None
    rows: list[dict] = []
    stats = DataStats()
    try:
        for _, row in stream.rows(preview_rows):
            stats.add(row)
            if keep_everything or preview_rows is not None or len(rows) < ROWS_KEPT:
                rows.append(row)
    except DataError as error:
        problems = [error.problem] if error.problem else []
        where = error.problem.describe() if error.problem else str(error)
        message = f"{printable(Path(path).name)}: {where}"
        return DataReport(
            False, message, str(path), stream.file_type, problems=problems, column_map=stream.column_map
        )
    report = _report(stream, rows, stats, preview_rows is not None)
    report.message = summary_message(report)
    return report


def _report(stream: RowStream, rows: list[dict], stats: DataStats, preview: bool) -> DataReport:
    detection = stream.detection
    layout = detection.layout if detection else None
    return DataReport(
        ok=stats.rows > 0,
        message="",
        source_file=str(stream.path),
        file_type=stream.file_type,
        format=layout.name if layout else None,
        kind=layout.kind if layout else None,
        style=stream.style,
        columns=detection.columns if detection else [],
        column_map=stream.column_map,
        unused_columns=detection.unused_columns if detection else [],
        alternatives=detection.alternatives if detection else [],
        rows=rows,
        usable=stats.rows,
        dropped=stream.log.total,
        problems=list(stream.log.kept),
        drop_reasons=dict(stream.log.counts.most_common()),
        records_read=stream.records_read,
        records_used=stream.records_used,
        preview=preview,
        stats=stats.to_dict(),
    )


def summary_message(report: DataReport) -> str:
    reasons = ", ".join(f"{reason}: {count}" for reason, count in report.drop_reasons.items())
    scope = f"first {report.records_read} records" if report.preview else f"{report.records_read} records"
    if not report.ok:
        first = f"; first: {report.problems[0].describe()}" if report.problems else ""
        name = printable(Path(report.source_file).name)
        return f"no usable rows in {name} ({scope}; dropped {report.dropped}{first})"
    dropped = f"; dropped {report.dropped} ({reasons})" if report.dropped else "; nothing dropped"
    return (
        f"{report.format}: {report.usable} usable {report.kind} rows, {report.style}, from {scope}{dropped}"
    )
