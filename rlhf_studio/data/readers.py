"""Stream records out of JSONL, JSON arrays, CSV/TSV and Parquet files, one dict at a time.

`open_records(path)` sniffs the first bytes (so an HTML page or a binary renamed `.jsonl` is refused before
any parsing), then returns the file type and a lazy iterator of `Record`s. A record carries the line it
starts on (the row number for Parquet) and either its fields or the `Problem` that made it unreadable.
Nothing is read beyond what the caller consumes, which is what makes previews of huge files cheap.
Nothing is ever unpickled.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.data.problems import DataError, Problem, file_error

FILE_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
SNIFF_BYTES = 8192
CHUNK_BYTES = 1 << 20
UTF8_BOM = codecs.BOM_UTF8
_WHITESPACE = re.compile(r"[ \t\r\n]*")


@dataclass(frozen=True)
class Record:
    line: int
    fields: dict | None = None
    problem: Problem | None = None


def file_type_of(path: Path) -> str:
    file_type = FILE_TYPES.get(path.suffix.lower())
    if file_type is None:
        expected = ", ".join(sorted(FILE_TYPES))
        raise file_error("unsupported file type", f"'{path.suffix or path.name}'; expected one of {expected}")
    return file_type


def open_records(path: str | Path) -> tuple[str, Iterator[Record]]:
    """Sniff the file, then return (file type, lazy record iterator); unreadable files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    file_type = file_type_of(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    _sniff(head, file_type)
    if file_type == "parquet":
        return file_type, _parquet_records(path)
    if file_type in ("csv", "tsv"):
        return file_type, _csv_records(path, "," if file_type == "csv" else "\t")
    if head.lstrip(UTF8_BOM + b" \t\r\n").startswith(b"["):
        return "json", _json_array_records(path)
    if file_type == "json":
        _require_json_lines(head)
    return "jsonl", _jsonl_records(path)


def _require_json_lines(head: bytes) -> None:
    """A .json file is an array of objects or JSON Lines; refuse one big object early and clearly."""
    first_line, newline, _ = head.lstrip(UTF8_BOM + b" \t\r\n").partition(b"\n")
    if not newline:
        return
    try:
        json.loads(first_line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        detail = (
            "expected an array of objects or one object per line (JSON Lines); line 1 is not a whole object"
        )
        raise file_error("invalid JSON", detail) from None


def _sniff(head: bytes, file_type: str) -> None:
    """Refuse files whose first bytes contradict their extension (web pages, archives, binaries)."""
    claimed = {"jsonl": "JSON Lines", "json": "JSON", "csv": "CSV", "tsv": "TSV", "parquet": "Parquet"}[
        file_type
    ]
    text_start = head.lstrip(UTF8_BOM + b" \t\r\n")
    if not text_start:
        raise file_error("empty file", "the file has no content")
    if file_type == "parquet":
        if not head.startswith(b"PAR1"):
            raise file_error("wrong file type", f"not a Parquet file: {_looks_like(head, text_start)}")
        return
    if head.startswith(b"PAR1"):
        raise file_error("wrong file type", f"this is a Parquet file, not {claimed}; rename it .parquet")
    looks = _looks_like(head, text_start)
    if looks != "text":
        raise file_error("wrong file type", f"not {claimed}: {looks}")


def _looks_like(head: bytes, text_start: bytes) -> str:
    lowered = text_start[:64].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<!--")):
        return "it starts like an HTML/XML page (a web page saved instead of the raw file?)"
    signatures = {
        b"\x1f\x8b": "it is gzip-compressed; decompress it first",
        b"PK\x03\x04": "it is a zip archive; extract it first",
        b"\xff\xfe": "it is UTF-16 text; save it as UTF-8",
        b"\xfe\xff": "it is UTF-16 text; save it as UTF-8",
        b"\x80": "it is binary data (a Python pickle?), which is never loaded",
    }
    for signature, description in signatures.items():
        if head.startswith(signature):
            return description
    nul_offset = head.find(b"\x00")
    if nul_offset >= 0:
        return f"it is binary data (NUL byte at byte offset {nul_offset})"
    return "text"


def _numbered_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of each line; a UTF-8 BOM is dropped from the first."""
    with open(path, "rb") as handle:
        offset = 0
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            if number == 1 and raw.startswith(UTF8_BOM):
                raw, start = raw[len(UTF8_BOM) :], start + len(UTF8_BOM)
            yield number, start, raw


def _jsonl_records(path: Path) -> Iterator[Record]:
    for number, start, raw in _numbered_lines(path):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            yield Record(
                number, problem=Problem(number, None, "not UTF-8", f"byte offset {start + error.start}")
            )
            continue
        if text.strip():
            yield _json_object_record(number, text)


def _json_object_record(number: int, text: str) -> Record:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return Record(
            number, problem=Problem(number, None, "invalid JSON", f"{error.msg} at column {error.colno}")
        )
    if not isinstance(value, dict):
        detail = f"expected one JSON object per line, got {type(value).__name__}"
        return Record(number, problem=Problem(number, None, "wrong type", detail))
    return Record(number, value)


class _TextCursor:
    """A growing window over a UTF-8 file, tracking the line number of the read position."""

    def __init__(self, handle):
        self.handle = handle
        self.buffer = ""
        self.pos = 0
        self.line = 1
        self.decoded_bytes = 0
        self.carry = b""
        self.eof = False

    def fill(self) -> None:
        """Append the next chunk; a UTF-8 sequence cut by the chunk end waits in `carry` for the next one."""
        raw = self.handle.read(CHUNK_BYTES)
        self.eof = not raw
        data, self.carry = self.carry + raw, b""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            if self.eof or error.reason != "unexpected end of data":
                line = self.line + self.buffer.count("\n", self.pos) + data.count(b"\n", 0, error.start)
                raise file_error(
                    "not UTF-8", f"byte offset {self.decoded_bytes + error.start}", line
                ) from None
            text, self.carry = data[: error.start].decode("utf-8"), data[error.start :]
        if self.decoded_bytes == 0:
            text = text.removeprefix("\ufeff")
        self.decoded_bytes += len(data) - len(self.carry)
        self.buffer = self.buffer[self.pos :] + text
        self.pos = 0

    def advance(self, end: int) -> None:
        self.line += self.buffer.count("\n", self.pos, end)
        self.pos = end

    def next_char(self) -> str:
        """Skip whitespace and return the next character ('' at end of file)."""
        while True:
            self.advance(_WHITESPACE.match(self.buffer, self.pos).end())
            if self.pos < len(self.buffer) or self.eof:
                return self.buffer[self.pos : self.pos + 1]
            self.fill()


def _json_array_records(path: Path) -> Iterator[Record]:
    """Decode the elements of a top-level JSON array one by one, without loading the whole file."""
    decoder = json.JSONDecoder()
    with open(path, "rb") as handle:
        cursor = _TextCursor(handle)
        cursor.next_char()
        cursor.advance(cursor.pos + 1)
        if cursor.next_char() == "]":
            raise file_error("no rows", "the JSON array is empty")
        while True:
            line = cursor.line
            try:
                value, end = decoder.raw_decode(cursor.buffer, cursor.pos)
            except json.JSONDecodeError as error:
                # An error near the end of the window, or an unterminated string, may only mean that the
                # element continues in the next chunk; anything else is a real syntax error.
                near_end = error.pos >= len(cursor.buffer) - 16 or error.msg.startswith("Unterminated")
                if near_end and not cursor.eof:
                    cursor.fill()
                    continue
                error_line = line + cursor.buffer.count("\n", cursor.pos, error.pos)
                detail = f"{error.msg}; the rest of the file was not read"
                yield Record(error_line, problem=Problem(error_line, None, "invalid JSON", detail))
                return
            cursor.advance(end)
            if isinstance(value, dict):
                yield Record(line, value)
            else:
                detail = f"expected an array of JSON objects, got {type(value).__name__}"
                yield Record(line, problem=Problem(line, None, "wrong type", detail))
            separator = cursor.next_char()
            cursor.advance(cursor.pos + 1)
            if separator == "]":
                return
            if separator != ",":
                found = repr(separator) if separator else "end of file"
                detail = (
                    f"expected ',' or ']' after an element, found {found}; the rest of the file was not read"
                )
                yield Record(cursor.line, problem=Problem(cursor.line, None, "invalid JSON", detail))
                return
            cursor.next_char()


def _decoded_lines(path: Path, bad_lines: dict[int, int]) -> Iterator[str]:
    """Yield the file's lines as text; lines that are not UTF-8 are recorded (line -> byte offset)."""
    for number, start, raw in _numbered_lines(path):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            bad_lines[number] = start + error.start
            yield raw.decode("utf-8", errors="replace")


def _csv_records(path: Path, delimiter: str) -> Iterator[Record]:
    """Rows of a CSV/TSV file keyed by the header; a record's line is its first physical line (header = 1)."""
    csv.field_size_limit(2**31 - 1)  # process-wide; the default 128 KiB is too small for long replies
    bad_lines: dict[int, int] = {}
    reader = csv.reader(_decoded_lines(path, bad_lines), delimiter=delimiter)
    try:
        header = _checked_header(next(reader), bad_lines)
    except csv.Error as error:
        raise file_error("invalid CSV", f"header: {error}") from None
    data_rows, previous_end = 0, reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            yield Record(previous_end + 1, problem=Problem(previous_end + 1, None, "invalid CSV", str(error)))
            return
        start, previous_end = previous_end + 1, reader.line_num
        if not cells:
            continue
        data_rows += 1
        yield _csv_record(start, previous_end, header, cells, bad_lines)
    if data_rows == 0:
        raise file_error("header only", "the file has a header line but no data rows")


def _checked_header(header: list[str], bad_lines: dict[int, int]) -> list[str]:
    if 1 in bad_lines:
        raise file_error("not UTF-8", f"byte offset {bad_lines[1]} in the header")
    names = [name.strip() for name in header]
    if any(not name for name in names):
        raise file_error("invalid header", f"empty column name in header {header}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise file_error("invalid header", f"duplicate column names {duplicates}")
    return names


def _csv_record(
    start: int, end: int, header: list[str], cells: list[str], bad_lines: dict[int, int]
) -> Record:
    bad = [line for line in range(start, end + 1) if line in bad_lines]
    if bad:
        return Record(start, problem=Problem(bad[0], None, "not UTF-8", f"byte offset {bad_lines[bad[0]]}"))
    if len(cells) != len(header):
        detail = f"{len(cells)} values for {len(header)} columns"
        return Record(start, problem=Problem(start, None, "wrong number of columns", detail))
    return Record(start, {name: _csv_cell(cell) for name, cell in zip(header, cells, strict=True)})


def _csv_cell(cell: str) -> str | list:
    """CSV cells are text, except a JSON list of objects (chat messages), which CSV cannot hold otherwise."""
    if not cell.lstrip().startswith("[{"):
        return cell
    try:
        value = json.loads(cell)
    except json.JSONDecodeError:
        return cell
    is_objects = isinstance(value, list) and all(isinstance(item, dict) for item in value)
    return value if is_objects else cell


def _parquet_records(path: Path) -> Iterator[Record]:
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
                yield Record(row, fields)
    except (pa.ArrowException, OSError) as error:
        raise file_error("unreadable Parquet", str(error).splitlines()[0], row + 1) from None
