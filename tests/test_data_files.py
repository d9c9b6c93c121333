"""File types (CSV, TSV, Parquet, JSON arrays), column maps, --format overrides and streaming previews."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlhf_studio.data import DataError, check_file, parse_column_map


def test_csv_rows_carry_their_physical_line(tmp_path):
    path = tmp_path / "prefs.csv"
    path.write_text(
        'prompt,chosen,rejected\nQ1,a,b\n"Q2\nspans two lines",c,d\nQ3,,f\nQ4,g,h\n', encoding="utf-8"
    )
    report = check_file(path)
    assert (report.file_type, report.format, report.usable) == ("csv", "preference", 3)
    assert report.rows[1] == {"prompt": "Q2\nspans two lines", "chosen": "c", "rejected": "d"}
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(5, "chosen", "empty text")]


def test_csv_with_a_short_row_and_bom(tmp_path):
    path = tmp_path / "sft.csv"
    path.write_bytes("\ufeffprompt,completion\nQ,A\nonly-one-value\n".encode())
    report = check_file(path)
    assert report.columns == ["prompt", "completion"]
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(3, None, "wrong number of columns")]


def test_csv_types_are_read_from_text(tmp_path):
    path = tmp_path / "kto.csv"
    path.write_text("prompt,completion,label\nQ,good,true\nQ,bad,False\nQ,odd,maybe\n")
    report = check_file(path)
    assert [row["label"] for row in report.rows] == [True, False]
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(4, "label", "wrong type")]


def test_csv_cells_holding_json_lists(tmp_path):
    path = tmp_path / "rank.csv"
    path.write_text('prompt,responses,scores\nQ,"[""a"", ""b"", ""c""]","[3, 2, 1]"\n')
    report = check_file(path)
    assert (report.format, report.usable) == ("scored_rankings", 3)


def test_tsv_pairwise_choice(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("input_text\tcandidate_0\tcandidate_1\tchoice\nQ\ta, with comma\tb\t1\nR\tc\td\t3\n")
    report = check_file(path)
    assert (report.file_type, report.format) == ("tsv", "pairwise_choice")
    assert report.rows == [{"prompt": "Q", "chosen": "b", "rejected": "a, with comma"}]
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(3, "choice", "choice out of range")]


def test_parquet_with_message_lists(tmp_path):
    chosen = [[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]] * 3
    rejected = [[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}]] * 2 + [chosen[0]]
    path = tmp_path / "ultra.parquet"
    pq.write_table(
        pa.table({"prompt": ["Q"] * 3, "chosen": chosen, "rejected": rejected}), path, row_group_size=2
    )
    report = check_file(path)
    assert (report.file_type, report.format, report.style, report.usable) == (
        "parquet",
        "ultrafeedback",
        "conversational",
        2,
    )
    assert report.rows[0]["prompt"] == [{"role": "user", "content": "Q"}]
    assert [(p.line, p.field, p.reason) for p in report.problems] == [
        (3, "rejected", "chosen identical to rejected")
    ]


def test_json_array_elements_carry_their_starting_line(tmp_path):
    records = [
        {"prompt": "Q1", "completion": "A1"},
        {"prompt": "Q2", "completion": ""},
        {"prompt": "Q3", "completion": "A3"},
    ]
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(records, indent=2))
    report = check_file(path)
    assert (report.file_type, report.format, report.usable) == ("json", "prompt_completion", 2)
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(6, "completion", "empty text")]


def test_json_array_with_a_syntax_error_keeps_the_rows_before_it(tmp_path, monkeypatch):
    monkeypatch.setattr("rlhf_studio.data.records.CHUNK_BYTES", 64)
    good = [{"prompt": f"question {i}", "completion": "answer " * 10} for i in range(20)]
    text = json.dumps(good, indent=1)[:-1] + ',\n{"prompt": "Q" "completion": "A"}]'
    path = tmp_path / "broken.json"
    path.write_text(text)
    report = check_file(path)
    assert report.usable == 20
    (problem,) = report.problems
    assert (problem.line, problem.field, problem.reason) == (text.count("\n") + 1, None, "invalid JSON")


def test_json_file_holding_json_lines_is_read_as_lines(tmp_path):
    path = tmp_path / "data.json"
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    report = check_file(path)
    assert (report.file_type, report.usable) == ("jsonl", 2)


def test_column_map_reads_fields_from_named_columns_and_reports_user_names(tmp_path):
    path = tmp_path / "custom.jsonl"
    rows = [{"question": "Q", "good": "yes", "bad": "no"}, {"question": "Q", "good": "", "bad": "no"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert not check_file(path).ok
    column_map = parse_column_map("prompt=question, chosen=good,rejected=bad")
    report = check_file(path, column_map=column_map)
    assert (report.format, report.rows) == (
        "preference",
        [{"prompt": "Q", "chosen": "yes", "rejected": "no"}],
    )
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(2, "good", "empty text")]


@pytest.mark.parametrize(
    ("column_map", "message"),
    [
        ({"prompt": "missing"}, "no column 'missing'"),
        ({"rationale": "question"}, "unknown field 'rationale'"),
        ({"prompt": "question", "chosen": "question"}, "one column is mapped to two fields"),
    ],
)
def test_bad_column_maps_are_refused(tmp_path, column_map, message):
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps({"question": "Q", "good": "yes"}) + "\n")
    report = check_file(path, column_map=column_map)
    assert not report.ok and message in report.message


def test_parse_column_map_rejects_malformed_entries():
    with pytest.raises(DataError, match="FIELD=COLUMN"):
        parse_column_map("prompt")


def test_format_override_beats_detection(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "completion": "A"}) + "\n")
    assert check_file(path).format == "prompt_completion"
    report = check_file(path, format_name="prompt_only")
    assert (report.format, report.kind, report.rows, report.unused_columns) == (
        "prompt_only",
        "prompt",
        [{"prompt": "Q"}],
        ["completion"],
    )
    missing = check_file(path, format_name="kto")
    assert not missing.ok and "format kto needs columns label" in missing.message
    assert "unknown format 'nope'" in check_file(path, format_name="nope").message


def test_alternatives_are_reported_when_several_layouts_match(tmp_path):
    path = tmp_path / "both.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "completion": "A", "text": "Q A"}) + "\n")
    report = check_file(path)
    assert report.format == "prompt_completion"
    assert report.alternatives == ["text", "prompt_only"]


def _bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_preview_of_a_50_mb_file_reads_only_its_start(tmp_path):
    line = json.dumps({"prompt": "Q " * 200, "chosen": "yes " * 150, "rejected": "no " * 150}) + "\n"
    path = tmp_path / "big.jsonl"
    with open(path, "w") as handle:
        for _ in range(50):
            handle.write(line * (1_000_000 // len(line) + 1))
    assert path.stat().st_size > 50_000_000
    has_io = os.path.exists("/proc/self/io")
    before = _bytes_read_by_this_process() if has_io else 0
    started = time.perf_counter()
    report = check_file(path, preview_rows=25)
    elapsed = time.perf_counter() - started
    assert (report.ok, report.preview, report.records_read, len(report.rows)) == (True, True, 25, 25)
    assert elapsed < 1.0
    if has_io:
        assert _bytes_read_by_this_process() - before < 2_000_000


def test_csv_cells_holding_json_messages_are_conversations(tmp_path):
    chosen = json.dumps([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}])
    rejected = json.dumps([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}])
    path = tmp_path / "ultra.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(
            [["prompt", "chosen", "rejected"], ["Q", chosen, rejected], ["[1, 2]", "[1, 2]", "[3]"]]
        )
    report = check_file(path)
    assert (report.format, report.style, report.usable) == ("ultrafeedback", "conversational", 1)
    assert [(p.line, p.field, p.reason) for p in report.problems] == [(3, "chosen[0]", "wrong type")]


def test_empty_json_array_and_single_json_object_are_refused(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[ ]")
    assert check_file(empty).problems[0].reason == "no rows"
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"data": [{"text": "a"}]}, indent=2))
    report = check_file(single)
    assert not report.ok and "JSON Lines" in report.message


def test_damaged_parquet_is_refused_in_one_line(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100)
    report = check_file(path)
    assert not report.ok and report.problems[0].reason == "unreadable Parquet"
    assert "\n" not in report.message


def test_json_array_streaming_keeps_multibyte_characters_cut_by_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("rlhf_studio.data.records.CHUNK_BYTES", 7)
    records = [{"prompt": f"café {i} 🙂", "completion": "naïve — ünïcödé"} for i in range(30)]
    path = tmp_path / "utf8.json"
    path.write_text("\ufeff" + json.dumps(records, ensure_ascii=False), encoding="utf-8")
    report = check_file(path)
    assert (report.usable, report.problems, report.rows) == (30, [], records)
