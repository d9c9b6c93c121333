"""What the Data tab shows of normalized rows: flat display rows and token lengths per field."""

from __future__ import annotations

from rlhf_studio.data.stats import MEASURED_FIELDS

PREVIEW_ROWS = 50
LENGTH_ROWS = 1000


def as_text(value) -> str:
    """A string as is; a conversation as 'role: content' lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(f"{message['role']}: {message['content']}" for message in value)
    return str(value)


def display_rows(rows: list[dict], limit: int = PREVIEW_ROWS) -> list[dict]:
    """The first `limit` rows as flat text columns, in the order prompt/chosen/rejected/completion/..."""
    shown = rows[:limit]
    columns = [name for name in (*MEASURED_FIELDS, "label") if any(name in row for row in shown)]
    return [{name: as_text(row.get(name, "")) for name in columns} for row in shown]


def token_lengths(rows: list[dict], tokenizer, limit: int = LENGTH_ROWS) -> dict[str, list[int]]:
    """Token counts per field for the first `limit` rows; conversations through the chat template."""
    lengths: dict[str, list[int]] = {}
    for row in rows[:limit]:
        for name in MEASURED_FIELDS:
            if name in row:
                lengths.setdefault(name, []).append(_count_tokens(row[name], tokenizer))
    return lengths


def _count_tokens(value, tokenizer) -> int:
    if isinstance(value, list):
        if tokenizer.chat_template:
            return len(tokenizer.apply_chat_template(value, tokenize=True, return_dict=True)["input_ids"])
        value = as_text(value)
    return len(tokenizer(value, add_special_tokens=False)["input_ids"])
