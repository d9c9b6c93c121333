"""Which normalized kinds feed which training stage, and how to derive prompts or unpaired rows.

sft       <- sft
rm, dpo   <- preference
kto       <- unpaired_preference, or preference split into one desirable and one undesirable row
ppo       <- prompts taken from any kind except plain text
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

STAGES = ("sft", "rm", "dpo", "kto", "ppo")
KINDS = ("preference", "unpaired_preference", "sft", "prompt")
_NEEDS = {
    "sft": ("sft", "demonstrations (prompt/completion, messages or text)"),
    "rm": ("preference", "preference pairs (prompt, chosen, rejected)"),
    "dpo": ("preference", "preference pairs (prompt, chosen, rejected)"),
    "kto": ("unpaired_preference", "labelled completions (prompt, completion, label)"),
}


def stage_fit(kind: str, stage: str, format_name: str | None = None) -> tuple[bool, str]:
    """(fits, reason) for training `stage` on a dataset of `kind`.

    `format_name` (the detected layout) tells plain-text SFT data apart, which has no prompts for PPO.
    """
    if stage not in STAGES:
        return False, f"unknown stage {stage!r}; stages: {', '.join(STAGES)}"
    if stage == "ppo":
        if format_name == "text":
            return False, "PPO needs prompts, and plain text rows have no prompt to take"
        return (
            True,
            "PPO takes the prompts of this dataset" if kind != "prompt" else "prompt-only rows feed PPO",
        )
    if stage == "kto" and kind == "preference":
        return True, "each pair becomes one desirable and one undesirable example for KTO"
    needed_kind, description = _NEEDS[stage]
    if kind == needed_kind:
        return True, f"{stage} trains on {description}"
    return False, f"{stage} needs {description}, but this dataset is {kind}"


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
