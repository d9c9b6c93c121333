"""Every layout the data doctor detects, and the TRL rows it normalizes to."""

from __future__ import annotations

import json
from itertools import combinations

from rlhf_studio.data import check_file


def write_jsonl(folder, records, name="data.jsonl"):
    path = folder / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def check(folder, records, **options):
    return check_file(write_jsonl(folder, records), **options)


def test_explicit_prompt_preference_as_strings(tmp_path):
    records = [
        {"prompt": "Sky?", "chosen": " Blue.", "rejected": " Green."},
        {"prompt": "Sun?", "chosen": "Hot", "rejected": "Cold"},
    ]
    report = check(tmp_path, records)
    assert (report.ok, report.format, report.kind, report.style) == (
        True,
        "preference",
        "preference",
        "standard",
    )
    assert report.rows == records
    assert (report.usable, report.dropped, report.problems) == (2, 0, [])


def test_explicit_prompt_preference_as_messages_follows_trl(tmp_path):
    record = {"prompt": [user("Sky?")], "chosen": [assistant("Blue.")], "rejected": [assistant("Green.")]}
    report = check(tmp_path, [record])
    assert (report.format, report.style) == ("preference", "conversational")
    assert report.rows == [record]


def test_text_prompt_with_message_replies_becomes_a_user_turn(tmp_path):
    report = check(
        tmp_path, [{"prompt": "Sky?", "chosen": [assistant("Blue")], "rejected": [assistant("Red")]}]
    )
    assert report.rows[0]["prompt"] == [user("Sky?")]
    assert report.style == "conversational"


def test_hh_transcripts_split_at_the_last_shared_assistant_turn(tmp_path):
    single = {"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4.", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5."}
    shared = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant:"
    multi = {"chosen": shared + " Goodbye.", "rejected": shared + " Whatever."}
    report = check(tmp_path, [single, multi])
    assert (report.format, report.kind, report.style, report.usable) == (
        "hh_transcripts",
        "preference",
        "standard",
        2,
    )
    assert report.rows[0] == {"prompt": "\n\nHuman: 2+2?\n\nAssistant:", "chosen": " 4.", "rejected": " 5."}
    assert report.rows[1] == {"prompt": shared, "chosen": " Goodbye.", "rejected": " Whatever."}
    for row, record in zip(report.rows, [single, multi], strict=True):
        assert row["prompt"] + row["chosen"] == record["chosen"]
        assert row["prompt"] + row["rejected"] == record["rejected"]


def test_hh_transcripts_that_diverge_before_the_last_turn_keep_the_rest_in_the_replies(tmp_path):
    record = {
        "chosen": "\n\nHuman: A\n\nAssistant: good\n\nHuman: B\n\nAssistant: fine",
        "rejected": "\n\nHuman: A\n\nAssistant: bad\n\nHuman: B\n\nAssistant: meh",
    }
    (row,) = check(tmp_path, [record]).rows
    assert row["prompt"] == "\n\nHuman: A\n\nAssistant:"
    assert row["chosen"] == " good\n\nHuman: B\n\nAssistant: fine"


def test_implicit_conversational_preference_shares_the_leading_messages(tmp_path):
    system = {"role": "system", "content": "Be brief."}
    record = {
        "chosen": [system, user("Sky?"), assistant("Blue.")],
        "rejected": [system, user("Sky?"), assistant("Red.")],
    }
    report = check(tmp_path, [record])
    assert (report.format, report.style) == ("implicit_conversational", "conversational")
    assert report.rows == [
        {"prompt": [system, user("Sky?")], "chosen": [assistant("Blue.")], "rejected": [assistant("Red.")]}
    ]


def test_openai_preference_lines(tmp_path):
    record = {
        "input": {"messages": [user("Hello")], "tools": [], "parallel_tool_calls": True},
        "preferred_output": [assistant("Hi there!")],
        "non_preferred_output": [assistant("Go away.")],
    }
    report = check(tmp_path, [record])
    assert (report.format, report.kind, report.style) == ("openai_preference", "preference", "conversational")
    assert report.rows == [
        {"prompt": [user("Hello")], "chosen": [assistant("Hi there!")], "rejected": [assistant("Go away.")]}
    ]


def test_pairwise_choice_picks_the_chosen_candidate(tmp_path):
    records = [
        {"input_text": "Q1", "candidate_0": "a", "candidate_1": "b", "choice": 0},
        {"input_text": "Q2", "candidate_0": "c", "candidate_1": "d", "choice": 1},
    ]
    report = check(tmp_path, records)
    assert report.format == "pairwise_choice"
    assert report.rows == [
        {"prompt": "Q1", "chosen": "a", "rejected": "b"},
        {"prompt": "Q2", "chosen": "d", "rejected": "c"},
    ]


def test_ultrafeedback_binarized_keeps_scores_as_metadata(tmp_path):
    record = {
        "prompt": "Sky?",
        "prompt_id": "abc",
        "chosen": [user("Sky?"), assistant("Blue.")],
        "rejected": [user("Sky?"), assistant("Red.")],
        "messages": [user("Sky?"), assistant("Blue.")],
        "score_chosen": 8.5,
        "score_rejected": 3,
    }
    report = check(tmp_path, [record])
    assert (report.format, report.style) == ("ultrafeedback", "conversational")
    assert report.rows == [
        {
            "prompt": [user("Sky?")],
            "chosen": [assistant("Blue.")],
            "rejected": [assistant("Red.")],
            "score_chosen": 8.5,
            "score_rejected": 3.0,
        }
    ]
    assert report.unused_columns == ["prompt_id", "messages"]


def test_ultrafeedback_reversed_scores_are_a_problem_and_equal_scores_make_no_pair(tmp_path):
    base = {
        "prompt": "Sky?",
        "chosen": [user("Sky?"), assistant("Blue.")],
        "rejected": [user("Sky?"), assistant("Red.")],
    }
    records = [
        {**base, "score_chosen": 2, "score_rejected": 7},
        {**base, "score_chosen": 5, "score_rejected": 5},
    ]
    report = check(tmp_path, records)
    assert report.usable == 0 and not report.ok
    assert [(p.line, p.field, p.reason) for p in report.problems] == [
        (1, "score_chosen", "scores reversed"),
        (2, "score_chosen", "equal scores"),
    ]


def test_rankings_expand_to_every_pair_best_first(tmp_path):
    responses = ["best", "good", "poor", "worst"]
    report = check(tmp_path, [{"prompt": "Q", "responses": responses}])
    assert (report.format, report.usable, report.records_used) == ("rankings", 6, 1)
    expected = [(responses[i], responses[j]) for i, j in combinations(range(4), 2)]
    assert [(row["chosen"], row["rejected"]) for row in report.rows] == expected


def test_scored_rankings_order_pairs_by_score_and_skip_ties(tmp_path):
    records = [
        {"prompt": "Q", "responses": ["a", "b", "c", "d"], "scores": [1, 4, 2, 3]},
        {"prompt": "R", "responses": ["x", "y", "z"], "scores": [2, 2, 1]},
    ]
    report = check(tmp_path, records)
    assert report.format == "scored_rankings"
    assert report.usable == 6 + 2
    for row in report.rows:
        assert row["score_chosen"] > row["score_rejected"]
    assert ("b", "a") in [(row["chosen"], row["rejected"]) for row in report.rows]
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(2, "scores", "equal scores")]
    assert "responses 0 and 1" in report.problems[0].detail


def test_kto_unpaired_preference(tmp_path):
    records = [
        {"prompt": "Q", "completion": "good", "label": True},
        {"prompt": "Q", "completion": "bad", "label": False},
    ]
    report = check(tmp_path, records)
    assert (report.format, report.kind) == ("kto", "unpaired_preference")
    assert report.rows == records
    assert report.stats["labels"] == {"desirable": 1, "undesirable": 1}


def test_sft_prompt_completion(tmp_path):
    report = check(tmp_path, [{"prompt": "2+2=", "completion": "4"}])
    assert (report.format, report.kind, report.rows) == (
        "prompt_completion",
        "sft",
        [{"prompt": "2+2=", "completion": "4"}],
    )


def test_alpaca_with_and_without_input(tmp_path):
    records = [
        {"instruction": "Translate", "input": "bonjour", "output": "hello"},
        {"instruction": "Say hi", "input": "", "output": "hi"},
        {"instruction": "Count", "output": "1 2 3"},
    ]
    report = check(tmp_path, records)
    assert (report.format, report.kind, report.style) == ("alpaca", "sft", "standard")
    assert [row["prompt"] for row in report.rows] == ["Translate\n\nbonjour", "Say hi", "Count"]
    assert [row["completion"] for row in report.rows] == ["hello", "hi", "1 2 3"]


def test_messages(tmp_path):
    record = {"messages": [{"role": "system", "content": "Be kind."}, user("Hi"), assistant("Hello")]}
    report = check(tmp_path, [record])
    assert (report.format, report.kind, report.style, report.rows) == (
        "messages",
        "sft",
        "conversational",
        [record],
    )


def test_sharegpt_roles_are_mapped(tmp_path):
    turns = [
        {"from": "system", "value": "Be kind."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"},
    ]
    report = check(tmp_path, [{"conversations": turns, "id": "x1"}])
    assert report.format == "sharegpt"
    assert report.rows == [
        {"messages": [{"role": "system", "content": "Be kind."}, user("Hi"), assistant("Hello")]}
    ]


def test_plain_text(tmp_path):
    report = check(tmp_path, [{"text": "Once upon a time."}])
    assert (report.format, report.kind, report.rows) == ("text", "sft", [{"text": "Once upon a time."}])


def test_prompt_only_as_text_and_as_messages(tmp_path):
    assert check(tmp_path, [{"prompt": "Tell a joke"}]).rows == [{"prompt": "Tell a joke"}]
    report = check(tmp_path, [{"prompt": [user("Tell a joke")]}])
    assert (report.format, report.kind, report.style) == ("prompt_only", "prompt", "conversational")


def test_prompt_with_an_answer_keeps_the_answer_as_text(tmp_path):
    records = [{"prompt": "What is 2 + 3?", "answer": 5}, {"prompt": "Q", "answer": " 1,000 "}]
    records.append({"prompt": "R"})
    report = check(tmp_path, records)
    assert (report.format, report.kind) == ("prompt_answer", "prompt")
    assert report.rows == [{"prompt": "What is 2 + 3?", "answer": "5"}, {"prompt": "Q", "answer": "1,000"}]
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(3, "answer", "missing field")]


def test_rows_in_the_other_style_are_dropped(tmp_path):
    records = [{"prompt": "Q", "completion": "A"}, {"prompt": [user("Q")], "completion": [assistant("A")]}]
    report = check(tmp_path, records)
    assert (report.style, report.usable) == ("standard", 1)
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(2, "prompt", "mixed styles")]


def test_stats_count_characters_per_field(tmp_path):
    records = [
        {"prompt": "ab", "chosen": "cde", "rejected": "f"},
        {"prompt": "abcd", "chosen": "c", "rejected": "fgh"},
    ]
    chars = check(tmp_path, records).stats["chars"]
    assert chars["prompt"] == {"count": 2, "min": 2, "mean": 3.0, "max": 4}
    assert chars["chosen"]["max"] == 3 and chars["rejected"]["min"] == 1
