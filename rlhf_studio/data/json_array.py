"""A top-level JSON array read element by element, so a huge array is never held whole: a cursor over the
file's text that grows a chunk at a time, and each element decoded where it starts. A syntax error ends the
reading there with a record that says so; the elements before it are kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from rlhf_studio.data import records
from rlhf_studio.data.problems import Problem, RowError, file_error
from rlhf_studio.data.values import decode_json, type_name

_WHITESPACE = re.compile(r"[ \t\r\n]*")


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
        raw = self.handle.read(records.CHUNK_BYTES)
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


class _TooLong(Exception):
    pass


_SKIPPING = json.JSONDecoder(object_pairs_hook=lambda pairs: None)  # finds where a value ends, keeps nothing
_NOT_READ = "; the rest of the file was not read"


def json_array_records(path: Path) -> Iterator[records.Record]:
    """Decode the elements of a top-level JSON array one by one, without loading the whole file.

    A syntax error ends the reading there, with a record that says so; the elements before it are kept.
    """
    with open(path, "rb") as handle:
        cursor = _TextCursor(handle)
        cursor.next_char()
        cursor.advance(cursor.pos + 1)
        if cursor.next_char() == "]":
            raise file_error("no rows", "the JSON array is empty")
        while True:
            record, more = _array_element(cursor)
            yield record
            if not more:
                return
            problem, more = _array_separator(cursor)
            if problem:
                yield records.Record(problem.line, problem=problem)
            if not more:
                return


def _stop(line: int, reason: str, detail: str) -> Problem:
    return Problem(line, None, reason, detail + _NOT_READ)


def _array_element(cursor: _TextCursor) -> tuple[records.Record, bool]:
    """(the next element as a record, whether reading can go on after it)."""
    line = cursor.line
    try:
        value = _decode_next(cursor, decode_json)
    except json.JSONDecodeError as error:
        error_line = line + cursor.buffer.count("\n", cursor.pos, error.pos)
        return records.Record(error_line, problem=_stop(error_line, "invalid JSON", error.msg)), False
    except _TooLong:
        return records.Record(line, problem=records.too_long(line, "an array element", _NOT_READ[2:])), False
    except RowError as error:  # a duplicate key, nesting too deep, a number too long
        try:
            _decode_next(cursor, _SKIPPING.raw_decode)
        except (ValueError, RecursionError, _TooLong):
            return records.Record(line, problem=_stop(line, error.reason, error.detail)), False
        return records.Record(line, problem=error.at(line)), True
    if not isinstance(value, dict):
        detail = f"expected an array of JSON objects, got {type_name(value)}"
        return records.Record(line, problem=Problem(line, None, "wrong type", detail)), True
    return records.Record(line, value), True


def _decode_next(cursor: _TextCursor, decode):
    """The value at the cursor, reading more chunks while it may go on; raises JSONDecodeError for a syntax
    error and _TooLong once the value passes records.MAX_RECORD_BYTES."""
    while True:
        try:
            value, end = decode(cursor.buffer, cursor.pos)
        except json.JSONDecodeError as error:
            # An error near the end of the window, or an unterminated string, may only mean that the
            # element continues in the next chunk; anything else is a real syntax error.
            near_end = error.pos >= len(cursor.buffer) - 16 or error.msg.startswith("Unterminated")
            if not near_end or cursor.eof:
                raise
            if len(cursor.buffer) - cursor.pos > records.MAX_RECORD_BYTES:
                raise _TooLong from None
            cursor.fill()
            continue
        cursor.advance(end)
        return value


def _array_separator(cursor: _TextCursor) -> tuple[Problem | None, bool]:
    """Read past the ',' or ']' after an element: (a problem or None, whether another element follows)."""
    separator, separator_line = cursor.next_char(), cursor.line
    cursor.advance(cursor.pos + 1)
    if separator == ",":
        if cursor.next_char() != "]":
            return None, True
        detail = "a trailing comma before the closing ']' (every element before it was read)"
        return Problem(separator_line, None, "invalid JSON", detail), False
    if separator == "]":
        if not cursor.next_char():
            return None, False
        detail = (
            f"more data after the array closed on line {separator_line}; JSON Lines hold one object a line"
        )
        return _stop(cursor.line, "invalid JSON", detail), False
    found = repr(separator) if separator else "end of file"
    return _stop(
        separator_line, "invalid JSON", f"expected ',' or ']' after an element, found {found}"
    ), False
