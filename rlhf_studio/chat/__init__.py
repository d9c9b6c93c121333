"""The chat arena engine: base, SFT and RLHF models side by side, streaming, reward scores, votes that become
preference data and thumbs that become KTO data. No gradio here: the Chat tab (rlhf_studio/ui) calls this.

    cache = ModelCache(workspace)                                    # one per app, shared by all sessions
    arena = ChatArena(cache, [BUNDLED_MODEL, "run:<sft id>", "run:<dpo id>"], blind=True,
                      reward_model="run:<rm id>")
    for views in arena.send("Name a colour.", GenerationSettings(seed=1)):
        ...                                        # [PaneView] A, B, C: messages so far, notice, score
    arena.vote(Vote.best("C"))                     # -> VoteResult; pairs appended to datasets/arena-votes
    arena.thumb("B", up=True)                      # -> ThumbResult; a row appended to datasets/arena-feedback
    arena_stats(ArenaStore(workspace).votes())     # -> [PairStats] wins / ties / losses per pair of models
    export_dataset(workspace, "arena-votes", "votes.jsonl")

    sources.py    a pane's pick (bundled, folder, hub id, run:<id>) -> root model + LoRA adapters on it
    cache.py      loaded models: one base per LoRA family with switched adapters, LRU within a memory budget
    templates.py  a conversation as prompt text: the model's chat template, or the plain-text fallback
    generation.py one pane's reply token by token (KV-cache sampling loop, seeded), GenerationSettings
    streaming.py  advance one reply stream per pane in turn
    reward.py     reward-model scores of replies (PPO's RewardModelScorer)
    votes.py      vote kinds -> preference pairs and log records (pure)
    feedback.py   a thumb on one reply -> an unpaired (KTO) row and a log record (pure)
    store.py      votes and feedback logs, the datasets they grow through the data doctor, JSONL export
    stats.py      wins / ties / losses / win rate per pair of models
    arena.py      one conversation of 2-3 panes: send, stop, regenerate, clear, blind mode, vote, thumbs
"""

from rlhf_studio.chat.arena import ChatArena, PaneView, ThumbResult, VoteResult
from rlhf_studio.chat.cache import DEFAULT_BUDGET_BYTES, LoadedModel, ModelCache
from rlhf_studio.chat.generation import ChatError, GenerationSettings
from rlhf_studio.chat.stats import PairStats, arena_stats
from rlhf_studio.chat.store import (
    DEFAULT_DATASET,
    DEFAULT_FEEDBACK_DATASET,
    FEEDBACK,
    VOTES,
    ArenaStore,
    export_dataset,
)
from rlhf_studio.chat.templates import FALLBACK_NOTICE
from rlhf_studio.chat.votes import Vote, VoteError

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "DEFAULT_DATASET",
    "DEFAULT_FEEDBACK_DATASET",
    "FALLBACK_NOTICE",
    "FEEDBACK",
    "VOTES",
    "ArenaStore",
    "ChatArena",
    "ChatError",
    "GenerationSettings",
    "LoadedModel",
    "ModelCache",
    "PairStats",
    "PaneView",
    "ThumbResult",
    "Vote",
    "VoteError",
    "VoteResult",
    "arena_stats",
    "export_dataset",
]
