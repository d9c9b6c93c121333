"""Bad input made on the fly, where a committed file would be binary, huge or unportable: Parquet with wrong
types or cut short, 10,000 levels of nesting, 20,000 columns, odd file names, a 1 MB value, records over the
16 MiB record limit, and 1 GB files checked by `python -m rlhf_studio data check` in a child process whose
peak memory is measured.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlhf_studio.cli import main
from rlhf_studio.data import check_file

REPO = Path(__file__).resolve().parent.parent
GOOD = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}
GOOD_LINE = json.dumps(GOOD) + "\n"
DEPTH = 10_000
PEAK_LIMIT_MIB = 200  # a 1 GB file must not be held: the check itself needs ~25 MiB, a 16 MiB record more


def problems(report) -> list[tuple[int, str | None, str]]:
    return [(p.line, p.field, p.reason) for p in report.problems]


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text


# --- deep nesting: the JSON decoder's recursion limit is a reason, never a RecursionError ---------------


def test_ten_thousand_levels_in_a_jsonl_field(tmp_path):
    path = tmp_path / "deep.jsonl"
    deep = '{"a": ' * DEPTH + "1" + "}" * DEPTH
    path.write_text(
        GOOD_LINE + f'{{"prompt": "Q", "chosen": "a", "rejected": "b", "meta": {deep}}}\n' + GOOD_LINE
    )
    report = check_file(path)
    assert (report.usable, problems(report)) == (2, [(2, None, "invalid JSON")])
    assert "nested too deeply" in report.problems[0].detail


def test_ten_thousand_levels_in_a_json_array(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(
        "[\n" + json.dumps(GOOD) + ",\n" + "[" * DEPTH + "]" * DEPTH + ",\n" + json.dumps(GOOD) + "\n]"
    )
    report = check_file(path)
    assert (report.usable, problems(report)) == (1, [(3, None, "invalid JSON")])
    assert "nested too deeply" in report.message + report.problems[0].detail
    assert report.problems[0].detail.endswith("the rest of the file was not read")


def test_ten_thousand_levels_in_a_csv_cell(tmp_path, capsys):
    path = tmp_path / "deep.csv"
    path.write_text(f'prompt,responses\nQ,"[""a"", ""b""]"\nQ,{"[" * DEPTH}\n')
    report = check_file(path)
    assert (report.usable, problems(report)) == (1, [(3, "responses", "wrong type")])
    assert "nested too deeply" in report.problems[0].detail
    assert main(["data", "check", str(path)]) == 0
    assert "line 3, responses: wrong type" in capsys.readouterr().out


# --- Parquet: wrong column types, zero bytes, cut short, no rows ----------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected", "fragment"),
    [
        (
            {
                "prompt": pa.array([1, 2]),
                "chosen": pa.array([[1, 2], [3]]),
                "rejected": pa.array([{"a": 1}] * 2),
            },
            [(1, "chosen[0]", "wrong type"), (2, "chosen[0]", "wrong type")],
            "expected a message object, got int",
        ),
        (
            {"prompt": ["Q", None], "chosen": pa.array([b"yes", b"ok"]), "rejected": ["no", "no"]},
            [(1, "chosen", "wrong type"), (2, "chosen", "wrong type")],
            "expected text, got bytes",
        ),
        (
            {"prompt": ["Q", "Q"], "chosen": [1.5, float("nan")], "rejected": ["no", "no"]},
            [(1, "chosen", "wrong type"), (2, "chosen", "wrong type")],
            "expected text, got nan",
        ),
    ],
)
def test_parquet_with_wrong_column_types(tmp_path, columns, expected, fragment):
    path = tmp_path / "typed.parquet"
    pq.write_table(pa.table(columns), path)
    report = check_file(path)
    assert (report.ok, problems(report)) == (False, expected)
    assert one_line(report.message) and fragment in report.problems[-1].detail


def test_zero_byte_truncated_and_empty_parquet(tmp_path):
    complete = tmp_path / "complete.parquet"
    pq.write_table(pa.table({key: [value] * 50 for key, value in GOOD.items()}), complete)
    data = complete.read_bytes()
    cases = {
        "zero.parquet": (b"", "empty file"),
        "half.parquet": (data[: len(data) // 2], "unreadable Parquet"),
        "no-footer.parquet": (data[:-4], "unreadable Parquet"),
    }
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        report = check_file(tmp_path / name)
        assert (report.ok, problems(report)) == (False, [(1, None, reason)]), name
        assert one_line(report.message)
    pq.write_table(
        pa.table({key: [value] for key, value in GOOD.items()}).slice(0, 0), tmp_path / "none.parquet"
    )
    assert problems(check_file(tmp_path / "none.parquet")) == [(1, None, "no rows")]


# --- very many columns ---------------------------------------------------------------------------------


def test_twenty_thousand_columns(tmp_path, capsys):
    extra = [f"column_{i}" for i in range(20_000)]
    wide = tmp_path / "wide.csv"
    wide.write_text(
        ",".join([*extra, *GOOD]) + "\n" + ",".join(["x"] * len(extra) + list(GOOD.values())) + "\n"
    )
    report = check_file(wide)
    assert (report.usable, report.format, len(report.unused_columns)) == (1, "preference", 20_000)
    assert main(["data", "check", str(wide)]) == 0
    out = capsys.readouterr().out
    assert "ignored columns: column_0, column_1," in out and "(20000 in all)" in out and len(out) < 3000
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps(dict.fromkeys(extra, "x")) + "\n")
    refused = check_file(unknown)
    assert not refused.ok and one_line(refused.message)
    assert "columns found: column_0" in refused.message and "(20000 in all)" in refused.message
    assert len(refused.message) < 2000


# --- odd file names ------------------------------------------------------------------------------------

ODD_NAMES = [
    "new\nline.jsonl",
    "tab\tand\rreturn.jsonl",
    "back\\slash.jsonl",
    "données 🙂 ١٢٣.jsonl",
    "\u202egnp.jsonl",  # a right-to-left override
    os.fsdecode(b"latin1-caf\xe9.jsonl"),  # bytes that are not UTF-8 (a lone surrogate in Python)
]


def test_odd_file_names_stay_on_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8:strict"}
    children = []
    for name in ODD_NAMES:
        path = tmp_path / name
        path.write_text("<html><body>Not found</body></html>\n")
        report = check_file(path)
        assert one_line(report.message) and report.message.endswith(
            "(not JSON Lines: it starts like an HTML/XML page (a web page saved instead of the raw file?))"
        )
        assert report.message.startswith(name if name.isprintable() else repr(name))
        command = [sys.executable, "-m", "rlhf_studio", "data", "check", os.fsencode(path)]
        children.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
        )
    for child in children:
        out, err = child.communicate(timeout=120)
        assert (child.returncode, err) == (1, b"")
        assert b"line 1: wrong file type" in out.splitlines()[0]


def test_an_odd_name_imports(tmp_path, workspace, capsys):
    path = tmp_path / ODD_NAMES[-1]
    path.write_text(GOOD_LINE * 3)
    assert main(["data", "import", str(path), "--name", "odd", "--eval-fraction", "0"]) == 0
    manifest = json.loads((workspace.datasets_dir / "odd" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["rows_total"] == 3 and manifest["source_file"].endswith("latin1-caf\\udce9.jsonl")


# --- long values and records over the limit ------------------------------------------------------------


def test_a_one_megabyte_value_is_kept_and_measured(tmp_path, capsys):
    """Policy: data check keeps long rows (it has no tokenizer) and reports their length in characters; the
    Data tab plots token lengths; the trainer truncates (SFT, DPO) or drops (reward model) at max_length."""
    path = tmp_path / "long.jsonl"
    path.write_text(GOOD_LINE + json.dumps({**GOOD, "chosen": "word " * 200_000}) + "\n")
    report = check_file(path)
    assert (report.usable, report.problems) == (2, [])
    assert report.stats["chars"]["chosen"]["max"] == 1_000_000
    assert main(["data", "check", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["chars"]["chosen"]["max"] == 1_000_000


def test_a_line_over_16_mib_is_skipped_and_reading_goes_on(tmp_path):
    path = tmp_path / "huge-line.jsonl"
    with open(path, "w") as handle:
        handle.write(GOOD_LINE + '{"prompt": "' + "x" * (17 << 20) + '"}\n' + GOOD_LINE)
    report = check_file(path)
    assert (report.usable, problems(report)) == (2, [(2, None, "record too long")])
    assert report.problems[0].detail == "a line over 16 MiB; skipped (a file without line breaks?)"


def test_a_csv_without_line_breaks_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("rlhf_studio.data.records.MAX_RECORD_BYTES", 4096)
    path = tmp_path / "one-line.csv"
    path.write_text("prompt,completion," * 1000)
    report = check_file(path)
    assert (report.ok, problems(report)) == (False, [(1, None, "record too long")])
    assert report.message.endswith("skipped (a file without line breaks?) in the header)")


def test_an_unbalanced_quote_swallows_at_most_one_record(tmp_path, monkeypatch):
    monkeypatch.setattr("rlhf_studio.data.records.MAX_RECORD_BYTES", 4096)
    path = tmp_path / "quote.csv"
    path.write_text(
        'prompt,chosen,rejected\nQ,yes,no\nQ,"never closed,no\n'
        + "".join(f"Q{i},yes,no\n" for i in range(2000))
    )
    report = check_file(path)
    assert problems(report) == [(3, None, "invalid CSV")]
    last_skipped = int(re.search(r"lines 3-(\d+) skipped", report.problems[0].detail).group(1))
    assert 3 < last_skipped < 2003 and report.usable == 1 + (
        2003 - last_skipped
    )  # the rows after it are read


def test_a_json_array_element_over_the_limit_stops_the_reading(tmp_path, monkeypatch):
    monkeypatch.setattr("rlhf_studio.data.records.MAX_RECORD_BYTES", 4096)
    monkeypatch.setattr("rlhf_studio.data.records.CHUNK_BYTES", 1024)
    path = tmp_path / "huge-element.json"
    path.write_text(f'[\n{json.dumps(GOOD)},\n{{"prompt": "{"x" * 10_000}"}},\n{json.dumps(GOOD)}\n]')
    report = check_file(path)
    assert (report.usable, problems(report)) == (1, [(3, None, "record too long")])
    assert "the rest of the file was not read" in report.problems[0].detail


# --- 1 GB files: streamed by the CLI in a child process, peak memory measured --------------------------

MEASURE = """
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"code": done.returncode, "out": done.stdout, "err": done.stderr,
                  "seconds": time.monotonic() - started, "peak_mib": peak_mib}))
"""


def checked_in_a_child(path: Path, *options: str) -> dict:
    """Run `python -m rlhf_studio data check` in a grandchild, so that the peak memory is only its own."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "rlhf_studio", "data", "check", str(path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [*command, *options], capture_output=True, text=True, env=env, cwd=REPO, timeout=600
    )
    return json.loads(done.stdout)


def test_a_1_gb_file_without_line_breaks_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "no-line-breaks.jsonl"
    with open(path, "wb") as handle:
        handle.write(b'{"prompt": "' + b"x" * 100_000)
        handle.truncate(1 << 30)  # sparse: a 1 GB file that costs no disk
    result = checked_in_a_child(path)
    assert (result["code"], result["err"]) == (1, "")
    assert "line 1: record too long (a line over 16 MiB; skipped" in result["out"].splitlines()[0]
    assert result["peak_mib"] < PEAK_LIMIT_MIB
    assert result["seconds"] < 60


@pytest.mark.slow
def test_a_1_gb_file_is_streamed_whole_in_bounded_memory(tmp_path):
    """Every record of 1 GB is read (a broken line near the end is found) in ~25 MiB; --limit answers fast."""
    rows = [  # ~4 KB each, like UltraFeedback's
        json.dumps(
            {"prompt": f"Question {i}? " * 50, "chosen": "A fine answer. " * 150, "rejected": "No. " * 200}
        )
        + "\n"
        for i in range(500)
    ]
    block = "".join(rows).encode()
    copies = (1 << 30) // len(block) + 1
    path = tmp_path / "1gb.jsonl"
    with open(path, "wb") as handle:
        for _ in range(copies):
            handle.write(block)
        handle.write(b'{"prompt": "cut off\n')
    assert path.stat().st_size > 1 << 30
    total = copies * len(rows)
    result = checked_in_a_child(path)
    assert (result["code"], result["err"]) == (0, "")
    summary = (
        f"{total} usable preference rows, standard, from {total + 1} records; dropped 1 (invalid JSON: 1)"
    )
    assert result["out"].splitlines()[0] == f"preference: {summary}"
    assert f"line {total + 1}: invalid JSON" in result["out"]
    assert result["peak_mib"] < PEAK_LIMIT_MIB
    assert result["seconds"] < 300
    quick = checked_in_a_child(path, "--limit", "1000")
    assert quick["code"] == 0 and "usable preference rows, standard, from first 1000 records" in quick["out"]
    assert quick["seconds"] < 10
