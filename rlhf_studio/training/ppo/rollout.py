"""PPO rollouts: prompts -> sampled responses -> reference log-probs, values and reward-model scores.

Everything here runs without gradients, once per PPO step, in batches of `forward_batch_size`:

    encode_prompts(prompts, tokenizer, max_tokens)   chat-templated prompt token ids
    sample(model, queries, settings, generator)      KV-cache sampling loop, left-padded queries
    response_logits / critic_values                  one forward over query + response
    RewardModelScorer                                 scores conversation text as RewardTrainer saw it

The sampling loop keeps the log-probability (and entropy) of every sampled token under softmax(logits / T),
so the "old" log-probs of PPO cost no second policy forward; with a value head on the policy it also keeps
the last hidden state of every step, so the old values are free too. top-k / top-p only shape the sampling;
the log-probs are those of the full tempered distribution (as in TRL).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhf_studio.training.ppo.core import entropy_from_logits, response_mask


@dataclass
class SamplingSettings:
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    eos_token_ids: list[int]
    pad_token_id: int


@dataclass
class Responses:
    """What a reward function sees: B prompts, their decoded replies and the reply tokens."""

    prompts: list  # B prompts: strings or lists of chat messages
    texts: list[str]  # B replies, decoded up to (not including) EOS
    tokens: torch.Tensor  # (B, T) reply tokens, padding after EOS
    mask: torch.Tensor  # (B, T) bool, true for real tokens (EOS included)


RewardFn = Callable[[Responses], torch.Tensor]  # Responses -> (B,) scores


@dataclass
class Sampled:
    responses: torch.Tensor  # (B, T) sampled tokens, pad after EOS
    logprobs: torch.Tensor  # (B, T) log-probs of the sampled tokens under softmax(logits / temperature)
    entropy: torch.Tensor  # (B, T) entropy of each step's tempered distribution
    hidden: torch.Tensor | None  # (B, T, H) last hidden state each token was sampled from, when asked


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding. attention_mask (B, L) -> (B, L), 0 at each row's first real token."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def encode_prompts(prompts: list, tokenizer, max_tokens: int) -> list[list[int]]:
    """Token ids of each prompt as the policy sees it: the chat template with the assistant turn opened.

    Plain strings become one user message when the tokenizer has a chat template; longer prompts keep their
    last `max_tokens` tokens (the end holds the question and the generation prompt).
    """
    encoded = []
    for prompt in prompts:
        if tokenizer.chat_template:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        encoded.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max_tokens:])
    return encoded


def left_pad(sequences: list[list[int]], pad_token_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded batch. B lists of ids -> (ids (B, L), attention mask (B, L) long)."""
    length = max(len(ids) for ids in sequences)
    ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, length - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
        mask[row, length - len(sequence) :] = 1
    return ids.to(device), mask.to(device)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) to -inf. logits (B, V) -> (B, V); 0 / 1.0 disable."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative - F.softmax(sorted_logits, dim=-1) >= top_p  # keep the token that crosses p
        logits = logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), float("-inf"))
    return logits


@torch.no_grad()
def sample(
    model,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    settings: SamplingSettings,
    generator: torch.Generator | None = None,
    keep_hidden: bool = False,
) -> Sampled:
    """Sample up to max_new_tokens per query with the KV cache; stops early once every row emitted EOS.

    query_ids, query_mask (B, P) left-padded -> Sampled with T <= max_new_tokens.
    """
    attention = query_mask.long()
    positions = position_ids(attention)
    outputs = model(
        input_ids=query_ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        output_hidden_states=keep_hidden,
    )
    next_position = positions[:, -1:] + 1
    eos = torch.tensor(settings.eos_token_ids, device=query_ids.device)
    finished = torch.zeros(query_ids.shape[0], dtype=torch.bool, device=query_ids.device)
    tokens, logprobs, entropies, hidden = [], [], [], []
    for _ in range(settings.max_new_tokens):
        logits = outputs.logits[:, -1].float() / settings.temperature
        if keep_hidden:
            hidden.append(outputs.hidden_states[-1][:, -1])
        probabilities = F.softmax(filter_logits(logits, settings.top_k, settings.top_p), dim=-1)
        token = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
        token = torch.where(finished, settings.pad_token_id, token)
        log_distribution = F.log_softmax(logits, dim=-1)
        tokens.append(token)
        logprobs.append(log_distribution.gather(1, token[:, None]).squeeze(1))
        entropies.append(entropy_from_logits(logits[:, None])[:, 0])
        finished |= torch.isin(token, eos)
        if bool(finished.all()):
            break
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
        outputs = model(
            input_ids=token[:, None],
            attention_mask=attention,
            position_ids=next_position,
            past_key_values=outputs.past_key_values,
            use_cache=True,
            output_hidden_states=keep_hidden,
        )
        next_position = next_position + 1
    return Sampled(
        responses=torch.stack(tokens, dim=1),
        logprobs=torch.stack(logprobs, dim=1),
        entropy=torch.stack(entropies, dim=1),
        hidden=torch.stack(hidden, dim=1) if keep_hidden else None,
    )


def response_logits(
    model, query_responses: torch.Tensor, attention_mask: torch.Tensor, context_length: int, **kwargs
):
    """Logits that predicted each response token (no temperature), plus the model outputs.

    query_responses, attention_mask (B, P + T) -> logits (B, T, V): position P - 1 + t predicts token t.
    """
    outputs = model(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
        logits_to_keep=query_responses.shape[1] - context_length + 1,
        **kwargs,
    )
    return outputs.logits[:, :-1], outputs


def critic_parts(critic) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone, per-token head) of a sequence-classification model, LoRA-wrapped or not."""
    model = critic.get_base_model() if hasattr(critic, "get_base_model") else critic
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no `score` head to read values from")
    return getattr(model, model.base_model_prefix), head


def critic_values(critic, query_responses: torch.Tensor, attention_mask: torch.Tensor, context_length: int):
    """Value of the state before each response token. (B, P + T) -> (B, T)."""
    backbone, head = critic_parts(critic)
    hidden = backbone(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
    ).last_hidden_state
    return head(hidden[:, context_length - 1 : -1]).squeeze(-1).float()


class RewardModelScorer:
    """Score (prompt, reply) pairs with a sequence-classification reward model.

    The text is rebuilt with the reward model's own tokenizer and chat template, exactly as TRL's
    RewardTrainer formatted its training pairs, so a reward model with another tokenizer works too.
    `frozen` is a context in which the model is the reward model (a LoRA critic's adapter disabled).
    """

    def __init__(self, model, tokenizer, batch_size: int, max_length: int, frozen=nullcontext) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.frozen = frozen

    def text(self, prompt, reply: str) -> str:
        if not self.tokenizer.chat_template:
            prompt = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
            return prompt + reply + self.tokenizer.eos_token
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        return self.tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": reply}], tokenize=False
        )

    def __call__(self, responses: Responses) -> torch.Tensor:
        return self.score(responses.prompts, responses.texts)

    @torch.no_grad()
    def score(self, prompts: list, replies: list[str]) -> torch.Tensor:
        """One score per (prompt, reply); prompts are strings or message lists."""
        texts = [self.text(prompt, reply) for prompt, reply in zip(prompts, replies, strict=True)]
        device = next(self.model.parameters()).device
        scores = []
        with self.frozen():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=False,
                    return_tensors="pt",
                ).to(device)
                scores.append(self.model(**batch, use_cache=False).logits[:, 0].float())
        return torch.cat(scores)


def decode_responses(tokenizer, responses: torch.Tensor, eos_token_ids: list[int]) -> Responses:
    """Mask and decoded text of sampled responses; prompts are filled in by the caller."""
    mask = response_mask(responses, eos_token_ids)
    texts = []
    for tokens, real in zip(responses, mask, strict=True):
        tokens = tokens[real]
        if len(tokens) and int(tokens[-1]) in eos_token_ids:
            tokens = tokens[:-1]
        texts.append(tokenizer.decode(tokens, skip_special_tokens=True))
    return Responses(prompts=[], texts=texts, tokens=responses, mask=mask)
