"""Arena votes: pairs the data doctor accepts, blind mode, ties and rankings, statistics, reward scores."""

from __future__ import annotations

import json
import os

import pytest
import torch
from test_chat_engine import GREEDY, last_views, lora_run, other_model_dir, replies
from test_training_common import read_metrics, tiny_config

from rlhf_studio.chat import (
    ArenaStore,
    ChatArena,
    GenerationSettings,
    ModelCache,
    Vote,
    VoteError,
    arena_stats,
    export_dataset,
)
from rlhf_studio.chat.votes import decisive_pairs, tied_pairs
from rlhf_studio.data import (
    DataError,
    check_file,
    import_dataset,
    list_datasets,
    load_split_dataset,
)
from rlhf_studio.stages import stage_fit, validate
from rlhf_studio.stages.dpo import DPOJobConfig
from rlhf_studio.stages.reward import RewardJobConfig
from rlhf_studio.training import run_stage
from rlhf_studio.training.ppo.rollout import Responses, RewardModelScorer


@pytest.fixture
def two_models(workspace, tiny_model_dir, tmp_path) -> list[str]:
    return [str(tiny_model_dir), str(other_model_dir(tmp_path, 7))]


def train_rows(workspace, name: str = "arena-votes") -> list[dict]:
    path = workspace.datasets_dir / name / "train.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- votes -> preference data


def test_a_vote_writes_pairs_the_data_doctor_accepts_for_rm_and_dpo(workspace, two_models):
    arena = ChatArena(ModelCache(workspace), two_models)
    settings = GenerationSettings(system_prompt="Be brief.", temperature=1.0, max_new_tokens=8, seed=4)
    texts = replies(last_views(arena.send("Capital of France?", settings)))
    result = arena.vote(Vote.best("B"))
    assert (result.dataset, result.pairs_stored, result.skipped) == ("arena-votes", 1, [])

    report = check_file(workspace.datasets_dir / "arena-votes" / "train.jsonl")
    assert (report.ok, report.format, report.kind, report.style, report.usable, report.dropped) == (
        True,
        "preference",
        "preference",
        "conversational",
        1,
        0,
    )
    [row] = train_rows(workspace)
    assert row["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert row["chosen"] == [{"role": "assistant", "content": texts[1]}]
    assert row["rejected"] == [{"role": "assistant", "content": texts[0]}]
    metadata = row["metadata"]
    assert (metadata["chosen_model"], metadata["rejected_model"]) == (two_models[1], two_models[0])
    assert metadata["settings"]["seed"] == 4 and metadata["vote"] == "best" and metadata["time"]

    [manifest] = list_datasets(workspace)
    assert (manifest.name, manifest.kind, manifest.rows_train, manifest.rows_eval) == (
        "arena-votes",
        "preference",
        1,
        0,
    )
    assert (
        stage_fit(manifest.kind, "rm", manifest.format)[0]
        and stage_fit(manifest.kind, "dpo", manifest.format)[0]
    )
    assert len(load_split_dataset(workspace, "arena-votes", "train")) == 1
    reimported = import_dataset(
        workspace, workspace.datasets_dir / "arena-votes" / "train.jsonl", "copy", stage="dpo"
    )
    assert reimported.rows_total == 1


def test_votes_grow_the_dataset_and_ties_make_no_pair_but_are_logged(workspace, two_models):
    cache = ModelCache(workspace)
    arena = ChatArena(cache, two_models)
    last_views(arena.send("Hi", GREEDY))
    arena.vote(Vote.best("A"), dataset="my-votes")
    assert len(load_split_dataset(workspace, "my-votes", "train")) == 1
    with pytest.raises(VoteError, match="already has a vote"):
        arena.vote(Vote.best("B"), dataset="my-votes")
    for message, vote in (("Tea?", Vote.tie()), ("Rain?", Vote.both_bad()), ("Sea?", Vote.best("B"))):
        last_views(arena.send(message, GREEDY))
        arena.vote(vote, dataset="my-votes")
    rows = train_rows(workspace, "my-votes")
    assert [row["metadata"]["vote"] for row in rows] == ["best", "best"]
    assert rows[1]["prompt"][-1] == {"role": "user", "content": "Sea?"}
    assert len(load_split_dataset(workspace, "my-votes", "train")) == 2
    assert [vote["kind"] for vote in ArenaStore(workspace).votes()] == ["best", "tie", "both_bad", "best"]
    assert list_datasets(workspace)[0].rows_train == 2
    assert not (workspace.datasets_dir / "arena-votes").exists()


def test_three_panes_best_pick_and_ranking_expand_into_pairs(workspace, tiny_model_dir, two_models):
    models = [*two_models, lora_run(workspace, tiny_model_dir, "lora-a", 1)]
    arena = ChatArena(ModelCache(workspace), models)
    texts = replies(last_views(arena.send("Hi", GREEDY)))
    assert arena.vote(Vote.best("C")).pairs_stored == 2
    last_views(arena.send("Again", GREEDY))
    assert arena.vote(Vote.ranking("B", "C", "A")).pairs_stored == 3
    rows = train_rows(workspace)
    pairs = [(row["metadata"]["chosen_model"], row["metadata"]["rejected_model"]) for row in rows]
    a, b, c = models
    assert pairs == [(c, a), (c, b), (b, c), (b, a), (c, a)]
    assert rows[0]["chosen"][0]["content"] == texts[2]
    assert check_file(workspace.datasets_dir / "arena-votes" / "train.jsonl").usable == 5
    with pytest.raises(VoteError, match="ranking orders every pane"):
        decisive_pairs(Vote.ranking("A", "B"), 3)


def test_pairs_the_data_doctor_refuses_are_skipped_with_its_reason(workspace, tiny_model_dir):
    arena = ChatArena(ModelCache(workspace), [str(tiny_model_dir), str(tiny_model_dir)])
    last_views(arena.send("Hi", GREEDY))  # one model twice, greedy: the same reply in both panes
    result = arena.vote(Vote.best("A"))
    assert result.pairs_stored == 0
    assert len(result.skipped) == 1 and "chosen identical to rejected" in result.skipped[0]
    assert not (workspace.datasets_dir / "arena-votes").exists()
    assert len(ArenaStore(workspace).votes()) == 1


def test_votes_never_touch_a_dataset_the_arena_did_not_make(workspace, two_models):
    source = workspace.root / "prefs.jsonl"
    source.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}) + "\n")
    import_dataset(workspace, source, "prefs")
    before = (workspace.datasets_dir / "prefs" / "train.jsonl").read_text()
    arena = ChatArena(ModelCache(workspace), two_models)
    last_views(arena.send("Hi", GREEDY))
    with pytest.raises(DataError, match="not made by the arena"):
        arena.vote(Vote.best("A"), dataset="prefs")
    assert (workspace.datasets_dir / "prefs" / "train.jsonl").read_text() == before
    assert ArenaStore(workspace).votes() == []
    assert arena.vote(Vote.best("A"), dataset="arena-votes").pairs_stored == 1  # the round is still open


def test_a_crash_while_writing_leaves_the_dataset_as_it_was(workspace, two_models, monkeypatch):
    arena = ChatArena(ModelCache(workspace), two_models)
    last_views(arena.send("Hi", GREEDY))
    arena.vote(Vote.best("A"))
    train = workspace.datasets_dir / "arena-votes" / "train.jsonl"
    before = train.read_text()
    last_views(arena.send("More", GREEDY))

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        arena.vote(Vote.best("B"))
    assert train.read_text() == before
    assert check_file(train).usable == 1
    assert not list(train.parent.glob("*.tmp"))
    assert len(ArenaStore(workspace).votes()) == 1
    monkeypatch.undo()
    assert arena.vote(Vote.best("B")).pairs_stored == 1  # the round can still be voted on
    assert check_file(train).usable == 2


def test_a_torn_last_line_of_the_votes_log_is_skipped_and_closed_off(workspace):
    store = ArenaStore(workspace)
    store.append_vote({"id": "1", "kind": "tie", "models": ["a", "b"]})
    with open(store.votes_path, "a") as log:
        log.write('{"id": "2", "ki')
    store.append_vote({"id": "3", "kind": "tie", "models": ["a", "b"]})
    assert [vote["id"] for vote in store.votes()] == ["1", "3"]


def test_export_writes_every_row_as_jsonl(workspace, two_models, tmp_path):
    arena = ChatArena(ModelCache(workspace), two_models)
    last_views(arena.send("Hi", GREEDY))
    arena.vote(Vote.best("A"))
    target = export_dataset(workspace, "arena-votes", tmp_path / "out" / "votes.jsonl")
    assert [json.loads(line) for line in target.read_text().splitlines()] == train_rows(workspace)
    with pytest.raises(DataError):
        export_dataset(workspace, "missing", tmp_path / "x.jsonl")


# ---------------------------------------------------------------- blind mode


def test_blind_mode_hides_the_names_until_the_vote(workspace, two_models):
    cache = ModelCache(workspace)
    alone = {
        model: replies(last_views(ChatArena(cache, [model, model]).send("Hi", GREEDY)))[0]
        for model in two_models
    }
    assert alone[two_models[0]] != alone[two_models[1]]
    arena = ChatArena(cache, two_models, blind=True, shuffle_seed=1)
    views = last_views(arena.send("Hi", GREEDY))
    assert arena.labels() == ["Model A", "Model B"]
    assert all(view.model is None for view in views)
    shown = json.dumps([view.__dict__ for view in views])
    assert not any(model in shown for model in two_models)
    result = arena.vote(Vote.best("A"))
    assert sorted(result.models) == sorted(two_models)
    assert result.models != two_models  # seed 1 shuffles the two models
    assert arena.labels() == result.models
    assert [view.model for view in arena.views()] == result.models
    assert replies(views) == [alone[model] for model in result.models]  # the letters told the truth
    [vote] = ArenaStore(workspace).votes()
    assert vote["blind"] and vote["models"] == result.models
    arena.clear()
    assert arena.labels() == ["Model A", "Model B"]


# ---------------------------------------------------------------- statistics


def test_stats_count_wins_ties_and_losses_per_pair():
    def vote(kind, order, *models):
        return {"kind": kind, "order": list(order), "models": list(models)}

    votes = [
        vote("best", "A", "x", "y"),
        vote("best", "B", "x", "y"),
        vote("best", "A", "y", "x"),
        vote("tie", "", "x", "y"),
        vote("both_bad", "", "y", "x"),
        vote("best", "C", "x", "y", "z"),  # z beats x and y; x vs y undecided
        vote("ranking", "BAC", "x", "y", "z"),  # y > x, y > z, x > z
        vote("best", "A", "x", "x"),  # a model against itself counts for nothing
    ]
    rows = {(row.model_a, row.model_b): row for row in arena_stats(votes)}
    assert set(rows) == {("x", "y"), ("x", "z"), ("y", "z")}
    xy = rows["x", "y"]
    assert (xy.wins, xy.losses, xy.ties, xy.both_bad, xy.games) == (1, 3, 2, 1, 6)
    assert xy.win_rate == pytest.approx(0.25)
    xz, yz = rows["x", "z"], rows["y", "z"]
    assert (xz.wins, xz.losses, xz.ties) == (1, 1, 0) and xz.win_rate == 0.5
    assert (yz.wins, yz.losses, yz.ties) == (1, 1, 0)
    assert arena_stats([vote("tie", "", "x", "y")])[0].win_rate is None
    assert list(arena_stats(votes))[0] == xy  # most games first


def test_tied_and_decisive_pairs_of_each_vote_kind():
    assert decisive_pairs(Vote.best("B"), 2) == [(1, 0)]
    assert decisive_pairs(Vote.tie(), 3) == [] and tied_pairs(Vote.tie(), 3) == [(0, 1), (0, 2), (1, 2)]
    assert tied_pairs(Vote.best("A"), 2) == []
    with pytest.raises(VoteError, match="no pane 'C'"):
        decisive_pairs(Vote.best("C"), 2)


# ---------------------------------------------------------------- reward scores


def test_each_reply_gets_the_reward_models_score_of_its_conversation(workspace, two_models, tiny_reward_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    arena = ChatArena(ModelCache(workspace), two_models, reward_model=str(tiny_reward_dir))
    settings = GenerationSettings(system_prompt="Be kind.", max_new_tokens=6, greedy=True)
    views = last_views(arena.send("Hi", settings))
    tokenizer = AutoTokenizer.from_pretrained(tiny_reward_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    prompt = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    scorer = RewardModelScorer(model, tokenizer, batch_size=1, max_length=2048)
    expected = scorer(Responses([prompt, prompt], replies(views), torch.empty(0), torch.empty(0)))
    assert [view.score for view in views] == pytest.approx(expected.tolist(), abs=1e-5)
    assert views[0].score != views[1].score


def test_a_reward_model_that_is_not_one_leaves_the_replies_and_says_why(
    workspace, two_models, tiny_model_dir
):
    arena = ChatArena(ModelCache(workspace), two_models, reward_model=str(tiny_model_dir))
    views = last_views(arena.send("Hi", GREEDY))
    assert all(view.score is None and "is a language model" in view.notice for view in views)
    assert all(replies(views))


@pytest.mark.parametrize("config_class", [DPOJobConfig, RewardJobConfig])
def test_the_vote_dataset_trains_at_once(workspace, two_models, tiny_model_dir, config_class):
    arena = ChatArena(ModelCache(workspace), two_models)
    for message, vote in (("Hi", Vote.best("A")), ("Tea?", Vote.best("B")), ("Sea?", Vote.best("A"))):
        last_views(arena.send(message, GREEDY))
        arena.vote(vote)
    config = tiny_config(
        config_class, tiny_model_dir, "arena-votes", max_steps=2, per_device_train_batch_size=2
    )
    validate(config, workspace)  # the dataset fits the stage
    run_stage(config, workspace.runs_dir / "from-votes", workspace)
    assert any("loss" in row for row in read_metrics(workspace.runs_dir / "from-votes"))
