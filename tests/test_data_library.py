"""The dataset library round trip, and which data fits which training stage."""

from __future__ import annotations

import json

import pytest

from rlhf_studio.data import (
    DataError,
    check_file,
    delete_dataset,
    extract_prompts,
    import_dataset,
    list_datasets,
    load_split,
    load_split_dataset,
    read_manifest,
    unpair_rows,
)
from rlhf_studio.stages import stage_fit


def write_jsonl(folder, records, name="data.jsonl"):
    path = folder / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def preference_file(folder, count=20):
    records = [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(count)]
    return write_jsonl(folder, records + [{"prompt": "Q", "chosen": "same", "rejected": "same"}])


def test_import_round_trip(workspace, tmp_path):
    source = preference_file(tmp_path)
    manifest = import_dataset(workspace, source, "prefs", eval_fraction=0.1, seed=3)
    folder = workspace.datasets_dir / "prefs"
    assert sorted(path.name for path in folder.iterdir()) == ["eval.jsonl", "manifest.json", "train.jsonl"]
    stored = json.loads((folder / "manifest.json").read_text())
    assert stored["source_file"] == str(source) and stored["format"] == "preference"
    assert (stored["kind"], stored["style"], stored["dropped"]) == ("preference", "standard", 1)
    assert (stored["rows_total"], stored["rows_train"], stored["rows_eval"]) == (20, 18, 2)
    assert stored["created"].endswith("+00:00") and stored["column_map"] == {}
    assert read_manifest(workspace, "prefs") == manifest
    train, held_out = load_split(workspace, "prefs", "train"), load_split(workspace, "prefs", "eval")
    assert (len(train), len(held_out)) == (18, 2)
    assert sorted(row["prompt"] for row in train + held_out) == sorted(f"Q{i}" for i in range(20))


def test_split_is_deterministic_per_seed(workspace, tmp_path):
    source = preference_file(tmp_path, count=50)
    import_dataset(workspace, source, "a", seed=1)
    import_dataset(workspace, source, "b", seed=1)
    import_dataset(workspace, source, "c", seed=2)
    assert load_split(workspace, "a", "eval") == load_split(workspace, "b", "eval")
    assert load_split(workspace, "a", "eval") != load_split(workspace, "c", "eval")


def test_ranking_pairs_stay_in_one_split(workspace, tmp_path):
    records = [{"prompt": f"Q{i}", "responses": ["a", "b", "c"]} for i in range(10)]
    manifest = import_dataset(workspace, write_jsonl(tmp_path, records), "ranked", eval_fraction=0.2)
    assert (manifest.format, manifest.rows_total, manifest.rows_train, manifest.rows_eval) == (
        "rankings",
        30,
        24,
        6,
    )
    held_out_prompts = {row["prompt"] for row in load_split(workspace, "ranked", "eval")}
    assert not held_out_prompts & {row["prompt"] for row in load_split(workspace, "ranked", "train")}


def test_zero_eval_fraction_and_dataset_loader(workspace, tmp_path):
    records = [
        {
            "prompt": [{"role": "user", "content": f"Q{i}"}],
            "chosen": [{"role": "assistant", "content": "A"}],
            "rejected": [{"role": "assistant", "content": "B"}],
        }
        for i in range(4)
    ]
    manifest = import_dataset(workspace, write_jsonl(tmp_path, records), "chat", eval_fraction=0)
    assert (manifest.style, manifest.rows_train, manifest.rows_eval) == ("conversational", 4, 0)
    train = load_split_dataset(workspace, "chat", "train")
    assert (train.num_rows, sorted(train.column_names)) == (4, ["chosen", "prompt", "rejected"])
    assert train[0]["prompt"] == [{"role": "user", "content": "Q0"}]
    assert load_split_dataset(workspace, "chat", "eval").num_rows == 0


def test_import_stores_the_column_map_and_accepts_a_report(workspace, tmp_path):
    source = write_jsonl(tmp_path, [{"q": f"Q{i}", "a": f"A{i}"} for i in range(5)])
    report = check_file(source, column_map={"prompt": "q", "completion": "a"}, preview_rows=2)
    manifest = import_dataset(workspace, report, "mapped")
    assert (manifest.format, manifest.rows_total, manifest.column_map) == (
        "prompt_completion",
        5,
        {"prompt": "q", "completion": "a"},
    )


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "with space", "x" * 65, "-dash-first"])
def test_bad_names_are_refused(workspace, tmp_path, name):
    with pytest.raises(DataError, match="invalid dataset name"):
        import_dataset(workspace, preference_file(tmp_path), name)
    assert list(workspace.datasets_dir.iterdir()) == []
    assert not (workspace.root / "escape").exists()


def test_reimport_needs_overwrite(workspace, tmp_path):
    import_dataset(workspace, preference_file(tmp_path, count=5), "prefs")
    with pytest.raises(DataError, match="already exists"):
        import_dataset(workspace, preference_file(tmp_path, count=8), "prefs")
    assert read_manifest(workspace, "prefs").rows_total == 5
    assert (
        import_dataset(workspace, preference_file(tmp_path, count=8), "prefs", overwrite=True).rows_total == 8
    )
    assert read_manifest(workspace, "prefs").rows_total == 8
    assert [path.name for path in workspace.datasets_dir.iterdir()] == ["prefs"]


def test_import_refuses_data_that_does_not_fit_the_stage(workspace, tmp_path):
    with pytest.raises(DataError, match="sft needs demonstrations"):
        import_dataset(workspace, preference_file(tmp_path), "prefs", stage="sft")
    assert list_datasets(workspace) == []


def test_list_and_delete(workspace, tmp_path):
    import_dataset(workspace, preference_file(tmp_path), "b-set")
    import_dataset(workspace, preference_file(tmp_path), "a_set")
    assert [manifest.name for manifest in list_datasets(workspace)] == ["a_set", "b-set"]
    delete_dataset(workspace, "a_set")
    assert [manifest.name for manifest in list_datasets(workspace)] == ["b-set"]
    with pytest.raises(DataError, match="no dataset named 'a_set'"):
        load_split(workspace, "a_set", "train")
    with pytest.raises(DataError, match="unknown split"):
        load_split(workspace, "b-set", "test")


@pytest.mark.parametrize(
    ("kind", "stage", "fits"),
    [
        ("sft", "sft", True),
        ("preference", "sft", False),
        ("preference", "rm", True),
        ("preference", "dpo", True),
        ("sft", "dpo", False),
        ("unpaired_preference", "kto", True),
        ("preference", "kto", True),
        ("unpaired_preference", "rm", False),
        ("prompt", "ppo", True),
        ("preference", "ppo", True),
        ("prompt", "dpo", False),
    ],
)
def test_stage_fit(kind, stage, fits):
    fit, reason = stage_fit(kind, stage)
    assert fit is fits and reason


def test_plain_text_has_no_prompts_for_ppo():
    assert stage_fit("sft", "ppo", "text")[0] is False
    assert stage_fit("sft", "ppo", "messages")[0] is True


def test_extract_prompts_from_any_kind():
    rows = [
        {"prompt": "Q", "chosen": "a", "rejected": "b"},
        {"prompt": "Q", "chosen": "a", "rejected": "c"},
        {
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "U"},
                {"role": "assistant", "content": "A"},
            ]
        },
        {"text": "no prompt here"},
    ]
    assert list(extract_prompts(rows)) == [
        {"prompt": "Q"},
        {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]},
    ]


def test_unpair_rows_for_kto():
    assert list(unpair_rows([{"prompt": "Q", "chosen": "a", "rejected": "b"}])) == [
        {"prompt": "Q", "completion": "a", "label": True},
        {"prompt": "Q", "completion": "b", "label": False},
    ]
