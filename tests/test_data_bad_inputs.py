"""The bad input corpus (tests/data/bad/): every file is refused or cleaned with one-line reasons that name
the line and the field, by the engine and by `python -m rlhf_studio data check`, never with a traceback.

Each file has one row in CORPUS: the usable rows it keeps, every problem as (line, field, reason), and a
fragment that the message or a problem's detail must contain. Files made on the fly (Parquet, 1 GB, deep
nesting, odd names) are in test_data_bad_generated.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rlhf_studio.cli import main
from rlhf_studio.data import check_file

BAD = Path(__file__).parent / "data" / "bad"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Expect:
    usable: int
    problems: list[tuple[int, str | None, str]] = field(default_factory=list)
    fragment: str = ""


def each_line(first: int, last: int, field: str | None, reason: str, step: int = 1) -> list:
    return [(line, field, reason) for line in range(first, last + 1, step)]


WRONG_FILE = [(1, None, "wrong file type")]
CORPUS = {
    # empty, header-only, blank
    "empty.jsonl": Expect(0, [(1, None, "empty file")], "no content"),
    "blank_lines.jsonl": Expect(0, [(1, None, "empty file")], "no content"),
    "header_only.csv": Expect(0, [(1, None, "header only")], "no data rows"),
    # invalid JSON lines: some among good ones, all of them
    "some_lines_broken.jsonl": Expect(3, [(2, None, "invalid JSON"), (4, None, "invalid JSON")], "column"),
    "all_lines_broken.jsonl": Expect(0, each_line(1, 4, None, "invalid JSON"), "Expecting"),
    # not UTF-8, not text, not what the extension says
    "latin1.jsonl": Expect(2, [(2, None, "not UTF-8")], "byte offset 94"),
    "windows1252.csv": Expect(1, [(3, None, "not UTF-8")], "byte offset 40"),
    "utf16le_no_bom.jsonl": Expect(0, WRONG_FILE, "UTF-16 text without a byte-order mark"),
    "utf16be_no_bom.csv": Expect(0, WRONG_FILE, "UTF-16 text without a byte-order mark"),
    "utf16_bom.jsonl": Expect(0, WRONG_FILE, "UTF-16 text; save it as UTF-8"),
    "random_bytes.jsonl": Expect(0, WRONG_FILE, "binary data (NUL byte"),
    "html_page.jsonl": Expect(0, WRONG_FILE, "HTML/XML page"),
    "html_fragment.json": Expect(0, WRONG_FILE, "HTML/XML page"),
    "png_image.jsonl": Expect(0, WRONG_FILE, "PNG image"),
    "zip_archive.jsonl": Expect(0, WRONG_FILE, "zip archive"),
    "gzipped.jsonl": Expect(0, WRONG_FILE, "gzip-compressed"),
    # fields: missing, wrong types, empty, identical
    "missing_fields.jsonl": Expect(
        1, [(2, "rejected", "missing field"), (3, "prompt", "missing field"), (4, "chosen", "missing field")]
    ),
    "wrong_types.jsonl": Expect(
        1,
        [(2, "chosen", "wrong type"), (3, "prompt", "wrong type"), (4, "rejected", "wrong type")],
        "got int",
    ),
    "wrong_types_messages.jsonl": Expect(
        1,
        [
            (2, "messages", "wrong type"),
            (3, "messages[1].content", "wrong type"),
            (4, "messages", "wrong type"),
        ],
        "expected a list, got object",
    ),
    "empty_strings.jsonl": Expect(
        1, [(2, "chosen", "empty text"), (3, "rejected", "empty text"), (4, "prompt", "empty text")]
    ),
    "chosen_equals_rejected.jsonl": Expect(2, [(2, "rejected", "chosen identical to rejected")]),
    # chat messages: no role, unknown role, wrong order
    "messages_without_roles.jsonl": Expect(
        1, [(2, "messages[0].role", "message without role"), (3, "messages[1].role", "message without role")]
    ),
    "messages_unknown_roles.jsonl": Expect(
        1,
        [
            (2, "messages[1].role", "unknown role"),
            (3, "messages[0].role", "unknown role"),
            (4, "messages[1].role", "unknown role"),
        ],
        "'bot'; expected one of system, user, assistant",
    ),
    "sharegpt_bad_speakers.jsonl": Expect(
        1,
        [(2, "conversations[1].from", "unknown role"), (3, "conversations[1].from", "unknown role")],
        "bard",
    ),
    "messages_wrong_order.jsonl": Expect(
        1,
        [
            (2, "messages[0].role", "wrong order"),
            (3, "messages[1].role", "wrong order"),
            (4, "messages[1].role", "wrong order"),
            (5, "messages[2].role", "wrong order"),
        ],
        "two user messages in a row",
    ),
    "pairs_wrong_order.jsonl": Expect(
        1,
        [(2, "chosen[0].role", "wrong order"), (3, "chosen[0].role", "wrong order")],
        "starts with assistant",
    ),
    "prompts_wrong_order.jsonl": Expect(
        1,
        [(2, "prompt[1].role", "wrong order"), (3, "prompt[0].role", "wrong order")],
        "ends with a user message",
    ),
    # rankings: score counts, scores that are no numbers, ties
    "rankings_score_count.jsonl": Expect(
        3, [(2, "scores", "length mismatch"), (3, "scores", "length mismatch")], "3 responses but 2 scores"
    ),
    "rankings_scores_not_numbers.jsonl": Expect(
        1,
        [
            (2, "scores[0]", "wrong type"),
            (3, "scores[0]", "missing field"),
            (4, "scores[0]", "wrong type"),
            (5, "scores", "wrong type"),
        ],
        "got text 'high'",
    ),
    "rankings_ties.jsonl": Expect(3, [(2, "scores", "equal scores"), (3, "scores", "equal scores")], "both"),
    # layouts and shapes
    "mixed_layouts.jsonl": Expect(
        5, each_line(1, 9, "chosen", "missing field", step=2), "a prompt_completion row in a preference file"
    ),
    "no_known_columns.jsonl": Expect(0, [], "columns found: question, answer; they match no known layout"),
    "lines_are_not_objects.jsonl": Expect(2, each_line(2, 5, None, "wrong type"), "got null"),
    "lines_are_arrays.jsonl": Expect(
        0, each_line(1, 2, None, "wrong type"), "one JSON object per line, got list"
    ),
    "single_object.json": Expect(0, [(1, None, "invalid JSON")], "JSON Lines"),
    "trailing_comma.json": Expect(3, [(4, None, "invalid JSON")], "trailing comma"),
    "array_then_more.json": Expect(
        1, [(4, None, "invalid JSON")], "more data after the array closed on line 3"
    ),
    # JSON that Python reads but a dataset should not hold
    "nan_infinity.jsonl": Expect(
        2, [(2, "prompt", "wrong type"), (3, "score_chosen", "wrong type")], "expected text, got nan"
    ),
    "duplicate_keys.jsonl": Expect(1, [(2, "chosen", "duplicate key"), (3, "id", "duplicate key")], "twice"),
    "huge_integer.jsonl": Expect(1, [(2, None, "invalid JSON")], "4300 digits"),
    "lone_surrogate.jsonl": Expect(1, [(2, "prompt", "invalid text")], "lone surrogate \\ud83d"),
    "choice_not_a_small_number.csv": Expect(
        1,
        [(3, "choice", "wrong type"), (4, "choice", "wrong type"), (5, "choice", "choice out of range")],
        "got text '²'",
    ),
    # CSV shapes and line endings
    "ragged.csv": Expect(2, [(3, None, "wrong number of columns"), (4, None, "wrong number of columns")]),
    "unbalanced_quote.csv": Expect(1, [(3, None, "invalid CSV")], "opened on line 3 never closes"),
    "text_after_quote.csv": Expect(2, [(3, None, "invalid CSV")], "quotes inside it are doubled"),
    "cr_only.csv": Expect(0, [(1, None, "invalid line endings")], "CR only"),
    "blank_lines_before_header.csv": Expect(1),
    # accepted as they are
    "bom_utf8.jsonl": Expect(2),
    "bom_utf8.csv": Expect(2),
    "crlf.jsonl": Expect(2),
    "crlf.csv": Expect(2),
}


def test_the_corpus_is_complete():
    files = sorted(path.name for path in BAD.iterdir() if not path.name.startswith("."))
    assert files == sorted(CORPUS)
    assert len(files) >= 25


def assert_one_line(text: str) -> None:
    assert text and "\n" not in text and "\r" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_engine_refuses_or_cleans_each_bad_file(name):
    expected = CORPUS[name]
    report = check_file(BAD / name)
    assert (report.ok, report.usable) == (expected.usable > 0, expected.usable)
    assert [(p.line, p.field, p.reason) for p in report.problems] == expected.problems
    file_refused = bool(report.problems) and not report.drop_reasons  # one problem: the file's
    assert report.dropped == (0 if file_refused else len(expected.problems))
    assert_one_line(report.message)
    for problem in report.problems:
        described = problem.describe()
        assert_one_line(described)
        assert described.startswith(
            f"line {problem.line}" + (f", {problem.field}:" if problem.field else ":")
        )
    texts = [report.message, *(problem.detail for problem in report.problems)]
    assert any(expected.fragment in text for text in texts), texts
    if not report.ok and report.problems:
        assert f"line {report.problems[0].line}" in report.message


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_cli_says_the_same_with_its_documented_exit_code(name, capsys):
    expected = CORPUS[name]
    code = main(["data", "check", str(BAD / name), "--json"])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert code == (0 if expected.usable else 1)
    assert (summary["ok"], summary["usable"]) == (expected.usable > 0, expected.usable)
    assert [(p["line"], p["field"], p["reason"]) for p in summary["problems"]] == expected.problems
    assert_one_line(summary["message"])
    assert err == ""
    code = main(["data", "check", str(BAD / name)])
    out, err = capsys.readouterr()
    assert code == (0 if expected.usable else 1)
    assert out.splitlines()[0] == summary["message"] and "Traceback" not in out + err
    for line, field_name, reason in expected.problems[:20]:
        assert f"line {line}" + (f", {field_name}" if field_name else "") + f": {reason}" in out


def test_accepted_files_keep_their_text_exactly():
    crlf = check_file(BAD / "crlf.csv").rows
    assert crlf[1] == {
        "prompt": "Q2\r\nover two lines",
        "chosen": "yes, with a comma",
        "rejected": 'no "quoted"',
    }
    for name in ("crlf.jsonl", "bom_utf8.jsonl", "bom_utf8.csv"):
        rows = check_file(BAD / name).rows
        assert all("\r" not in text and "\ufeff" not in text for row in rows for text in row.values())
    assert check_file(BAD / "bom_utf8.csv").columns == ["prompt", "chosen", "rejected"]


def test_a_bad_file_imports_only_its_usable_rows(workspace, capsys):
    assert (
        main(["data", "import", str(BAD / "mixed_layouts.jsonl"), "--name", "mixed", "--eval-fraction", "0"])
        == 0
    )
    assert "stored mixed: 5 train + 0 eval preference rows" in capsys.readouterr().out
    assert main(["data", "import", str(BAD / "html_page.jsonl"), "--name", "page"]) == 1
    err = capsys.readouterr().err
    assert_one_line(err.rstrip("\n"))
    assert "not imported: html_page.jsonl: line 1: wrong file type" in err
    assert not (workspace.datasets_dir / "page").exists()


SUBPROCESS_SAMPLE = [
    "utf16le_no_bom.jsonl",
    "png_image.jsonl",
    "some_lines_broken.jsonl",
    "lone_surrogate.jsonl",
    "huge_integer.jsonl",
    "unbalanced_quote.csv",
    "messages_wrong_order.jsonl",
    "bom_utf8.csv",
]


def test_python_m_rlhf_studio_data_check_in_a_child_process():
    """The real command, with a strict UTF-8 stdout, for a sample of the corpus (run side by side)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8:strict"}
    children = {
        name: subprocess.Popen(
            [sys.executable, "-m", "rlhf_studio", "data", "check", str(BAD / name), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for name in SUBPROCESS_SAMPLE
    }
    for name, child in children.items():
        out, err = child.communicate(timeout=120)
        expected = CORPUS[name]
        assert child.returncode == (0 if expected.usable else 1), err
        assert err == ""
        summary = json.loads(out)
        assert [(p["line"], p["field"], p["reason"]) for p in summary["problems"]] == expected.problems
