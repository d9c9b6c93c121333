"""Arena thumbs: one reply rated good or bad becomes an unpaired (KTO) row the data doctor accepts; one thumb
per reply, blind mode, datasets kept apart from the votes', crash safety, and a KTO run on the thumbs."""

from __future__ import annotations

import json
import os

import pytest
from test_chat_engine import GREEDY, last_views, other_model_dir, replies
from test_chat_votes import train_rows
from test_training_common import read_metrics, tiny_config

from rlhf_studio.chat import (
    FEEDBACK,
    ArenaStore,
    ChatArena,
    GenerationSettings,
    ModelCache,
    Vote,
    VoteError,
)
from rlhf_studio.chat import store as arena_store
from rlhf_studio.data import DataError, check_file, import_dataset, list_datasets, load_split_dataset
from rlhf_studio.stages import stage_fit, validate
from rlhf_studio.stages.kto import KTOJobConfig
from rlhf_studio.training import run_stage


@pytest.fixture
def two_models(tiny_model_dir, tmp_path) -> list[str]:
    return [str(tiny_model_dir), str(other_model_dir(tmp_path, 7))]


def feedback_rows(workspace) -> list[dict]:
    return train_rows(workspace, "arena-feedback")


def manifest_rows(workspace, name: str = "arena-feedback") -> int:
    return next(manifest.rows_total for manifest in list_datasets(workspace) if manifest.name == name)


def good_row(content: str) -> dict:
    return {
        "prompt": [{"role": "user", "content": "Hi"}],
        "completion": [{"role": "assistant", "content": content}],
        "label": True,
    }


# ---------------------------------------------------------------- thumbs -> unpaired rows


def test_thumbs_write_unpaired_rows_the_data_doctor_accepts_for_kto(workspace, two_models):
    arena = ChatArena(ModelCache(workspace), two_models)
    settings = GenerationSettings(system_prompt="Be brief.", temperature=1.0, max_new_tokens=8, seed=4)
    texts = replies(last_views(arena.send("Capital of France?", settings)))
    up = arena.thumb("A", up=True)
    down = arena.thumb("B", up=False)
    assert (up.dataset, up.pane, up.up, up.model, up.rows_stored, up.skipped, up.rows_total) == (
        "arena-feedback",
        "A",
        True,
        two_models[0],
        1,
        [],
        1,
    )
    assert (down.pane, down.up, down.model, down.rows_stored, down.rows_total) == (
        "B",
        False,
        two_models[1],
        1,
        2,
    )

    report = check_file(workspace.datasets_dir / "arena-feedback" / "train.jsonl")
    assert (report.ok, report.format, report.kind, report.style, report.usable, report.dropped) == (
        True,
        "kto",
        "unpaired_preference",
        "conversational",
        2,
        0,
    )
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    rows = feedback_rows(workspace)
    assert [row["prompt"] for row in rows] == [prompt, prompt]
    assert [row["completion"] for row in rows] == [[{"role": "assistant", "content": text}] for text in texts]
    assert [row["label"] for row in rows] == [True, False]
    metadata = rows[1]["metadata"]
    assert (metadata["thumb_id"], metadata["model"], metadata["blind"]) == (
        down.thumb_id,
        two_models[1],
        False,
    )
    assert metadata["settings"]["seed"] == 4 and metadata["time"]

    [manifest] = list_datasets(workspace)
    assert (manifest.name, manifest.kind, manifest.format, manifest.rows_train, manifest.rows_eval) == (
        "arena-feedback",
        "unpaired_preference",
        "kto",
        2,
        0,
    )
    assert stage_fit(manifest.kind, "kto", manifest.format)[0]
    assert not stage_fit(manifest.kind, "dpo", manifest.format)[0]  # no pairs in it
    assert load_split_dataset(workspace, "arena-feedback", "train")["label"] == [True, False]
    assert import_dataset(
        workspace, workspace.datasets_dir / "arena-feedback" / "train.jsonl", "copy"
    ).kind == ("unpaired_preference")

    log = ArenaStore(workspace).records(FEEDBACK)
    assert [(record["pane"], record["label"], record["model"], record["rows_stored"]) for record in log] == [
        ("A", True, two_models[0], 1),
        ("B", False, two_models[1], 1),
    ]
    assert log[0]["reply"] == texts[0] and log[0]["dataset"] == "arena-feedback"
    assert ArenaStore(workspace).votes() == []  # thumbs are not votes: the arena stats do not see them


def test_one_thumb_per_reply_and_a_new_reply_can_be_rated_again(workspace, two_models):
    arena = ChatArena(ModelCache(workspace), two_models)
    first = replies(last_views(arena.send("Hi", GREEDY)))
    arena.thumb("A", up=True)
    for up in (True, False):
        with pytest.raises(
            VoteError, match="Pane A's reply already has a 👍: send another message or regenerate"
        ):
            arena.thumb("A", up=up)
    arena.thumb("B", up=False)  # the other pane's reply is rated on its own
    arena.vote(Vote.best("A"))  # a vote on the round is independent of its thumbs

    last_views(arena.regenerate(GenerationSettings(max_new_tokens=8, seed=9)))
    assert arena.thumb("A", up=False).rows_total == 3
    last_views(arena.send("And then?", GREEDY))
    assert arena.thumb("A", up=True).rows_total == 4

    rows = feedback_rows(workspace)
    assert [row["label"] for row in rows] == [True, False, False, True]
    assert rows[3]["prompt"] == [  # the conversation up to the rated reply: this pane's earlier turns
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": rows[2]["completion"][0]["content"]},
        {"role": "user", "content": "And then?"},
    ]
    assert rows[0]["completion"][0]["content"] == first[0]
    assert len(ArenaStore(workspace).records(FEEDBACK)) == 4  # refused thumbs are not logged
    assert check_file(workspace.datasets_dir / "arena-feedback" / "train.jsonl").usable == 4


def test_a_thumb_without_a_reply_or_pane_is_refused(workspace, two_models):
    arena = ChatArena(ModelCache(workspace), two_models)
    with pytest.raises(VoteError, match="Send a message first: there is no reply to rate."):
        arena.thumb("A", up=True)
    last_views(arena.send("Hi", GREEDY))
    with pytest.raises(VoteError, match="There is no pane 'C' here; panes: A, B."):
        arena.thumb("C", up=True)
    arena.clear()
    with pytest.raises(VoteError, match="there is no reply to rate"):
        arena.thumb("B", up=False)
    assert ArenaStore(workspace).records(FEEDBACK) == []
    assert not (workspace.datasets_dir / "arena-feedback").exists()


def test_a_pane_without_a_reply_this_round_cannot_be_rated_but_the_others_can(
    workspace, tiny_model_dir, tmp_path
):
    arena = ChatArena(ModelCache(workspace), [str(tiny_model_dir), str(tmp_path / "no-such-model")])
    views = last_views(arena.send("Hi", GREEDY))
    assert views[1].error and views[0].error is None
    with pytest.raises(VoteError, match="Pane B has no reply this round, so there is nothing to rate."):
        arena.thumb("B", up=False)
    assert arena.thumb("A", up=True).rows_stored == 1
    assert [record["pane"] for record in ArenaStore(workspace).records(FEEDBACK)] == ["A"]


def test_thumbs_and_votes_keep_to_their_own_datasets(workspace, two_models):
    source = workspace.root / "good.jsonl"
    source.write_text(json.dumps({"prompt": "Hi", "completion": "Hello!", "label": True}) + "\n")
    import_dataset(workspace, source, "mine")
    arena = ChatArena(ModelCache(workspace), two_models)
    last_views(arena.send("Hi", GREEDY))
    arena.vote(Vote.best("A"))
    arena.thumb("A", up=True, dataset="thumbs")
    before = {name: train_rows(workspace, name) for name in ("mine", "arena-votes", "thumbs")}
    last_views(arena.send("Tea?", GREEDY))
    with pytest.raises(
        DataError, match="'arena-votes' holds the arena's votes: pick another name for the thumbs"
    ):
        arena.thumb("A", up=True, dataset="arena-votes")
    with pytest.raises(DataError, match="'thumbs' holds the arena's thumbs: pick another name for the votes"):
        arena.vote(Vote.best("A"), dataset="thumbs")
    with pytest.raises(DataError, match="'mine' was not made by the arena: pick another name for the thumbs"):
        arena.thumb("A", up=True, dataset="mine")
    assert {name: train_rows(workspace, name) for name in before} == before
    assert len(ArenaStore(workspace).records(FEEDBACK)) == 1
    assert arena.thumb("A", up=True, dataset="thumbs").rows_total == 2  # the reply can still be rated


def test_rows_the_data_doctor_refuses_are_skipped_with_its_reason(workspace):
    store = ArenaStore(workspace)
    added = store.add_rows(FEEDBACK, "arena-feedback", [good_row("  ")])
    assert (added.stored, added.total) == (0, 0)
    assert len(added.skipped) == 1 and "completion[0].content: empty text" in added.skipped[0]
    assert not (workspace.datasets_dir / "arena-feedback").exists()
    added = store.add_rows(
        FEEDBACK, "arena-feedback", [good_row("Hello!"), {**good_row("Yes."), "label": "maybe"}]
    )
    assert (added.stored, added.total) == (1, 1) and "label: wrong type" in added.skipped[0]
    added = store.add_rows(FEEDBACK, "arena-feedback", [good_row("")])
    assert (added.stored, added.total) == (0, 1)  # the dataset as it was
    assert [row["completion"][0]["content"] for row in feedback_rows(workspace)] == ["Hello!"]


# ---------------------------------------------------------------- blind mode


def test_blind_mode_hides_the_names_until_the_thumb(workspace, two_models):
    arena = ChatArena(ModelCache(workspace), two_models, blind=True, shuffle_seed=1)
    views = last_views(arena.send("Hi", GREEDY))
    assert arena.labels() == ["Model A", "Model B"] and all(view.model is None for view in views)
    result = arena.thumb("B", up=True)
    shuffled = arena.labels()
    assert sorted(shuffled) == sorted(two_models) and shuffled != two_models  # seed 1 swaps them
    assert result.model == shuffled[1]
    [row] = feedback_rows(workspace)
    assert (row["metadata"]["model"], row["metadata"]["blind"]) == (shuffled[1], True)
    arena.thumb("A", up=False)  # after the reveal: rated knowing the names
    assert [record["blind"] for record in ArenaStore(workspace).records(FEEDBACK)] == [True, False]
    arena.clear()
    assert arena.labels() == ["Model A", "Model B"]


# ---------------------------------------------------------------- crash safety


def crash(*args):
    raise OSError("disk full")


def test_a_crash_while_writing_leaves_the_dataset_as_it_was(workspace, two_models, monkeypatch):
    arena = ChatArena(ModelCache(workspace), two_models)
    last_views(arena.send("Hi", GREEDY))
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        arena.thumb("A", up=True)  # the first thumb makes the dataset: it never appears half-made
    assert list(workspace.datasets_dir.iterdir()) == []
    monkeypatch.undo()
    arena.thumb("A", up=True)
    train = workspace.datasets_dir / "arena-feedback" / "train.jsonl"
    before = train.read_text()

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        arena.thumb("B", up=False)
    assert train.read_text() == before
    assert check_file(train).usable == 1
    assert not list(train.parent.glob("*.tmp"))
    assert len(ArenaStore(workspace).records(FEEDBACK)) == 1
    monkeypatch.undo()
    assert arena.thumb("B", up=False).rows_stored == 1  # the reply can still be rated
    assert check_file(train).usable == 2 and manifest_rows(workspace) == 2


def test_a_crash_before_the_manifest_heals_on_the_next_thumb(workspace, two_models, monkeypatch):
    arena = ChatArena(ModelCache(workspace), two_models)
    last_views(arena.send("Hi", GREEDY))
    arena.thumb("A", up=True)
    monkeypatch.setattr(arena_store, "write_json_atomic", crash)
    with pytest.raises(OSError, match="disk full"):
        arena.thumb("B", up=True)  # train.jsonl grew, the manifest did not
    assert manifest_rows(workspace) == 1
    monkeypatch.undo()
    last_views(arena.send("Tea?", GREEDY))
    assert arena.thumb("A", up=False).rows_total == 3
    assert (
        manifest_rows(workspace)
        == 3
        == check_file(workspace.datasets_dir / "arena-feedback" / "train.jsonl").usable
    )


# ---------------------------------------------------------------- training


@pytest.mark.slow
def test_the_feedback_dataset_trains_kto_at_once(workspace, two_models, tiny_model_dir):
    arena = ChatArena(ModelCache(workspace), two_models)
    for message in ("Hi", "Tea?"):
        last_views(arena.send(message, GREEDY))
        arena.thumb("A", up=True)
        arena.thumb("B", up=False)
    config = tiny_config(
        KTOJobConfig, tiny_model_dir, "arena-feedback", max_steps=2, per_device_train_batch_size=2
    )
    validate(config, workspace)  # the dataset fits the stage
    run_stage(config, workspace.runs_dir / "from-thumbs", workspace)
    assert any(
        "loss" in row and "rewards/chosen" in row for row in read_metrics(workspace.runs_dir / "from-thumbs")
    )
