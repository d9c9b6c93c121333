"""The file layouts RLHF Studio understands, how each is detected, and how its rows become TRL rows.

A layout is a set of required (and optional) columns plus a normalizer that turns one source record into
zero or more normalized rows of one of four kinds:

    preference           {prompt, chosen, rejected}        reward model, DPO
    unpaired_preference  {prompt, completion, label}       KTO
    sft                  {prompt, completion} | {messages} | {text}
    prompt               {prompt}                          PPO

A normalizer raises `RowError` to drop the whole record, or yields a `RowError` among its rows to drop a
single pair (rankings). Conversations must be in a valid turn order (`check_turn_order`). Detection picks
the first layout in `LAYOUTS` (most specific first) whose required columns at least half of the first records
have; `accepts` breaks ties between layouts with the same columns by looking at values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import combinations

from rlhf_studio.data.problems import RowError
from rlhf_studio.data.values import (
    Messages,
    as_choice,
    as_label,
    as_list,
    as_messages,
    as_number,
    as_text,
    as_text_or_messages,
    check_turn_order,
    is_missing,
    sharegpt_messages,
    split_hh,
    split_shared_messages,
    type_name,
)

Normalized = Iterator[dict | RowError]


@dataclass(frozen=True)
class Layout:
    name: str
    kind: str
    required: tuple[str, ...]
    normalize: Callable[[dict], Normalized]
    optional: tuple[str, ...] = ()
    accepts: Callable[[dict], bool] = lambda record: True

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.required)})"


def _prompt_for(value, field: str, conversational: bool) -> str | Messages:
    """A prompt in the completions' style; a text prompt before message-list replies becomes a user turn."""
    prompt = as_text_or_messages(value, field)
    if conversational and isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not conversational and isinstance(prompt, list):
        raise RowError(field, "wrong type", "a message-list prompt needs message-list completions")
    return prompt


def _replies(values: list, fields: list[str]) -> list:
    """Completions that are all text or all assistant-first message lists."""
    replies = [as_text_or_messages(value, field) for value, field in zip(values, fields, strict=True)]
    for reply, field in zip(replies, fields, strict=True):
        if isinstance(reply, list) != isinstance(replies[0], list):
            detail = f"expected {type_name(replies[0])} like {fields[0]}, got {type_name(reply)}"
            raise RowError(field, "wrong type", detail)
        if isinstance(reply, list) and reply[0]["role"] != "assistant":
            detail = f"a reply must start with an assistant message, not {reply[0]['role']!r}"
            raise RowError(f"{field}[0].role", "wrong role", detail)
    return replies


def _check_orders(prompt: str | Messages, prompt_field: str, replies: list, fields: list[str]) -> None:
    """In conversational rows, the prompt followed by each reply must be a well-ordered conversation."""
    if isinstance(prompt, list):
        for reply, field in zip(replies, fields, strict=True):
            check_turn_order((prompt_field, prompt), (field, reply))


def _pair(prompt, chosen, rejected, fields=("prompt", "chosen", "rejected")) -> dict:
    chosen, rejected = _replies([chosen, rejected], list(fields[1:]))
    if chosen == rejected:
        raise RowError(fields[2], "chosen identical to rejected")
    prompt = _prompt_for(prompt, fields[0], isinstance(chosen, list))
    _check_orders(prompt, fields[0], [chosen, rejected], list(fields[1:]))
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _scores(record: dict) -> dict:
    """Optional score_chosen/score_rejected, kept as metadata; they must agree with the pair's order."""
    if is_missing(record.get("score_chosen")) and is_missing(record.get("score_rejected")):
        return {}
    chosen = as_number(record.get("score_chosen"), "score_chosen")
    rejected = as_number(record.get("score_rejected"), "score_rejected")
    if chosen < rejected:
        raise RowError(
            "score_chosen", "scores reversed", f"score_chosen {chosen} < score_rejected {rejected}"
        )
    if chosen == rejected:
        raise RowError("score_chosen", "equal scores", f"both {chosen}; equal scores make no pair")
    return {"score_chosen": chosen, "score_rejected": rejected}


def _preference(record: dict) -> Normalized:
    yield {**_pair(record.get("prompt"), record.get("chosen"), record.get("rejected")), **_scores(record)}


def _ultrafeedback(record: dict) -> Normalized:
    as_text_or_messages(record.get("prompt"), "prompt")
    chosen, rejected = _conversations(record)
    prompt, chosen, rejected = split_shared_messages(chosen, rejected)
    yield {"prompt": prompt, "chosen": chosen, "rejected": rejected, **_scores(record)}


def _hh_transcripts(record: dict) -> Normalized:
    chosen = as_text(record.get("chosen"), "chosen")
    rejected = as_text(record.get("rejected"), "rejected")
    if chosen == rejected:
        raise RowError("rejected", "chosen identical to rejected")
    prompt, chosen, rejected = split_hh(chosen, rejected)
    yield {"prompt": prompt, "chosen": as_text(chosen, "chosen"), "rejected": as_text(rejected, "rejected")}


def _conversations(record: dict) -> tuple[Messages, Messages]:
    """Whole chosen and rejected conversations, each in a valid turn order."""
    chosen = as_messages(record.get("chosen"), "chosen")
    rejected = as_messages(record.get("rejected"), "rejected")
    check_turn_order(("chosen", chosen))
    check_turn_order(("rejected", rejected))
    return chosen, rejected


def _implicit_conversational(record: dict) -> Normalized:
    chosen, rejected = _conversations(record)
    prompt, chosen, rejected = split_shared_messages(chosen, rejected)
    yield {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _openai_preference(record: dict) -> Normalized:
    request = record.get("input")
    if not isinstance(request, dict):
        raise RowError(
            "input", "missing field" if request is None else "wrong type", "expected {'messages': [...]}"
        )
    prompt = as_messages(request.get("messages"), "input.messages")
    preferred = as_messages(record.get("preferred_output"), "preferred_output")
    non_preferred = as_messages(record.get("non_preferred_output"), "non_preferred_output")
    yield _pair(
        prompt, preferred, non_preferred, ("input.messages", "preferred_output", "non_preferred_output")
    )


def _pairwise_choice(record: dict) -> Normalized:
    choice = as_choice(record.get("choice"), "choice")
    chosen, rejected = f"candidate_{choice}", f"candidate_{1 - choice}"
    yield _pair(
        record.get("input_text"), record.get(chosen), record.get(rejected), ("input_text", chosen, rejected)
    )


def _ranking_pairs(record: dict, scored: bool) -> Normalized:
    """Every C(K, 2) pair of a ranking: listed best to worst, or ordered by scores (higher is better)."""
    responses = as_list(record.get("responses"), "responses")
    if len(responses) < 2:
        raise RowError("responses", "too few responses", f"{len(responses)}; a ranking needs at least 2")
    scores: list[float] = []
    if scored:
        raw_scores = as_list(record.get("scores"), "scores")
        if len(raw_scores) != len(responses):
            detail = f"{len(responses)} responses but {len(raw_scores)} scores"
            raise RowError("scores", "length mismatch", detail)
        scores = [as_number(score, f"scores[{index}]") for index, score in enumerate(raw_scores)]
    fields = [f"responses[{index}]" for index in range(len(responses))]
    replies = _replies(responses, fields)
    prompt = _prompt_for(record.get("prompt"), "prompt", isinstance(replies[0], list))
    _check_orders(prompt, "prompt", replies, fields)
    for first, second in combinations(range(len(replies)), 2):
        better, worse = first, second
        if scored:
            if scores[first] == scores[second]:
                detail = (
                    f"responses {first} and {second} both scored {scores[first]}; equal scores make no pair"
                )
                yield RowError("scores", "equal scores", detail)
                continue
            if scores[second] > scores[first]:
                better, worse = second, first
        if replies[better] == replies[worse]:
            yield RowError("responses", "chosen identical to rejected", f"responses {better} and {worse}")
            continue
        row = {"prompt": prompt, "chosen": replies[better], "rejected": replies[worse]}
        if scored:
            row.update(score_chosen=scores[better], score_rejected=scores[worse])
        yield row


def _completion_row(record: dict) -> dict:
    (completion,) = _replies([record.get("completion")], ["completion"])
    prompt = _prompt_for(record.get("prompt"), "prompt", isinstance(completion, list))
    _check_orders(prompt, "prompt", [completion], ["completion"])
    return {"prompt": prompt, "completion": completion}


def _kto(record: dict) -> Normalized:
    yield {**_completion_row(record), "label": as_label(record.get("label"), "label")}


def _prompt_completion(record: dict) -> Normalized:
    yield _completion_row(record)


def _alpaca(record: dict) -> Normalized:
    """Instruction and optional input joined by a blank line as the prompt; output as the completion."""
    instruction = as_text(record.get("instruction"), "instruction")
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise RowError("input", "wrong type", f"expected text, got {type_name(extra)}")
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    yield {"prompt": prompt, "completion": as_text(record.get("output"), "output")}


def _with_assistant_turn(messages: Messages, field: str) -> dict:
    check_turn_order((field, messages))
    if not any(message["role"] == "assistant" for message in messages):
        raise RowError(field, "no assistant message", "a conversation to learn from needs an assistant reply")
    return {"messages": messages}


def _messages(record: dict) -> Normalized:
    yield _with_assistant_turn(as_messages(record.get("messages"), "messages"), "messages")


def _sharegpt(record: dict) -> Normalized:
    yield _with_assistant_turn(
        sharegpt_messages(record.get("conversations"), "conversations"), "conversations"
    )


def _text(record: dict) -> Normalized:
    yield {"text": as_text(record.get("text"), "text")}


def _prompt_only(record: dict) -> Normalized:
    prompt = as_text_or_messages(record.get("prompt"), "prompt")
    if isinstance(prompt, list):
        check_turn_order(("prompt", prompt), prompt=True)
    yield {"prompt": prompt}


def _prompt_answer(record: dict) -> Normalized:
    """A prompt and its known answer (a verifiable task): the answer is kept as text for answer rewards."""
    (row,) = _prompt_only(record)
    answer = record.get("answer")
    if isinstance(answer, int | float) and not isinstance(answer, bool) and math.isfinite(answer):
        answer = str(answer)
    yield {**row, "answer": as_text(answer, "answer").strip()}


def _full_conversations(record: dict) -> bool:
    chosen = record.get("chosen")
    return (
        isinstance(chosen, list)
        and bool(chosen)
        and isinstance(chosen[0], dict)
        and chosen[0].get("role") != "assistant"
    )


def _is_text_chosen(record: dict) -> bool:
    return isinstance(record.get("chosen"), str)


def _is_list_chosen(record: dict) -> bool:
    return isinstance(record.get("chosen"), list)


def _scored_rankings(record: dict) -> Normalized:
    return _ranking_pairs(record, scored=True)


def _rankings(record: dict) -> Normalized:
    return _ranking_pairs(record, scored=False)


PAIR = ("prompt", "chosen", "rejected")
SCORES = ("score_chosen", "score_rejected")
IMPLICIT = ("chosen", "rejected")
OPENAI = ("input", "preferred_output", "non_preferred_output")
PAIRWISE = ("input_text", "candidate_0", "candidate_1", "choice")
LAYOUTS: tuple[Layout, ...] = (
    Layout("openai_preference", "preference", OPENAI, _openai_preference),
    Layout("pairwise_choice", "preference", PAIRWISE, _pairwise_choice),
    Layout("scored_rankings", "preference", ("prompt", "responses", "scores"), _scored_rankings),
    Layout("ultrafeedback", "preference", PAIR, _ultrafeedback, SCORES, _full_conversations),
    Layout("preference", "preference", PAIR, _preference, SCORES),
    Layout("kto", "unpaired_preference", ("prompt", "completion", "label"), _kto),
    Layout("alpaca", "sft", ("instruction", "output"), _alpaca, ("input",)),
    Layout("rankings", "preference", ("prompt", "responses"), _rankings),
    Layout("hh_transcripts", "preference", IMPLICIT, _hh_transcripts, (), _is_text_chosen),
    Layout("implicit_conversational", "preference", IMPLICIT, _implicit_conversational, (), _is_list_chosen),
    Layout("prompt_completion", "sft", ("prompt", "completion"), _prompt_completion),
    Layout("messages", "sft", ("messages",), _messages),
    Layout("sharegpt", "sft", ("conversations",), _sharegpt),
    Layout("text", "sft", ("text",), _text),
    Layout("prompt_answer", "prompt", ("prompt", "answer"), _prompt_answer),
    Layout("prompt_only", "prompt", ("prompt",), _prompt_only),
)  # fmt: skip
LAYOUTS_BY_NAME = {layout.name: layout for layout in LAYOUTS}
KNOWN_FIELDS = sorted({name for layout in LAYOUTS for name in layout.required + layout.optional})
