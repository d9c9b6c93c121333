"""One arena conversation: 2 or 3 panes answer the same messages side by side, and the user votes on them or
rates each reply with a thumb.

    cache = ModelCache(workspace)              # one per app: every session shares the loaded models
    arena = ChatArena(cache, [BUNDLED_MODEL, "run:...-sft-...", "run:...-dpo-..."], blind=True)
    for views in arena.send("Name a colour.", GenerationSettings(seed=1), progress):
        show(views)                            # [PaneView, ...] in pane order A, B, C
    result = arena.vote(Vote.best("B"))        # names revealed; pairs added to the "arena-votes" dataset
    thumb = arena.thumb("A", up=False)         # names revealed; one row added to "arena-feedback" (KTO)
    arena.stop()    # from another thread (the Stop button): the replies end where they are
    arena.regenerate(settings) / arena.clear()

Each pane keeps its own history (its own earlier replies). Models are loaded before the first token (the
progress callback sees it), then one reply stream per pane is advanced in turn (`streaming.interleave`), so
the panes fill together; after the round every reply gets its reward-model score when a reward model is set.

Blind mode shows the panes as "Model A/B/C" in an order shuffled with `shuffle_seed` (random when None); only
this object knows which model is behind which letter until a vote or a thumb reveals them (a thumb names its
pane's model, and with the picks known that tells the others apart too, so it reveals them all). Once
revealed, the names stay shown, and later votes and thumbs of the conversation are logged as not blind.
`clear()` starts a new conversation and, in blind mode, a new shuffle and hidden names again.

Each round takes one vote, and one thumb per pane: a second thumb on the same reply is refused rather than
replacing the first (the logs are append-only, and the first row may already be in another dataset), so a
pane is rated again after the next message or a regenerate gives it a new reply.

An arena is one browser session's state (keep it in `gr.State`): its methods are not meant to be called
from two threads at once, except `stop()`.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from rlhf_studio.chat.cache import LoadedModel, ModelCache
from rlhf_studio.chat.feedback import THUMBS, thumb_record, unpaired_row
from rlhf_studio.chat.generation import ChatError, GenerationSettings, stream_reply
from rlhf_studio.chat.reward import load_reward_scorer, score_replies
from rlhf_studio.chat.store import DEFAULT_DATASET, DEFAULT_FEEDBACK_DATASET, FEEDBACK, VOTES, ArenaStore
from rlhf_studio.chat.streaming import interleave
from rlhf_studio.chat.templates import conversation, render_prompt
from rlhf_studio.chat.votes import (
    PANE_LETTERS,
    Vote,
    VoteError,
    check_vote,
    pane_index,
    preference_rows,
    vote_record,
)
from rlhf_studio.models import Progress
from rlhf_studio.runner.runs import now_iso


@dataclass
class PaneView:
    """What one pane shows."""

    label: str  # "Model A" while blind mode hides the model, else the model's name
    model: str | None  # the model; None while hidden
    messages: list[dict]  # user/assistant messages, the last one the reply so far (gr.Chatbot "messages")
    writing: bool = False  # this pane's reply is still growing
    stopped: bool = False  # the Stop button ended this round early
    notice: str | None = None  # e.g. no chat template, so the plain-text fallback is used
    score: float | None = None  # reward-model score of the last reply
    error: str | None = None  # why this pane has no reply this round


@dataclass
class VoteResult:
    vote_id: str
    dataset: str
    pairs_stored: int
    skipped: list[str]  # why the data doctor refused a pair, e.g. "line 1, rejected: chosen identical..."
    models: list[str]  # the models behind panes A, B(, C): revealed now


@dataclass
class ThumbResult:
    thumb_id: str
    dataset: str
    pane: str  # the pane's letter
    up: bool
    model: str  # the model behind the pane: revealed now, with the others
    rows_stored: int  # 1, or 0 when the data doctor refused the row
    skipped: list[str]  # why the data doctor refused it, e.g. "line 1, completion[0].content: empty text"
    rows_total: int  # rows in the dataset now


@dataclass
class _Pane:
    model: str
    messages: list[dict] = field(default_factory=list)
    writing: bool = False
    notice: str | None = None
    score: float | None = None
    error: str | None = None


class ChatArena:
    def __init__(
        self,
        cache: ModelCache,
        models: list[str],
        *,
        blind: bool = False,
        shuffle_seed: int | None = None,
        reward_model: str | None = None,
        store: ArenaStore | None = None,
    ) -> None:
        if not 2 <= len(models) <= len(PANE_LETTERS):
            raise ChatError(f"Pick 2 or 3 models to compare, not {len(models)}.")
        self.cache = cache
        self.models = list(models)
        self.blind = blind
        self.reward_model = reward_model
        self.store = store or ArenaStore(cache.workspace)
        self._shuffle = random.Random(shuffle_seed)
        self._stop = threading.Event()
        self._busy = False
        self._settings: GenerationSettings | None = None
        self.clear()

    # ---------------------------------------------------------------- what the panes show

    @property
    def revealed(self) -> bool:
        return not self.blind or self._revealed

    def labels(self) -> list[str]:
        if self.revealed:
            return [pane.model for pane in self._panes]
        return [f"Model {letter}" for letter in PANE_LETTERS[: len(self._panes)]]

    def views(self) -> list[PaneView]:
        stopped = self._stop.is_set()
        return [
            PaneView(
                label=label,
                model=pane.model if self.revealed else None,
                messages=[dict(message) for message in pane.messages],
                writing=pane.writing,
                stopped=stopped and bool(pane.messages),
                notice=pane.notice,
                score=pane.score,
                error=pane.error,
            )
            for label, pane in zip(self.labels(), self._panes, strict=True)
        ]

    # ---------------------------------------------------------------- conversation

    def send(
        self, message: str, settings: GenerationSettings, progress: Progress | None = None
    ) -> Iterator[list[PaneView]]:
        """Send `message` to every pane and stream the replies: yields the views after every token."""
        message = (message or "").strip()
        if not message:
            raise ChatError("Type a message first.")
        self._check_ready(settings)
        for pane in self._panes:
            pane.messages += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        yield from self._round(settings, progress)

    def regenerate(
        self, settings: GenerationSettings, progress: Progress | None = None
    ) -> Iterator[list[PaneView]]:
        """Answer the last message again (a new seed in `settings` gives new replies)."""
        self._check_ready(settings)
        if not self._panes[0].messages:
            raise ChatError("There is nothing to regenerate yet: send a message first.")
        for pane in self._panes:
            pane.messages[-1]["content"] = ""
        yield from self._round(settings, progress)

    def stop(self) -> None:
        """End the replies being written (safe from another thread); what they wrote so far stays."""
        self._stop.set()

    def clear(self) -> None:
        """Start a new conversation; in blind mode with a new shuffle and the names hidden again."""
        self._check_idle()
        order = list(self.models)
        if self.blind:
            self._shuffle.shuffle(order)
        self._panes = [_Pane(model) for model in order]
        self._revealed = False
        self._voted = False
        self._thumbs: dict[int, bool] = {}  # pane index -> up, for this round's replies
        self._stop.clear()

    def _check_idle(self) -> None:
        if self._busy:
            raise ChatError("The panes are still writing: stop them first.")

    def _check_ready(self, settings: GenerationSettings) -> None:
        self._check_idle()
        problems = settings.problems()
        if problems:
            raise ChatError("; ".join(problems))

    def _round(self, settings: GenerationSettings, progress: Progress | None) -> Iterator[list[PaneView]]:
        self._busy, self._voted, self._thumbs, self._settings = True, False, {}, settings
        self._stop.clear()
        for pane in self._panes:
            pane.notice = pane.score = pane.error = None
            pane.writing = True
        try:
            yield self.views()
            streams = self._streams(settings, progress)
            for index, update in interleave(streams):
                pane = self._panes[index]
                if isinstance(update, str):
                    pane.messages[-1]["content"] = update
                else:
                    pane.writing = False
                    pane.error = str(update) if update is not None else pane.error
                yield self.views()
            self._score(settings, progress)
        finally:
            self._busy = False
            for pane in self._panes:
                pane.writing = False
        yield self.views()

    def _streams(self, settings: GenerationSettings, progress: Progress | None) -> list[Iterator[str]]:
        """One reply stream per pane; every model is loaded first, so that the panes start together."""
        streams = []
        for index, pane in enumerate(self._panes):
            try:
                pane_model = self.cache.load(pane.model, _part(progress, index, len(self._panes)))
                streams.append(self._stream(pane, pane_model, settings))
            except Exception as error:  # the pane shows why; the others still answer
                pane.error = str(error)
                streams.append(iter(()))
        return streams

    def _stream(self, pane: _Pane, pane_model: LoadedModel, settings: GenerationSettings) -> Iterator[str]:
        prompt = render_prompt(pane_model.tokenizer, conversation(settings.system_prompt, pane.messages[:-1]))
        pane.notice = prompt.notice
        return stream_reply(pane_model, prompt, settings, self._stop)

    def _score(self, settings: GenerationSettings, progress: Progress | None) -> None:
        scored = [pane for pane in self._panes if pane.error is None]
        if not self.reward_model or not scored:
            return
        try:
            scorer = load_reward_scorer(self.cache, self.reward_model, progress)
            scores = score_replies(
                scorer,
                [conversation(settings.system_prompt, pane.messages[:-1]) for pane in scored],
                [pane.messages[-1]["content"] for pane in scored],
            )
        except Exception as error:  # a broken reward model must not cost the replies
            for pane in scored:
                pane.notice = " ".join(filter(None, [pane.notice, f"No reward score: {error}"]))
            return
        for pane, score in zip(scored, scores, strict=True):
            pane.score = score

    # ---------------------------------------------------------------- votes

    def vote(self, vote: Vote, dataset: str = DEFAULT_DATASET) -> VoteResult:
        """Record a vote on the last round: the log, pairs for `dataset`, and the names revealed."""
        self._check_idle()
        if self._settings is None or not self._panes[0].messages:
            raise VoteError("Send a message first: there is no reply to vote on.")
        if self._voted:
            raise VoteError("This round already has a vote: send another message to vote again.")
        if any(pane.error for pane in self._panes):
            raise VoteError("A pane has no reply this round, so the panes cannot be compared.")
        check_vote(vote, len(self._panes))
        self.store.check_dataset(VOTES, dataset)
        record = vote_record(
            vote,
            [pane.model for pane in self._panes],
            [conversation(self._settings.system_prompt, pane.messages[:-1]) for pane in self._panes],
            [pane.messages[-1]["content"] for pane in self._panes],
            vote_id=uuid.uuid4().hex,
            time=now_iso(),
            dataset=dataset,
            blind=not self.revealed,
            settings=self._settings.to_dict(),
        )
        added = self.store.add_rows(VOTES, dataset, preference_rows(record))
        self.store.append_vote({**record, "pairs_stored": added.stored})
        self._voted = self._revealed = True
        return VoteResult(
            record["id"], dataset, added.stored, added.skipped, [pane.model for pane in self._panes]
        )

    def thumb(self, letter: str, up: bool, dataset: str = DEFAULT_FEEDBACK_DATASET) -> ThumbResult:
        """Rate pane `letter`'s last reply good (`up`) or bad: the log, one KTO row for `dataset`, the names
        revealed. One thumb per reply: a second one is refused."""
        self._check_idle()
        index = pane_index(letter, len(self._panes))
        pane = self._panes[index]
        if self._settings is None or not pane.messages:
            raise VoteError("Send a message first: there is no reply to rate.")
        if pane.error:
            raise VoteError(f"Pane {letter} has no reply this round, so there is nothing to rate.")
        if index in self._thumbs:
            raise VoteError(
                f"Pane {letter}'s reply already has a {THUMBS[self._thumbs[index]]}: "
                "send another message or regenerate to rate a new reply."
            )
        self.store.check_dataset(FEEDBACK, dataset)
        record = thumb_record(
            letter,
            up,
            pane.model,
            conversation(self._settings.system_prompt, pane.messages[:-1]),
            pane.messages[-1]["content"],
            thumb_id=uuid.uuid4().hex,
            time=now_iso(),
            dataset=dataset,
            blind=not self.revealed,
            settings=self._settings.to_dict(),
        )
        added = self.store.add_rows(FEEDBACK, dataset, [unpaired_row(record)])
        self.store.append_record(FEEDBACK, {**record, "rows_stored": added.stored})
        self._thumbs[index] = up
        self._revealed = True
        return ThumbResult(
            record["id"], dataset, letter, up, pane.model, added.stored, added.skipped, added.total
        )


def _part(progress: Progress | None, index: int, count: int) -> Progress | None:
    """Progress of loading pane `index` of `count` as a share of loading them all."""
    if progress is None:
        return None
    return lambda fraction, text: progress((index + fraction) / count, text)
