"""A conversation as the text a model continues: its own chat template, or a plain-text fallback.

Every model is prompted with its own chat template (`tokenizer.apply_chat_template`, assistant turn opened),
so a pane sees exactly the format the model was trained on. A model without a template (a base model that was
never instruction-tuned) gets a notice and this fallback, which such models continue fairly well:

    System: <system prompt>        (only when one is set)

    User: <message>
    Assistant: <reply>
    User: <message>
    Assistant:

Base models tend to go on writing the next "User:" turn themselves, so with the fallback the reply also ends
at the first "\\nUser:" it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK_NOTICE = (
    "This model has no chat template, so it is prompted with plain 'User:' / 'Assistant:' lines; "
    "replies may ramble."
)
FALLBACK_STOP = "\nUser:"
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class Prompt:
    text: str  # what the model continues
    stop_strings: tuple[str, ...]  # the reply ends before the first of these
    notice: str | None  # one sentence for the pane when the fallback is used
    add_special_tokens: bool = False  # a chat template writes its own; plain text gets the tokenizer's (BOS)


def fallback_text(messages: list[dict]) -> str:
    """Plain "User:/Assistant:" text ending with an opened assistant turn."""
    lines = []
    for message in messages:
        lines.append(f"{ROLE_NAMES[message['role']]}: {message['content']}")
        if message["role"] == "system":
            lines.append("")
    return "\n".join([*lines, "Assistant:"])


def render_prompt(tokenizer, messages: list[dict]) -> Prompt:
    """`messages` ([system,] user, assistant, ..., user) as the text the model continues."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return Prompt(text=text, stop_strings=(), notice=None)
    return Prompt(
        text=fallback_text(messages),
        stop_strings=(FALLBACK_STOP,),
        notice=FALLBACK_NOTICE,
        add_special_tokens=True,
    )


def conversation(system_prompt: str, turns: list[dict]) -> list[dict]:
    """The messages a model sees: the system prompt (when set) before the pane's user/assistant turns."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    return system + list(turns)
