"""One pane's reply, token by token: a KV-cache sampling loop that a caller advances one step at a time.

    prompt = render_prompt(pane_model.tokenizer, messages)      # the model's chat template, or the fallback
    for text in stream_reply(pane_model, prompt, settings, stop_event):
        show(text)            # the whole reply so far, after every token

The loop is our own rather than `model.generate` in a thread, for two reasons: panes that share a LoRA base
switch adapters between steps, which is only sound when each forward runs under the entry's lock with the
adapter set (`LoadedModel.active()`); and a generator per pane lets `streaming.interleave` advance all panes
in turn from one thread, so they fill together (FastChat's arena does the same).

Sampling: logits / temperature, then nucleus filtering (top-p), then one draw from a `torch.Generator` seeded
with `settings.seed`, so the same model, conversation and settings give the same reply. `greedy` takes the
arg-max instead. The reply ends at an end-of-sequence token, a stop string of the prompt format, after
`max_new_tokens`, or when `stop` is set (the Stop button).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from rlhf_studio.chat.cache import LoadedModel
from rlhf_studio.chat.templates import Prompt
from rlhf_studio.training.ppo.rollout import filter_logits

ALL_THREADS = torch.get_num_threads()


def share_cpu(training: bool) -> None:
    """Give chat one CPU thread while a training child runs, all of them otherwise (no effect on a GPU).

    With every core busy, two processes that both spread their matrix products over all cores slow each
    other down several times over (OpenMP threads spin while they wait), so the chat keeps out of the way.
    """
    if not torch.cuda.is_available():
        torch.set_num_threads(1 if training else ALL_THREADS)


class ChatError(ValueError):
    """A chat request was refused; the message is one sentence for the user."""


@dataclass
class GenerationSettings:
    """Settings shared by every pane of the arena."""

    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    seed: int = 0
    greedy: bool = False  # always the most likely token: temperature, top-p and seed play no part

    def problems(self) -> list[str]:
        problems = []
        if not self.greedy and self.temperature <= 0:
            problems.append("temperature: must be above 0 (or tick greedy)")
        if not 0 < self.top_p <= 1:
            problems.append("top_p: must be above 0 and at most 1")
        if self.max_new_tokens < 1:
            problems.append("max_new_tokens: must be at least 1")
        return problems

    def to_dict(self) -> dict:
        return asdict(self)


def eos_token_ids(pane_model: LoadedModel) -> list[int]:
    """End-of-sequence ids from the tokenizer and the model's generation config (often an end-of-turn id)."""
    ids = {pane_model.tokenizer.eos_token_id}
    generation_config = getattr(pane_model.entry.module, "generation_config", None)
    configured = getattr(generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(token for token in ids if token is not None)


def next_token(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator) -> int:
    """One token from the last position's logits (1, V)."""
    if settings.greedy:
        return int(logits.argmax(dim=-1))
    filtered = filter_logits(logits.float() / settings.temperature, top_k=0, top_p=settings.top_p)
    return int(torch.multinomial(torch.softmax(filtered, dim=-1), 1, generator=generator))


@torch.no_grad()
def generate_tokens(
    pane_model: LoadedModel, prompt_ids: list[int], settings: GenerationSettings, stop: threading.Event
) -> Iterator[int]:
    """Sampled token ids, one per step, end-of-sequence excluded; each forward holds the entry's lock."""
    device = pane_model.device
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    eos = set(eos_token_ids(pane_model))
    with pane_model.active() as model:
        outputs = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True, logits_to_keep=1)
    for _ in range(settings.max_new_tokens):
        token = next_token(outputs.logits[:, -1], settings, generator)
        if token in eos:
            return
        yield token
        if stop.is_set():
            return
        with pane_model.active() as model:
            outputs = model(
                input_ids=torch.tensor([[token]], device=device),
                past_key_values=outputs.past_key_values,
                use_cache=True,
            )


def prompt_ids(pane_model: LoadedModel, prompt: Prompt, max_new_tokens: int) -> list[int]:
    """Token ids of the prompt; refuses a conversation that leaves no room for the reply."""
    ids = pane_model.tokenizer(prompt.text, add_special_tokens=prompt.add_special_tokens)["input_ids"]
    limit = getattr(pane_model.config, "max_position_embeddings", None)
    if limit is not None and len(ids) + max_new_tokens > limit:
        raise ChatError(
            f"The conversation is {len(ids)} tokens and the model reads at most {limit}: "
            "clear the chat or lower max new tokens."
        )
    return ids


def reply_text(
    tokenizer, tokens: list[int], stop_strings: tuple[str, ...], partial: bool
) -> tuple[str, bool]:
    """(the reply so far, whether it reached a stop string).

    A token that ends inside a multi-byte character decodes to U+FFFD until the next token completes it, so
    while the reply is `partial` trailing replacement characters are held back.
    """
    text = tokenizer.decode(tokens, skip_special_tokens=True).lstrip()
    for stop_string in stop_strings:
        if stop_string in text:
            return text[: text.index(stop_string)].rstrip(), True
    return (text.rstrip("\ufffd") if partial else text), False


def stream_reply(
    pane_model: LoadedModel, prompt: Prompt, settings: GenerationSettings, stop: threading.Event
) -> Iterator[str]:
    """The reply to `prompt` (see `templates.render_prompt`), growing by one token per step."""
    ids = prompt_ids(pane_model, prompt, settings.max_new_tokens)
    tokens: list[int] = []
    text = ""
    for token in generate_tokens(pane_model, ids, settings, stop):
        tokens.append(token)
        text, ended = reply_text(pane_model.tokenizer, tokens, prompt.stop_strings, partial=True)
        yield text
        if ended:
            return
    final, _ = reply_text(pane_model.tokenizer, tokens, prompt.stop_strings, partial=False)
    if final != text:
        yield final
