"""Check and convert single values: texts, chat messages, numbers, labels; split shared prompts.

Every function raises `RowError(field, reason, detail)` instead of guessing. Two TRL dataset styles exist:
"standard" values are strings, "conversational" values are lists of {"role", "content"} messages.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from rlhf_studio.data.problems import RowError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
HH_ASSISTANT = re.compile(r"\n\nAssistant:")
HH_HUMAN = re.compile(r"(^|\n\n)Human:")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SMALL_INT = re.compile(r"-?[0-9]{1,9}")
SHOWN_CHARS = 40

Messages = list[dict[str, str]]


def type_name(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Infinity, which Python's JSON reader accepts
    names = {str: "text", list: "list", dict: "object", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """A value for a one-line reason: its repr, cut to SHOWN_CHARS characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 5]}...{text[-2:]}"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    record = dict(pairs)
    if len(record) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                detail = f"{shown(key)} appears twice in one object, so which value is meant is unclear"
                raise RowError(key, "duplicate key", detail)
            seen.add(key)
    return record


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def decode_json(text: str, start: int | None = None) -> Any:
    """Decode JSON (or, with `start`, (value, end) of the one at `start`); duplicate keys are refused.

    Raises JSONDecodeError for syntax errors (its position matters to streaming readers) and RowError for
    everything else: duplicate keys, nesting too deep to decode, numbers too long to convert.
    """
    try:
        return _DECODER.decode(text) if start is None else _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        detail = f"nested too deeply (the limit is about {sys.getrecursionlimit()} levels)"
        raise RowError(None, "invalid JSON", detail) from None
    except ValueError as error:  # a number of over 4300 digits, for one
        raise RowError(None, "invalid JSON", str(error).split(";")[0]) from None


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def require(record: dict, key: str) -> Any:
    if key not in record or record[key] is None:
        raise RowError(key, "missing field")
    return record[key]


def as_text(value: Any, field: str) -> str:
    if value is None:
        raise RowError(field, "missing field")
    if not isinstance(value, str):
        raise RowError(field, "wrong type", f"expected text, got {type_name(value)}")
    if not value.strip():
        raise RowError(field, "empty text")
    if not value.isascii() and (surrogate := _SURROGATE.search(value)):
        code = f"\\u{ord(surrogate.group()):04x}"
        raise RowError(field, "invalid text", f"a lone surrogate {code} at character {surrogate.start()}")
    return value


def as_list(value: Any, field: str) -> list:
    """A list; a string holding a JSON array is accepted too, since CSV cells cannot hold lists."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = decode_json(value)
        except (json.JSONDecodeError, RowError) as error:
            why = error.msg if isinstance(error, json.JSONDecodeError) else error.detail
            raise RowError(field, "wrong type", f"text that is not a valid JSON list: {why}") from None
    if value is None:
        raise RowError(field, "missing field")
    if not isinstance(value, list):
        raise RowError(field, "wrong type", f"expected a list, got {type_name(value)}")
    return value


def as_messages(value: Any, field: str) -> Messages:
    items = as_list(value, field)
    if not items:
        raise RowError(field, "empty list", "expected at least one message")
    return [as_message(item, f"{field}[{index}]") for index, item in enumerate(items)]


def as_message(item: Any, field: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise RowError(field, "wrong type", f"expected a message object, got {type_name(item)}")
    if item.get("role") is None:
        raise RowError(f"{field}.role", "message without role")
    if item.get("content") is None:
        raise RowError(f"{field}.content", "message without content")
    role = item["role"]
    if role not in ROLES:
        raise RowError(f"{field}.role", "unknown role", f"{shown(role)}; expected one of {', '.join(ROLES)}")
    return {"role": role, "content": as_text(item["content"], f"{field}.content")}


def check_turn_order(*parts: tuple[str, Messages], prompt: bool = False) -> None:
    """A conversation, given as (field, messages) parts such as a prompt and a reply: an optional system
    message first, then user and assistant taking turns, the user first. Chat templates that enforce
    alternation fail on anything else, so a row in another order is refused here, with the message named.
    A `prompt` waits for the assistant's answer, so it ends with a user message.
    """
    previous = None
    for field, messages in parts:
        for index, message in enumerate(messages):
            problem = _order_problem(message["role"], previous)
            if problem:
                raise RowError(f"{field}[{index}].role", "wrong order", problem)
            previous = message["role"]
    if prompt and previous != "user":
        field, messages = parts[-1]
        where = f"{field}[{len(messages) - 1}].role"
        raise RowError(where, "wrong order", "a prompt ends with a user message for the model to answer")


def _order_problem(role: str, previous: str | None) -> str | None:
    if role == "system":
        return None if previous is None else "a system message can only come first"
    if previous in (None, "system") and role != "user":
        return f"the conversation starts with {role}; the user speaks first"
    if role == previous:
        return f"two {role} messages in a row; user and assistant take turns"
    return None


def as_text_or_messages(value: Any, field: str) -> str | Messages:
    if isinstance(value, list):
        return as_messages(value, field)
    return as_text(value, field)


def sharegpt_messages(value: Any, field: str) -> Messages:
    """ShareGPT turns {"from": "human"|"gpt"|"system", "value": ...} as chat messages."""
    messages = []
    for index, turn in enumerate(as_list(value, field)):
        where = f"{field}[{index}]"
        if not isinstance(turn, dict):
            raise RowError(where, "wrong type", f"expected a turn object, got {type_name(turn)}")
        if turn.get("from") is None:
            raise RowError(f"{where}.from", "message without role")
        if turn.get("value") is None:
            raise RowError(f"{where}.value", "message without content")
        if not isinstance(turn["from"], str) or turn["from"] not in SHAREGPT_ROLES:
            known = ", ".join(SHAREGPT_ROLES)
            raise RowError(f"{where}.from", "unknown role", f"{shown(turn['from'])}; expected one of {known}")
        messages.append(
            {"role": SHAREGPT_ROLES[turn["from"]], "content": as_text(turn["value"], f"{where}.value")}
        )
    if not messages:
        raise RowError(field, "empty list", "expected at least one turn")
    return messages


def as_number(value: Any, field: str) -> float:
    if value is None:
        raise RowError(field, "missing field")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RowError(field, "wrong type", f"expected a number, got text {shown(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(field, "wrong type", f"expected a number, got {type_name(value)}")
    if not math.isfinite(value):
        raise RowError(field, "wrong type", f"expected a finite number, got {value}")
    return float(value)


def as_label(value: Any, field: str) -> bool:
    """A KTO label: true/false (also 1/0 and the strings "true"/"false"/"1"/"0" written by CSV)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise RowError(field, "wrong type", f"expected true or false, got {shown(value)}")


def as_choice(value: Any, field: str) -> int:
    if isinstance(value, str) and _SMALL_INT.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        got = f"text {shown(value)}" if isinstance(value, str) else type_name(value)
        raise RowError(field, "wrong type", f"expected 0 or 1, got {got}")
    if value not in (0, 1):
        raise RowError(field, "choice out of range", f"{value}; expected 0 or 1")
    return value


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split Anthropic HH transcripts at the last shared "\\n\\nAssistant:" marker.

    The prompt keeps the marker ("...\\n\\nAssistant:") and the replies keep their leading space, so that
    prompt + chosen is exactly the original transcript.
    """
    markers = [match.end() for match in HH_ASSISTANT.finditer(chosen)]
    if not markers or not HH_HUMAN.search(chosen):
        raise RowError("chosen", "no turn markers", "expected '\\n\\nHuman: ...\\n\\nAssistant: ...'")
    for end in reversed(markers):
        if rejected[:end] == chosen[:end]:
            return chosen[:end], chosen[end:], rejected[end:]
    raise RowError(
        "rejected", "no shared prompt", "chosen and rejected share no turns up to an Assistant turn"
    )


def split_shared_messages(chosen: Messages, rejected: Messages) -> tuple[Messages, Messages, Messages]:
    """Split two conversations into the shared leading messages and the two diverging assistant replies."""
    if chosen == rejected:
        raise RowError("rejected", "chosen identical to rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    for end in range(min(shared, len(chosen) - 1, len(rejected) - 1), 0, -1):
        if chosen[end]["role"] == rejected[end]["role"] == "assistant":
            return chosen[:end], chosen[end:], rejected[end:]
    raise RowError(
        "rejected", "no shared prompt", "chosen and rejected share no messages before an assistant reply"
    )
