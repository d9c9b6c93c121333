"""Pick the layout of a file from its columns, honouring a hand-made column map and a --format override.

A column map names, for each field a layout expects, the file's column that holds it:
{"prompt": "question", "chosen": "good"} reads the prompt from "question" and chosen from "good".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlhf_studio.data.layouts import KNOWN_FIELDS, LAYOUTS, LAYOUTS_BY_NAME, Layout
from rlhf_studio.data.problems import DataError, listed

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
            raise DataError(f"column map: no column {column!r} in the file; columns found: {listed(columns)}")
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
    records: list[dict], column_map: dict[str, str], format_name: str | None = None
) -> Detection:
    """The layout of a file from its first records (as read, before the column map).

    The most specific layout whose columns at least half of the records have wins, so that a few odd rows
    at the start do not decide for the whole file; `accepts` breaks ties between layouts with equal columns.
    """
    columns = list(dict.fromkeys(key for record in records for key in record))
    check_column_map(column_map, columns)
    field_of = {column: field for field, column in column_map.items()}
    present = [{field_of.get(key, key) for key in record} for record in records]
    holding = {
        layout.name: [i for i, fields in enumerate(present) if set(layout.required) <= fields]
        for layout in LAYOUTS
    }
    matching = [layout for layout in LAYOUTS if holding[layout.name]]
    most = max((len(holding[layout.name]) for layout in matching), default=0)
    quorum = [
        layout for layout in matching if len(holding[layout.name]) >= min(most, (len(records) + 1) // 2)
    ]

    def accepts(layout: Layout) -> bool:
        return layout.accepts(apply_column_map(records[holding[layout.name][0]], column_map))

    if format_name is not None:
        layout = _forced_layout(format_name, set().union(*present), columns)
    elif not quorum:
        raise DataError(no_layout_message(columns))
    else:
        layout = next((layout for layout in quorum if accepts(layout)), quorum[0])
    alternatives = [other.name for other in quorum if other is not layout and accepts(other)]
    used = set(layout.required) | set(layout.optional)
    unused = [column for column in columns if field_of.get(column, column) not in used]
    return Detection(layout, columns, alternatives, unused)


def other_layout(record: dict, layout: Layout) -> str | None:
    """The layout a (column-mapped) record seems to belong to instead of `layout`: the most specific one
    whose columns it fills and which needs a column that `layout` does not know."""
    filled = {key for key, value in record.items() if value is not None}
    known = set(layout.required) | set(layout.optional)
    for other in LAYOUTS:
        if set(other.required) <= filled and not set(other.required) <= known:
            return other.name
    return None


def _forced_layout(format_name: str, present: set[str], columns: list[str]) -> Layout:
    layout = LAYOUTS_BY_NAME.get(format_name)
    if layout is None:
        raise DataError(f"unknown format {format_name!r}; known formats: {', '.join(LAYOUTS_BY_NAME)}")
    missing = [field for field in layout.required if field not in present]
    if missing:
        raise DataError(
            f"format {format_name} needs columns {', '.join(missing)} (columns found: {listed(columns)}); "
            "map them with --map FIELD=COLUMN"
        )
    return layout


def no_layout_message(columns: list[str]) -> str:
    expected = "; ".join(layout.describe() for layout in LAYOUTS)
    return (
        f"columns found: {listed(columns) or 'none'}; they match no known layout. "
        f"Expected one of: {expected}. Map columns with --map FIELD=COLUMN or pick one with --format NAME"
    )
