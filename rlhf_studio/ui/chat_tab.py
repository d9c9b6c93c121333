"""Chat tab: 2-3 models answer side by side, streaming together; RM scores; votes become preference data and
thumbs under each reply become KTO data.

The arena engine (rlhf_studio.chat) does the work; this module lays out the panes and turns clicks into its
calls. One ChatArena per browser lives in gr.State; the ModelCache is the app's, shared by every browser.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from rlhf_studio.chat import (
    DEFAULT_DATASET,
    DEFAULT_FEEDBACK_DATASET,
    ArenaStore,
    ChatArena,
    GenerationSettings,
    ModelCache,
    PaneView,
    ThumbResult,
    Vote,
    VoteError,
    VoteResult,
    arena_stats,
    export_dataset,
)
from rlhf_studio.chat.feedback import THUMBS
from rlhf_studio.chat.generation import share_cpu
from rlhf_studio.models import default_model
from rlhf_studio.runner.pipelines import PipelineRunner
from rlhf_studio.stages import POLICY, rlhf_stages, stages_producing
from rlhf_studio.ui.errors import USER_ERRORS, user_errors
from rlhf_studio.ui.pickers import finished_runs, model_choices, reward_choices, run_choices

LETTERS = ("A", "B", "C")
THUMB_BUTTONS = {True: ("up", "👍 Good"), False: ("down", "👎 Bad")}  # elem_id part, label
STATS_COLUMNS = ["model", "vs", "wins", "ties", "losses", "both bad", "win rate"]
VOTES = {
    "best-A": ("A is best", lambda: Vote.best("A")),
    "best-B": ("B is best", lambda: Vote.best("B")),
    "best-C": ("C is best", lambda: Vote.best("C")),
    "tie": ("Tie", Vote.tie),
    "both-bad": ("All bad", Vote.both_bad),
}


def pane_label(view: PaneView) -> str:
    return view.label + (" · writing…" if view.writing else "")


def pane_footer(view: PaneView) -> str:
    parts = []
    if view.score is not None:
        parts.append(f"**RM score {view.score:+.2f}**")
    if view.stopped:
        parts.append("stopped")
    if view.notice:
        parts.append(view.notice)
    if view.error:
        parts.append(f"⚠ {view.error}")
    return " · ".join(parts)


def vote_text(result: VoteResult) -> str:
    names = ", ".join(f"{letter} = `{model}`" for letter, model in zip(LETTERS, result.models, strict=False))
    stored = f"{result.pairs_stored} preference pair(s) added to **{result.dataset}**"
    skipped = "".join(f"\n- skipped: {reason}" for reason in result.skipped)
    return f"Vote recorded. {names}. {stored}.{skipped}"


def thumb_text(result: ThumbResult) -> str:
    total = f"{result.rows_total} row{'' if result.rows_total == 1 else 's'}"
    added = "1 row added" if result.rows_stored else "no row added"
    skipped = "".join(f"\n- skipped: {reason}" for reason in result.skipped)
    return (
        f"{THUMBS[result.up]} on pane {result.pane} (model `{result.model}`): "
        f"{added} to **{result.dataset}** ({total}).{skipped}"
    )


def default_picks(finished: list) -> list[str]:
    """The base, the newest policy run tuned on demonstrations (SFT) and the newest tuned on feedback (RLHF):
    what each stage did, side by side."""
    rlhf = rlhf_stages()
    supervised = tuple(name for name in stages_producing(POLICY) if name not in rlhf)
    runs = (run_choices(finished, supervised), run_choices(finished, rlhf))
    picks = [default_model()] + [choices[0][1] for choices in runs if choices]
    return (picks + [default_model()] * 3)[:3]


def stats_rows(workspace) -> list[list]:
    rows = []
    for pair in arena_stats(ArenaStore(workspace).votes()):
        rate = "" if pair.win_rate is None else f"{pair.win_rate:.0%}"
        rows.append([pair.model_a, pair.model_b, pair.wins, pair.ties, pair.losses, pair.both_bad, rate])
    return rows


class ChatTab:
    def __init__(self, runner: PipelineRunner, cache: ModelCache) -> None:
        self.runner, self.cache = runner, cache
        self.arena = gr.State(None)  # this browser's ChatArena
        self._build_pickers()
        self._build_conversation()
        self._build_votes()

    def _build_pickers(self) -> None:
        with gr.Row(equal_height=True):
            self.count = gr.Radio([2, 3], value=3, label="Panes", elem_id="chat-count", scale=1)
            self.blind = gr.Checkbox(
                False,
                label="Blind: names hidden until you vote or rate a reply",
                elem_id="chat-blind",
                scale=1,
            )
            self.reward = gr.Dropdown(
                [],
                value=None,
                allow_custom_value=True,
                label="Reward model (optional)",
                info="Scores each reply; a finished reward-model run or a local classifier folder.",
                elem_id="chat-reward",
                scale=2,
            )
        with gr.Row(equal_height=True):
            self.models = [
                gr.Dropdown(
                    [],
                    allow_custom_value=True,
                    label=f"Pane {letter}",
                    info="The base, a finished policy run, a hub id or a folder.",
                    elem_id=f"chat-model-{letter.lower()}",
                )
                for letter in LETTERS
            ]
        with gr.Accordion("Generation settings (shared by every pane)", open=False):
            with gr.Row(equal_height=True):
                self.system = gr.Textbox(label="System prompt", lines=1, scale=3)
                self.temperature = gr.Slider(0.05, 2.0, value=0.7, step=0.05, label="Temperature")
                self.top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
            with gr.Row(equal_height=True):
                self.max_new = gr.Number(128, precision=0, label="Max new tokens", minimum=1, maximum=2048)
                self.seed = gr.Number(0, precision=0, label="Seed (same seed, same reply)")
                self.greedy = gr.Checkbox(False, label="Greedy (always the most likely token)")

    def _build_conversation(self) -> None:
        self.panes, self.footers, self.thumb_rows, self.thumbs = [], [], [], {}
        with gr.Row(equal_height=True):
            for letter in LETTERS:
                with gr.Column():
                    self._build_pane(letter)
        with gr.Row(equal_height=True):
            self.thumb_message = gr.Markdown(elem_id="chat-thumb-message")
            self.feedback_dataset = gr.Textbox(
                DEFAULT_FEEDBACK_DATASET,
                label="Thumbs go to dataset",
                info="Each 👍 or 👎 is one (prompt, reply, good or bad) row for a KTO run.",
                elem_id="chat-feedback-dataset",
            )
        with gr.Row(equal_height=True):
            self.message = gr.Textbox(
                show_label=False, placeholder="Message every pane…", elem_id="chat-message", scale=5
            )
            self.send = gr.Button("Send", variant="primary", elem_id="chat-send", scale=1)
            self.stop = gr.Button("Stop", variant="stop", elem_id="chat-stop", scale=1)
            self.regenerate = gr.Button("Regenerate (new seed)", elem_id="chat-regenerate", scale=1)
            self.clear = gr.Button("New conversation", elem_id="chat-clear", scale=1)
        self.status = gr.Markdown(elem_id="chat-status")

    def _build_pane(self, letter: str) -> None:
        """One pane: the conversation, its footer (RM score, notices) and its thumbs."""
        pane_id = letter.lower()
        self.panes.append(gr.Chatbot(label=f"Model {letter}", height=380, elem_id=f"chat-pane-{pane_id}"))
        self.footers.append(gr.Markdown(elem_id=f"chat-footer-{pane_id}"))
        with gr.Row() as row:
            for up, (direction, label) in THUMB_BUTTONS.items():
                self.thumbs[letter, up] = gr.Button(
                    label, size="sm", min_width=60, elem_id=f"chat-thumb-{direction}-{pane_id}"
                )
        self.thumb_rows.append(row)

    def _build_votes(self) -> None:
        gr.Markdown(
            "### Vote: which reply is better? "
            "Votes become preference data for the next reward-model or policy run."
        )
        with gr.Row(equal_height=True):
            self.votes = {
                key: gr.Button(label, elem_id=f"chat-vote-{key.lower()}", size="md")
                for key, (label, _) in VOTES.items()
            }
            self.dataset = gr.Textbox(DEFAULT_DATASET, label="Votes go to dataset", elem_id="chat-dataset")
        self.vote_message = gr.Markdown(elem_id="chat-vote-message")
        with gr.Row(equal_height=True):
            self.export = gr.Button("Export the votes dataset (JSONL)", size="md", elem_id="chat-export")
            self.exported = gr.File(
                label="Votes as JSONL", visible=False, interactive=False, elem_id="chat-exported"
            )
        with gr.Accordion("Arena stats: wins, ties and losses per pair of models", open=True):
            self.stats = gr.Dataframe(headers=STATS_COLUMNS, interactive=False, elem_id="chat-stats")

    # -- pickers

    def on_open(self, count: int, *picked) -> dict:
        """Model and reward-model choices refreshed; empty picks filled in with default_picks."""
        finished = finished_runs(self.runner)
        choices, defaults = model_choices(finished), default_picks(finished)
        updates = {
            dropdown: gr.update(choices=choices, value=current or defaults[index], visible=index < count)
            for index, (dropdown, current) in enumerate(zip(self.models, picked, strict=True))
        }
        updates[self.reward] = gr.update(choices=[("none", "")] + reward_choices(finished))
        updates[self.stats] = stats_rows(self.runner.workspace)
        return updates

    def on_count(self, count: int) -> dict:
        updates = {}
        for index in range(3):
            visible = index < count
            updates[self.models[index]] = gr.update(visible=visible)
            updates[self.panes[index]] = gr.update(visible=visible)
            updates[self.footers[index]] = gr.update(visible=visible)
            updates[self.thumb_rows[index]] = gr.update(visible=visible)
        updates[self.votes["best-C"]] = gr.update(visible=count == 3)
        return updates

    # -- conversation

    def settings(self, inputs: dict) -> GenerationSettings:
        return GenerationSettings(
            system_prompt=inputs[self.system] or "",
            temperature=float(inputs[self.temperature]),
            top_p=float(inputs[self.top_p]),
            max_new_tokens=int(inputs[self.max_new] or 1),
            seed=int(inputs[self.seed] or 0),
            greedy=bool(inputs[self.greedy]),
        )

    def current_arena(self, inputs: dict) -> tuple[ChatArena, bool]:
        """This browser's arena for the picked models; a new one (new conversation) when the picks changed."""
        models = [inputs[dropdown] for dropdown in self.models[: inputs[self.count]]]
        if any(not model for model in models):
            raise gr.Error("Pick a model for every pane.")
        reward = inputs[self.reward] or None
        arena = inputs[self.arena]
        same = arena is not None and (arena.models, arena.blind, arena.reward_model) == (
            models,
            bool(inputs[self.blind]),
            reward,
        )
        if same:
            return arena, False
        return ChatArena(self.cache, models, blind=bool(inputs[self.blind]), reward_model=reward), True

    def show(self, views: list[PaneView]) -> dict:
        updates = {}
        for index, chatbot in enumerate(self.panes):
            if index < len(views):
                view = views[index]
                updates[chatbot] = gr.update(value=view.messages, label=pane_label(view))
                updates[self.footers[index]] = pane_footer(view)
        return updates

    def stream(self, inputs: dict, regenerate: bool, progress: gr.Progress):
        """Send the message (or answer the last one again) and stream every pane's reply as it grows."""
        try:
            arena, fresh = self.current_arena(inputs)
            settings = self.settings(inputs)
            training = self.runner.jobs.running() is not None
            share_cpu(training)
            note = "Training is running: replies come slower on a CPU." if training else ""

            def loading(fraction: float, text: str) -> None:
                progress(fraction, desc=text)

            if regenerate:
                if fresh:
                    raise gr.Error("The picks changed: send a message to start the new conversation.")
                settings.seed += 1
                rounds = arena.regenerate(settings, loading)
            else:
                rounds = arena.send(inputs[self.message], settings, loading)
            yield {
                self.arena: arena,
                self.message: "",
                self.status: note,
                self.vote_message: "",
                self.thumb_message: "",
            }
            for views in rounds:
                yield self.show(views)
            updates = {self.status: note or "Done: rate a reply 👍 or 👎, vote below, or keep chatting."}
            if regenerate:
                updates[self.seed] = settings.seed
            yield updates
        except gr.Error:
            raise
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from None

    def on_send(self, inputs: dict, progress=gr.Progress()):
        yield from self.stream(inputs, False, progress)

    def on_regenerate(self, inputs: dict, progress=gr.Progress()):
        yield from self.stream(inputs, True, progress)

    def on_stop(self, arena: ChatArena | None) -> str:
        if arena is not None:
            arena.stop()
        return "Stopped: the replies end where they were."

    def on_clear(self, arena: ChatArena | None) -> dict:
        if arena is not None:
            arena.clear()
            updates = self.show(arena.views())
        else:
            updates = {chatbot: gr.update(value=[]) for chatbot in self.panes}
        return {**updates, self.vote_message: "", self.thumb_message: "", self.status: ""}

    def on_export(self, dataset: str) -> dict:
        name = dataset.strip() or DEFAULT_DATASET
        path = export_dataset(
            self.runner.workspace, name, Path(tempfile.mkdtemp(prefix="votes-")) / f"{name}.jsonl"
        )
        return gr.update(value=str(path), visible=True)

    def on_vote(self, key: str, arena: ChatArena | None, dataset: str) -> dict:
        if arena is None:
            raise gr.Error("Send a message first: there is no reply to vote on.")
        result = arena.vote(VOTES[key][1](), dataset.strip() or DEFAULT_DATASET)
        return {
            **self.show(arena.views()),
            self.vote_message: vote_text(result),
            self.stats: stats_rows(self.runner.workspace),
        }

    def on_thumb(self, letter: str, up: bool, arena: ChatArena | None, dataset: str) -> dict:
        """What the thumb stored, in the line under the panes; a refusal is one sentence there, with the
        panes left as they are (a gr.Error would cover every pane with an error badge)."""
        try:
            if arena is None:
                raise VoteError("Send a message first: there is no reply to rate.")
            result = arena.thumb(letter, up, dataset.strip() or DEFAULT_FEEDBACK_DATASET)
        except USER_ERRORS as error:
            return {self.thumb_message: f"⚠ {error}"}
        return {**self.show(arena.views()), self.thumb_message: thumb_text(result)}


def build_chat_tab(runner: PipelineRunner, cache: ModelCache, tab: gr.Tab) -> None:
    view = ChatTab(runner, cache)
    inputs = {
        view.arena, view.count, view.blind, view.reward, view.message, view.system, view.temperature,
        view.top_p, view.max_new, view.seed, view.greedy, *view.models,
    }  # fmt: skip
    streamed = [view.arena, view.message, view.status, view.vote_message, view.thumb_message, view.seed]
    streamed += [*view.panes, *view.footers]
    tab.select(view.on_open, [view.count, *view.models], [*view.models, view.reward, view.stats])
    shown = [*view.models, *view.panes, *view.footers, *view.thumb_rows, view.votes["best-C"]]
    view.count.change(view.on_count, view.count, shown)
    for trigger in (view.send.click, view.message.submit):
        trigger(view.on_send, inputs, streamed)
    view.regenerate.click(view.on_regenerate, inputs, streamed)
    view.stop.click(view.on_stop, view.arena, view.status, concurrency_limit=None)
    cleared = [*view.panes, *view.footers, view.vote_message, view.thumb_message, view.status]
    view.clear.click(user_errors(view.on_clear), view.arena, cleared)
    view.export.click(user_errors(view.on_export), view.dataset, view.exported)
    vote_outputs = [*view.panes, *view.footers, view.vote_message, view.stats]
    for key, button in view.votes.items():
        button.click(
            user_errors(lambda arena, dataset, key=key: view.on_vote(key, arena, dataset)),
            [view.arena, view.dataset],
            vote_outputs,
        )
    for (letter, up), button in view.thumbs.items():
        button.click(
            user_errors(
                lambda arena, dataset, letter=letter, up=up: view.on_thumb(letter, up, arena, dataset)
            ),
            [view.arena, view.feedback_dataset],
            [*view.panes, *view.footers, view.thumb_message],
        )
