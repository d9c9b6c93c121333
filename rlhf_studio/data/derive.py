"""Rows derived from normalized rows of another kind: the prompts of any dataset (for PPO and win rates),
and preference pairs as unpaired rows (one desirable, one undesirable). Which kinds feed which training stage
is each stage's to say (rlhf_studio.stages: `stage_fit`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

KINDS = ("preference", "unpaired_preference", "sft", "prompt")  # what normalized rows can be


def extract_prompts(rows: Iterable[dict]) -> Iterator[dict]:
    """Distinct {"prompt": ...} rows from normalized rows of any kind, in first-seen order.

    Conversations give the messages before their first assistant reply; plain text rows give nothing.
    """
    seen: set[str] = set()
    for row in rows:
        prompt = row.get("prompt")
        if prompt is None and "messages" in row:
            first_reply = next((i for i, m in enumerate(row["messages"]) if m["role"] == "assistant"), 0)
            prompt = row["messages"][:first_reply] or None
        if prompt is None:
            continue
        key = json.dumps(prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield {"prompt": prompt}


def unpair_rows(rows: Iterable[dict]) -> Iterator[dict]:
    """Preference pairs as KTO rows: the chosen reply labelled True, the rejected one False."""
    for row in rows:
        yield {"prompt": row["prompt"], "completion": row["chosen"], "label": True}
        yield {"prompt": row["prompt"], "completion": row["rejected"], "label": False}
