"""Pick the layout of a file from its columns, honouring a hand-made column map and a --format override.

A column map names, for each field a layout expects, the file's column that holds it:
{"prompt": "question", "chosen": "good"} reads the prompt from "question" and chosen from "good".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlhf_studio.data.layouts import KNOWN_FIELDS, LAYOUTS, LAYOUTS_BY_NAME, Layout
from rlhf_studio.data.problems import DataError

_FIELD_HEAD = re.compile(r"^[^.\[]+")


@dataclass(frozen=True)
class Detection:
    layout: Layout
    columns: list[str]
    alternatives: list[str]
    unused_columns: list[str]


def parse_column_map(text: str) -> dict[str, str]:
    """'prompt=question,chosen=good' -> {"prompt": "question", "chosen": "good"}."""
    column_map = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        field, separator, column = (piece.strip() for piece in item.partition("="))
        if not separator or not field or not column:
            raise DataError(f"column map entry {item!r} is not FIELD=COLUMN (e.g. prompt=question)")
        if field in column_map:
            raise DataError(f"column map names the field {field!r} twice")
        column_map[field] = column
    return column_map


def check_column_map(column_map: dict[str, str], columns: list[str]) -> None:
    for field, column in column_map.items():
        if field not in KNOWN_FIELDS:
            raise DataError(f"column map: unknown field {field!r}; known fields: {', '.join(KNOWN_FIELDS)}")
        if column not in columns:
            raise DataError(
                f"column map: no column {column!r} in the file; columns found: {', '.join(columns)}"
            )
        if field in columns and field != column and field not in column_map.values():
            raise DataError(f"column map: the file already has a column {field!r}; map that column too")
    sources = list(column_map.values())
    if len(set(sources)) != len(sources):
        raise DataError("column map: one column is mapped to two fields")


def apply_column_map(record: dict, column_map: dict[str, str]) -> dict:
    if not column_map:
        return record
    sources = set(column_map.values())
    mapped = {key: value for key, value in record.items() if key not in sources}
    for field, column in column_map.items():
        if column in record:
            mapped[field] = record[column]
    return mapped


def source_field(field: str | None, column_map: dict[str, str]) -> str | None:
    """Name a problem's field after the user's column ("good[0].content" rather than "chosen[0].content")."""
    if not field or not column_map:
        return field
    return _FIELD_HEAD.sub(lambda match: column_map.get(match.group(0), match.group(0)), field, count=1)


def detect_layout(
    columns: list[str], first_record: dict, column_map: dict[str, str], format_name: str | None = None
) -> Detection:
    """The layout for records with these (file) columns; `first_record` is already column-mapped."""
    check_column_map(column_map, columns)
    field_of = {column: field for field, column in column_map.items()}
    present = {field_of.get(column, column) for column in columns}
    matching = [layout for layout in LAYOUTS if set(layout.required) <= present]
    if format_name is not None:
        layout = _forced_layout(format_name, present, columns)
    elif not matching:
        raise DataError(no_layout_message(columns))
    else:
        layout = next((layout for layout in matching if layout.accepts(first_record)), matching[0])
    alternatives = [other.name for other in matching if other is not layout and other.accepts(first_record)]
    used = set(layout.required) | set(layout.optional)
    unused = [column for column in columns if field_of.get(column, column) not in used]
    return Detection(layout, columns, alternatives, unused)


def _forced_layout(format_name: str, present: set[str], columns: list[str]) -> Layout:
    layout = LAYOUTS_BY_NAME.get(format_name)
    if layout is None:
        raise DataError(f"unknown format {format_name!r}; known formats: {', '.join(LAYOUTS_BY_NAME)}")
    missing = [field for field in layout.required if field not in present]
    if missing:
        raise DataError(
            f"format {format_name} needs columns {', '.join(missing)} (columns found: {', '.join(columns)}); "
            "map them with --map FIELD=COLUMN"
        )
    return layout


def no_layout_message(columns: list[str]) -> str:
    expected = "; ".join(layout.describe() for layout in LAYOUTS)
    return (
        f"columns found: {', '.join(columns) or 'none'}; they match no known layout. "
        f"Expected one of: {expected}. Map columns with --map FIELD=COLUMN or pick one with --format NAME"
    )
