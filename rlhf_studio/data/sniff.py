"""Refuse a file from its name and first bytes, before any parsing: a web page, an archive, an image, UTF-16
text or a binary renamed `.jsonl` gets one line that says what it really is.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from rlhf_studio.data.problems import file_error

FILE_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
CLAIMED = {"jsonl": "JSON Lines", "json": "JSON", "csv": "CSV", "tsv": "TSV", "parquet": "Parquet"}
SNIFF_BYTES = 8192
UTF8_BOM = codecs.BOM_UTF8
BLANK = UTF8_BOM + b" \t\r\n"
_MARKUP = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--")
_SIGNATURES = {
    b"\x1f\x8b": "it is gzip-compressed; decompress it first",
    b"PK\x03\x04": "it is a zip archive; extract it first",
    b"\x89PNG": "it is a PNG image",
    b"%PDF-": "it is a PDF document",
    b"\xff\xfe": "it is UTF-16 text; save it as UTF-8",
    b"\xfe\xff": "it is UTF-16 text; save it as UTF-8",
    b"\x80": "it is binary data (a Python pickle?), which is never loaded",
}


def file_type_of(path: Path) -> str:
    file_type = FILE_TYPES.get(path.suffix.lower())
    if file_type is None:
        expected = ", ".join(sorted(FILE_TYPES))
        suffix = repr(path.suffix or path.name)
        raise file_error("unsupported file type", f"{suffix}; expected one of {expected}")
    return file_type


def sniff(head: bytes, file_type: str) -> None:
    """Refuse files whose first bytes contradict their extension (web pages, archives, binaries)."""
    text_start = head.lstrip(BLANK)
    if not text_start:
        raise file_error("empty file", "the file has no content")
    if file_type == "parquet":
        if not head.startswith(b"PAR1"):
            raise file_error("wrong file type", f"not a Parquet file: {_looks_like(head, text_start, True)}")
        return
    if head.startswith(b"PAR1"):
        detail = f"this is a Parquet file, not {CLAIMED[file_type]}; rename it .parquet"
        raise file_error("wrong file type", detail)
    looks = _looks_like(head, text_start, file_type in ("json", "jsonl"))
    if looks != "text":
        raise file_error("wrong file type", f"not {CLAIMED[file_type]}: {looks}")


def require_line_breaks(head: bytes) -> None:
    """Lines ended by a lone CR (classic Mac) make the whole file one line; say so instead."""
    if b"\r" in head.rstrip(b"\r") and b"\n" not in head:
        raise file_error(
            "invalid line endings", "lines end with CR only (old Mac style); save with LF or CRLF"
        )


def _looks_like(head: bytes, text_start: bytes, json_expected: bool) -> str:
    lowered = text_start[:64].lower()
    if lowered.startswith(_MARKUP) or (json_expected and lowered.startswith(b"<")):
        return "it starts like an HTML/XML page (a web page saved instead of the raw file?)"
    for signature, description in _SIGNATURES.items():
        if head.startswith(signature):
            return description
    if _utf16_without_bom(head):
        return "it is UTF-16 text without a byte-order mark; save it as UTF-8"
    nul_offset = head.find(b"\x00")
    if nul_offset >= 0:
        return f"it is binary data (NUL byte at byte offset {nul_offset})"
    return "text"


def _utf16_without_bom(head: bytes) -> bool:
    """Mostly-ASCII UTF-16 has a NUL in (nearly) every other byte, and in the other half almost none."""
    sample = head[:1024]
    halves = (sample[1::2], sample[0::2])  # little-endian: high bytes are the odd ones
    for zeros, others in (halves, halves[::-1]):
        if zeros and zeros.count(0) >= 0.6 * len(zeros) and others.count(0) <= 0.05 * len(others):
            return True
    return False
