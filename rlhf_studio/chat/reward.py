"""Reward-model scores of chat replies, computed the way the reward model was trained to read them.

    scorer = load_reward_scorer(cache, "run:20261122-150001-rm-9c1d")
    scores = score_replies(scorer, [messages_a, messages_b], [reply_a, reply_b])   # [0.8, -1.3]

PPO's `RewardModelScorer` already rebuilds each (conversation, reply) pair with the reward model's own
tokenizer and chat template, exactly as TRL's RewardTrainer formatted its training pairs; chat reuses it with
the whole conversation (system prompt and earlier turns included) as the prompt.
"""

from __future__ import annotations

import torch

from rlhf_studio.chat.cache import ModelCache
from rlhf_studio.models import Progress
from rlhf_studio.training.common import REWARD
from rlhf_studio.training.ppo.rollout import Responses, RewardModelScorer

SCORE_MAX_LENGTH = (
    2048  # tokens; above the reward stage's default max_length (512), so replies are read whole
)
SCORE_BATCH_SIZE = 3  # one batch for the panes of a round


def load_reward_scorer(
    cache: ModelCache, spec: str, progress: Progress | None = None, batch_size: int = SCORE_BATCH_SIZE
) -> RewardModelScorer:
    """A scorer for the reward-model run `spec`; ModelError when it is not a sequence classifier."""
    reward_model = cache.load(spec, progress, head=REWARD)
    return RewardModelScorer(
        reward_model.entry.module,
        reward_model.tokenizer,
        batch_size=batch_size,
        max_length=SCORE_MAX_LENGTH,
        frozen=reward_model.active,  # holds the entry's lock while it scores
    )


def score_replies(
    scorer: RewardModelScorer, conversations: list[list[dict]], replies: list[str]
) -> list[float]:
    """The reward of each reply to the conversation (messages up to the user turn) before it."""
    empty = torch.empty(0)  # the scorer reads prompts and texts only
    responses = Responses(prompts=conversations, texts=replies, tokens=empty, mask=empty)
    return [float(score) for score in scorer(responses)]
