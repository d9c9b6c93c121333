"""Bad input: every problem names the line, the field and the reason; unusable files are refused."""

from __future__ import annotations

import json
import pickle

import pytest

from rlhf_studio.data import DataError, check_file, import_dataset
from rlhf_studio.data.problems import PROBLEMS_KEPT
from rlhf_studio.workspace import Workspace

GOOD = {"prompt": "Q", "chosen": "yes", "rejected": "no"}


def write_lines(folder, lines, name="data.jsonl"):
    path = folder / name
    path.write_bytes(b"".join(line if isinstance(line, bytes) else (line + "\n").encode() for line in lines))
    return path


def problems_of(folder, records):
    """(line, field, reason) of each problem in a JSONL file whose first line is a good preference row."""
    lines = [json.dumps(GOOD)] + [
        record if isinstance(record, str) else json.dumps(record) for record in records
    ]
    report = check_file(write_lines(folder, lines))
    assert report.ok and report.usable == report.records_read - len(report.problems)
    return [(problem.line, problem.field, problem.reason) for problem in report.problems]


def test_invalid_json_names_the_line(tmp_path):
    assert problems_of(tmp_path, [GOOD, '{"prompt": "Q", "chosen": '] + [GOOD]) == [(3, None, "invalid JSON")]


def test_a_line_that_is_not_an_object_is_a_wrong_type(tmp_path):
    assert problems_of(tmp_path, ["[1, 2]"]) == [(2, None, "wrong type")]


def test_not_utf8_names_the_line_and_byte_offset(tmp_path):
    first = json.dumps(GOOD).encode() + b"\n"
    path = write_lines(tmp_path, [first, b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'])
    report = check_file(path)
    (problem,) = report.problems
    assert (problem.line, problem.field, problem.reason) == (2, None, "not UTF-8")
    assert problem.detail == f"byte offset {len(first) + 15}"


def test_missing_field(tmp_path):
    assert problems_of(tmp_path, [{"prompt": "Q", "chosen": "yes"}]) == [(2, "rejected", "missing field")]


def test_null_value_is_a_missing_field(tmp_path):
    assert problems_of(tmp_path, [{**GOOD, "prompt": None}]) == [(2, "prompt", "missing field")]


def test_empty_text(tmp_path):
    assert problems_of(tmp_path, [{**GOOD, "chosen": "   "}]) == [(2, "chosen", "empty text")]


def test_wrong_type(tmp_path):
    report = check_file(write_lines(tmp_path, [json.dumps(GOOD), json.dumps({**GOOD, "rejected": 7})]))
    (problem,) = report.problems
    assert (problem.line, problem.field, problem.reason) == (2, "rejected", "wrong type")
    assert "got int" in problem.detail


def test_chosen_identical_to_rejected(tmp_path):
    assert problems_of(tmp_path, [{**GOOD, "rejected": "yes"}]) == [
        (2, "rejected", "chosen identical to rejected")
    ]


def test_choice_out_of_range(tmp_path):
    records = [{"input_text": "Q", "candidate_0": "a", "candidate_1": "b", "choice": c} for c in (1, 2, "x")]
    report = check_file(write_lines(tmp_path, [json.dumps(record) for record in records]))
    assert [(p.line, p.field, p.reason) for p in report.problems] == [
        (2, "choice", "choice out of range"),
        (3, "choice", "wrong type"),
    ]


def test_ranking_and_scores_of_different_lengths(tmp_path):
    records = [
        {"prompt": "Q", "responses": ["a", "b"], "scores": [2, 1]},
        {"prompt": "Q", "responses": ["a", "b", "c"], "scores": [3, 1]},
    ]
    report = check_file(write_lines(tmp_path, [json.dumps(record) for record in records]))
    (problem,) = report.problems
    assert (problem.line, problem.field, problem.reason, problem.detail) == (
        2,
        "scores",
        "length mismatch",
        "3 responses but 2 scores",
    )


@pytest.mark.parametrize(
    ("message", "field", "reason"),
    [
        ({"content": "hi"}, "messages[1].role", "message without role"),
        ({"role": "user"}, "messages[1].content", "message without content"),
        ({"role": "bot", "content": "hi"}, "messages[1].role", "unknown role"),
        ("hi", "messages[1]", "wrong type"),
    ],
)
def test_bad_messages(tmp_path, message, field, reason):
    good = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    bad = {"messages": [{"role": "user", "content": "Q"}, message]}
    report = check_file(write_lines(tmp_path, [json.dumps(good), json.dumps(bad)]))
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(2, field, reason)]


def test_sharegpt_unknown_speaker(tmp_path):
    good = {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    bad = {"conversations": [{"from": "human", "value": "Q"}, {"from": "bot", "value": "A"}]}
    report = check_file(write_lines(tmp_path, [json.dumps(good), json.dumps(bad)]))
    assert [(p.line, p.field, p.reason) for p in report.problems] == [
        (2, "conversations[1].from", "unknown role")
    ]


def test_hh_transcript_without_turn_markers(tmp_path):
    good = {"chosen": "\n\nHuman: Q\n\nAssistant: A", "rejected": "\n\nHuman: Q\n\nAssistant: B"}
    bad = {"chosen": "just text", "rejected": "other text"}
    report = check_file(write_lines(tmp_path, [json.dumps(good), json.dumps(bad)]))
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(2, "chosen", "no turn markers")]


def test_conversations_without_a_shared_prompt(tmp_path):
    good = {"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    good["rejected"] = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]
    bad = {"chosen": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A"}]}
    bad["rejected"] = [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "B"}]
    report = check_file(write_lines(tmp_path, [json.dumps(good), json.dumps(bad)]))
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(2, "rejected", "no shared prompt")]


def refused(path):
    report = check_file(path)
    assert not report.ok and report.usable == 0
    assert "\n" not in report.message
    return report


def test_html_renamed_jsonl_is_refused(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n")
    report = refused(path)
    (problem,) = report.problems
    assert (problem.line, problem.field, problem.reason) == (1, None, "wrong file type")
    assert "HTML" in problem.detail and "HTML" in report.message


def test_binary_renamed_jsonl_is_refused_and_never_unpickled(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(pickle.dumps({"prompt": "Q"}))
    (problem,) = refused(path).problems
    assert (problem.line, problem.field, problem.reason) == (1, None, "wrong file type")
    assert "pickle" in problem.detail


def test_nul_bytes_make_a_binary_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"prompt,completion\n\x00\x01\x02")
    (problem,) = refused(path).problems
    assert problem.reason == "wrong file type" and "NUL byte at byte offset 18" in problem.detail


def test_parquet_renamed_jsonl_is_refused(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"PAR1" + b"\x00" * 20)
    assert "rename it .parquet" in refused(path).problems[0].detail


def test_text_renamed_parquet_is_refused(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_text('{"prompt": "Q"}\n')
    assert refused(path).problems[0].reason == "wrong file type"


def test_empty_file(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n  \n")
    (problem,) = refused(path).problems
    assert (problem.line, problem.field, problem.reason) == (1, None, "empty file")


def test_header_only_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("prompt,chosen,rejected\n")
    (problem,) = refused(path).problems
    assert (problem.line, problem.field, problem.reason) == (1, None, "header only")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    assert refused(path).problems[0].reason == "unsupported file type"


def test_columns_matching_no_layout_are_named_with_the_expected_layouts(tmp_path):
    report = refused(write_lines(tmp_path, [json.dumps({"question": "Q", "answer": "A"})]))
    assert "columns found: question, answer" in report.message
    assert "preference (prompt, chosen, rejected)" in report.message
    assert "--map" in report.message


def test_a_file_with_no_usable_rows_is_refused_in_one_line(tmp_path):
    path = write_lines(
        tmp_path, [json.dumps({**GOOD, "chosen": ""}), json.dumps({**GOOD, "rejected": "yes"})]
    )
    report = refused(path)
    assert (report.dropped, report.drop_reasons) == (2, {"empty text": 1, "chosen identical to rejected": 1})
    with pytest.raises(DataError, match="no usable rows"):
        import_dataset(Workspace.at(tmp_path / "ws"), path, "broken")


def test_problems_are_capped_but_all_counted(tmp_path):
    path = write_lines(tmp_path, [json.dumps(GOOD)] + ["not json"] * (PROBLEMS_KEPT + 300))
    report = check_file(path)
    assert (report.usable, report.dropped) == (1, PROBLEMS_KEPT + 300)
    assert len(report.problems) == PROBLEMS_KEPT
    assert report.drop_reasons == {"invalid JSON": PROBLEMS_KEPT + 300}
    assert report.problems[-1].line == PROBLEMS_KEPT + 1


def test_scores_must_be_finite_numbers(tmp_path):
    records = [{"prompt": "Q", "responses": ["a", "b"], "scores": [s, 1]} for s in (2, "NaN", "high")]
    report = check_file(write_lines(tmp_path, [json.dumps(record) for record in records]))
    assert [(p.line, p.field, p.reason) for p in report.problems] == [
        (2, "scores[0]", "wrong type"),
        (3, "scores[0]", "wrong type"),
    ]


def test_not_utf8_in_csv_names_the_physical_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"prompt,completion\nQ,A\nQ,caf\xe9\nQ,B\n")
    report = check_file(path)
    assert report.usable == 2
    assert [(p.line, p.field, p.reason, p.detail) for p in report.problems] == [
        (3, None, "not UTF-8", "byte offset 27")
    ]


def test_not_utf8_in_a_json_array_stops_at_its_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(b'[\n{"text": "a"},\n{"text": "caf\xe9"}\n]')
    report = refused(path)
    (problem,) = report.problems
    assert (problem.line, problem.field, problem.reason, problem.detail) == (
        3,
        None,
        "not UTF-8",
        "byte offset 30",
    )
