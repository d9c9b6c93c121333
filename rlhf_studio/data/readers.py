"""Stream records out of JSONL, JSON arrays, CSV/TSV and Parquet files, one dict at a time.

`open_records(path)` sniffs the first bytes (so an HTML page or a binary renamed `.jsonl` is refused before
any parsing), then returns the file type and a lazy iterator of `Record`s. A record carries the line it
starts on (the row number for Parquet) and either its fields or the `Problem` that made it unreadable.
Nothing is read beyond what the caller consumes, which is what makes previews of huge files cheap, and no
record is held whole beyond MAX_RECORD_BYTES (a line, an array element, a CSV value): a longer one is a
problem, skipped in chunks, so a file without line breaks or with an unbalanced quote stays small in memory.
Nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from rlhf_studio.data import records
from rlhf_studio.data.json_array import json_array_records
from rlhf_studio.data.problems import DataError, Problem, RowError, file_error, listed, printable
from rlhf_studio.data.sniff import BLANK, SNIFF_BYTES, UTF8_BOM, file_type_of, require_line_breaks, sniff
from rlhf_studio.data.values import decode_json, type_name

_LINE_SKIPPED = "skipped (a file without line breaks?)"


def open_records(path: str | Path) -> tuple[str, Iterator[records.Record]]:
    """Sniff the file, then return (file type, lazy record iterator); unreadable files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {printable(str(path))}")
    file_type = file_type_of(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        raise DataError(f"cannot read {printable(path.name)}: {error.strerror}") from None
    sniff(head, file_type)
    if file_type == "parquet":
        return file_type, _parquet_records(path)
    if file_type in ("json", "jsonl") and _is_json_array(head, file_type):
        return "json", json_array_records(path)
    require_line_breaks(head)
    if file_type in ("csv", "tsv"):
        return file_type, _csv_records(path, "," if file_type == "csv" else "\t")
    if file_type == "json":
        _require_json_lines(head)
    return "jsonl", _jsonl_records(path)


def _is_json_array(head: bytes, file_type: str) -> bool:
    """A file starting with '[' is one JSON array, unless it is a .jsonl whose first line is an array
    of other things than objects by itself (then it is JSON Lines with lines that are not objects)."""
    text = head.lstrip(BLANK)
    if not text.startswith(b"["):
        return False
    first_line, newline, _ = text.partition(b"\n")
    if file_type == "json" or not newline:
        return True
    try:
        value = decode_json(first_line.decode("utf-8"))
    except (ValueError, RowError):
        return True
    return all(isinstance(item, dict) for item in value)


def _require_json_lines(head: bytes) -> None:
    """A .json file is an array of objects or JSON Lines; refuse one big object early and clearly."""
    first_line, newline, _ = head.lstrip(BLANK).partition(b"\n")
    if not newline:
        return
    try:
        decode_json(first_line.decode("utf-8"))
    except (ValueError, RowError):
        detail = (
            "expected an array of objects or one object per line (JSON Lines); line 1 is not a whole object"
        )
        raise file_error("invalid JSON", detail) from None


def _numbered_lines(path: Path) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, byte offset, bytes) of each line; a UTF-8 BOM is dropped from the first.

    A line over MAX_RECORD_BYTES comes as None, after being skipped in chunks.
    """
    with open(path, "rb") as handle:
        number, offset = 0, 0
        while raw := handle.readline(records.MAX_RECORD_BYTES + 1):
            number, start, offset = number + 1, offset, offset + len(raw)
            if len(raw) > records.MAX_RECORD_BYTES:
                if not raw.endswith(b"\n"):
                    offset = _skip_line(handle, offset)
                yield number, start, None
                continue
            if number == 1 and raw.startswith(UTF8_BOM):
                raw, start = raw[len(UTF8_BOM) :], start + len(UTF8_BOM)
            yield number, start, raw


def _skip_line(handle, offset: int) -> int:
    """Read on from `offset` to just after the next line break (or the end); return that offset."""
    while chunk := handle.read(records.CHUNK_BYTES):
        newline = chunk.find(b"\n")
        if newline >= 0:
            handle.seek(offset + newline + 1)
            return offset + newline + 1
        offset += len(chunk)
    return offset


def _jsonl_records(path: Path) -> Iterator[records.Record]:
    for number, start, raw in _numbered_lines(path):
        if raw is None:
            yield records.Record(number, problem=records.too_long(number, "a line", _LINE_SKIPPED))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield records.Record(
                number, problem=Problem(number, None, "not UTF-8", f"byte offset {start + error.start}")
            )
            continue
        if text.strip():
            yield _json_object_record(number, text)


def _json_object_record(number: int, text: str) -> records.Record:
    try:
        value = decode_json(text)
    except json.JSONDecodeError as error:
        return records.Record(
            number, problem=Problem(number, None, "invalid JSON", f"{error.msg} at column {error.colno}")
        )
    except RowError as error:
        return records.Record(number, problem=error.at(number))
    if not isinstance(value, dict):
        detail = f"expected one JSON object per line, got {type_name(value)}"
        return records.Record(number, problem=Problem(number, None, "wrong type", detail))
    return records.Record(number, value)


def _decoded_lines(path: Path, skipped: dict[int, Problem]) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 or too long is noted in `skipped` (by line)."""
    for number, start, raw in _numbered_lines(path):
        if raw is None:
            skipped[number] = records.too_long(number, "a line", _LINE_SKIPPED)
            yield "\n"
            continue
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            skipped[number] = Problem(number, None, "not UTF-8", f"byte offset {start + error.start}")
            yield raw.decode("utf-8", errors="replace")


def _taken(skipped: dict[int, Problem], start: int, end: int) -> Problem | None:
    """The first problem noted for lines start..end; all of them are forgotten (memory stays small)."""
    problems = [skipped.pop(line) for line in range(start, end + 1) if line in skipped]
    return problems[0] if problems else None


def _csv_records(path: Path, delimiter: str) -> Iterator[records.Record]:
    """Rows of a CSV/TSV file keyed by the header; a record's line is its first physical line (header = 1).

    The reader is strict: a quote that never closes, or text after a closing quote, is a problem of that
    record, and reading goes on with the next line.
    """
    csv.field_size_limit(
        records.MAX_RECORD_BYTES
    )  # process-wide; the default 128 KiB is too small for long replies
    skipped: dict[int, Problem] = {}
    reader = csv.reader(_decoded_lines(path, skipped), delimiter=delimiter, strict=True)
    header = _header(reader, skipped)
    data_rows, previous_end = 0, reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            start, previous_end = previous_end + 1, reader.line_num
            _taken(skipped, start, previous_end)
            data_rows += 1
            yield records.Record(start, problem=_csv_problem(str(error), start, previous_end))
            continue
        start, previous_end = previous_end + 1, reader.line_num
        problem = _taken(skipped, start, previous_end)
        if cells or problem:
            data_rows += 1
            yield (
                records.Record(start, problem=problem)
                if problem
                else _csv_record(start, previous_end, header, cells)
            )
    if data_rows == 0:
        raise file_error("header only", "the file has a header line but no data rows")


def _header(reader, skipped: dict[int, Problem]) -> list[str]:
    """The first non-blank row, as stripped column names."""
    try:
        header = next((row for row in reader if row), None)
    except csv.Error as error:
        raise file_error("invalid CSV", f"header: {error}", reader.line_num) from None
    problem = _taken(skipped, 1, reader.line_num)
    if problem:
        raise file_error(problem.reason, f"{problem.detail} in the header", problem.line)
    if header is None:
        raise file_error("empty file", "the file has no header line")
    names = [name.strip() for name in header]
    if any(not name for name in names):
        position = names.index("") + 1
        raise file_error("invalid header", f"column {position} of {len(names)} has no name", reader.line_num)
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise file_error("invalid header", f"duplicate column names: {listed(duplicates)}", reader.line_num)
    return names


def _csv_problem(message: str, start: int, end: int) -> Problem:
    lines = f"lines {start}-{end} skipped"
    if message == "unexpected end of data":
        detail = f"a quoted value opened on line {start} never closes (an unbalanced quote?); {lines}"
    elif message.startswith("field larger than field limit"):
        detail = f"a value over {records.MAX_RECORD_BYTES >> 20} MiB (an unbalanced quote?); {lines}"
    else:
        detail = f"{message}: a quoted value ends at a delimiter, and quotes inside it are doubled"
    return Problem(start, None, "invalid CSV", detail)


def _csv_record(start: int, end: int, header: list[str], cells: list[str]) -> records.Record:
    if len(cells) != len(header):
        detail = f"{len(cells)} values for {len(header)} columns"
        if end > start:
            detail += f" in a record over lines {start}-{end} (an unbalanced quote?)"
        return records.Record(start, problem=Problem(start, None, "wrong number of columns", detail))
    return records.Record(start, {name: _csv_cell(cell) for name, cell in zip(header, cells, strict=True)})


def _csv_cell(cell: str) -> str | list:
    """CSV cells are text, except a JSON list of objects (chat messages), which CSV cannot hold otherwise."""
    if not cell.lstrip().startswith("[{"):
        return cell
    try:
        value = decode_json(cell)
    except (ValueError, RowError):
        return cell
    is_objects = isinstance(value, list) and all(isinstance(item, dict) for item in value)
    return value if is_objects else cell


def _parquet_records(path: Path) -> Iterator[records.Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        parquet = pq.ParquetFile(path)
        if parquet.metadata.num_rows == 0:
            raise file_error("no rows", "the Parquet file has a schema but no rows")
        for batch in parquet.iter_batches(batch_size=512):
            for fields in batch.to_pylist():
                row += 1
                yield records.Record(row, fields)
    except (pa.ArrowException, OSError) as error:
        first_line = next(iter(str(error).splitlines()), type(error).__name__)
        raise file_error("unreadable Parquet", first_line, row + 1) from None
