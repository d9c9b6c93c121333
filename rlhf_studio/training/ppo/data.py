"""The data of a PPO run: prompts for the rollouts, and SFT batches for the PPO-ptx loss.

Prompts come from any library dataset (prompt-only rows, or the prompts of SFT and preference rows through
`extract_prompts`); each step takes the next slice of a shuffled order, reshuffled every pass, so step `n`
always sees the same prompts for a given seed, which is all a resumed run needs to continue.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import lru_cache

import torch

from rlhf_studio.data import DataError, extract_prompts, load_split
from rlhf_studio.workspace import Workspace


def load_prompts(workspace: Workspace, dataset: str) -> list:
    """Distinct prompts (strings or message lists) of the dataset's train split."""
    prompts = [row["prompt"] for row in extract_prompts(load_split(workspace, dataset, "train"))]
    if not prompts:
        raise DataError(f"dataset {dataset!r} has no prompts for PPO (plain text rows have none)")
    return prompts


@lru_cache(maxsize=4)
def epoch_order(count: int, seed: int) -> tuple[int, ...]:
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return tuple(order)


def step_prompts(prompts: list, step: int, per_process: int, world: int, rank: int, seed: int) -> list:
    """The prompts this process samples at `step` (0-based): its slice of the step's global batch."""
    start = (step * world + rank) * per_process
    picked = []
    for index in range(start, start + per_process):
        epoch, position = divmod(index, len(prompts))
        picked.append(prompts[epoch_order(len(prompts), seed + epoch)[position]])
    return picked


def prompt_text(prompt) -> str:
    """The prompt as one line of text for samples.jsonl: a string, or the last message of a conversation."""
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def sft_example(row: dict, tokenizer, max_length: int) -> tuple[list[int], int]:
    """(token ids, prompt length) of one normalized SFT row, formatted as SFT training saw it."""
    if "text" in row:
        return tokenizer(row["text"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"][
            :max_length
        ], 0
    if "messages" in row:
        messages = row["messages"]
        first_reply = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        prompt, reply = messages[:first_reply], messages[first_reply:]
    else:
        prompt, reply = row["prompt"], row["completion"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if isinstance(reply, str):
        reply = [{"role": "assistant", "content": reply}]
    if tokenizer.chat_template:
        prompt_string = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(prompt + reply, tokenize=False)
    else:
        prompt_string = "\n".join(m["content"] for m in prompt)
        full_text = prompt_string + "".join(m["content"] for m in reply) + tokenizer.eos_token
    prompt_length = len(tokenizer(prompt_string, add_special_tokens=False)["input_ids"])
    return tokenizer(full_text, add_special_tokens=False)["input_ids"][:max_length], prompt_length


def sft_batches(
    rows: list[dict], tokenizer, batch_size: int, max_length: int, seed: int, device
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless right-padded batches {input_ids, attention_mask, labels}; labels skip prompt and padding."""
    examples = [sft_example(row, tokenizer, max_length) for row in rows]
    examples = [(ids, prompt_length) for ids, prompt_length in examples if len(ids) > prompt_length]
    if not examples:
        raise DataError("the PPO-ptx dataset has no SFT rows with a completion")
    shuffle = random.Random(seed)
    while True:
        order = list(range(len(examples)))
        shuffle.shuffle(order)
        for start in range(0, max(len(order) - batch_size + 1, 1), batch_size):
            yield collate(
                [examples[i] for i in order[start : start + batch_size]], tokenizer.pad_token_id, device
            )


def collate(examples: list[tuple[list[int], int]], pad_token_id: int, device) -> dict[str, torch.Tensor]:
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return {name: tensor.to(device) for name, tensor in batch.items()}
