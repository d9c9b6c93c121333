"""Thumbs up or down on one pane's reply and the unpaired row it stands for (pure functions, no files).

A thumb rates one reply on its own, good or bad, with no other pane to compare it to: the data KTO learns
from. `thumb_record` is one line of the feedback log (arena/feedback.jsonl) and `unpaired_row` turns it into
a TRL conversational unpaired-preference row:

    {"prompt": [system?, user, assistant, ..., user], "completion": [{"role": "assistant", ...}],
     "label": true (👍) | false (👎), "metadata": {"thumb_id", "time", "model", "blind", "settings"}}

The prompt is the conversation the rated reply answered: the system prompt and this pane's earlier turns.
"""

from __future__ import annotations

THUMBS = {True: "👍", False: "👎"}


def thumb_record(
    letter: str,
    up: bool,
    model: str,
    prompt: list[dict],
    reply: str,
    *,
    thumb_id: str,
    time: str,
    dataset: str,
    blind: bool,
    settings: dict,
) -> dict:
    """One line of the feedback log: a thumb on pane `letter`, the model behind it, and the conversation and
    reply it rated."""
    return {
        "id": thumb_id,
        "time": time,
        "pane": letter,
        "label": up,
        "model": model,
        "blind": blind,
        "dataset": dataset,
        "settings": settings,
        "prompt": prompt,
        "reply": reply,
    }


def unpaired_row(record: dict) -> dict:
    """The KTO row a thumb stands for, with the thumb as metadata."""
    return {
        "prompt": record["prompt"],
        "completion": [{"role": "assistant", "content": record["reply"]}],
        "label": record["label"],
        "metadata": {
            "thumb_id": record["id"],
            "time": record["time"],
            "model": record["model"],
            "blind": record["blind"],
            "settings": record["settings"],
        },
    }
