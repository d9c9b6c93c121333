"""`data check` and `data import`: exit codes, text and --json output.

Runs `python -m rlhf_studio data ...` in a subprocess once rlhf_studio/__main__.py exists, else calls
`rlhf_studio.cli.data.main` in-process with the same arguments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import rlhf_studio
from rlhf_studio.cli.data import main

REPO_ROOT = Path(rlhf_studio.__file__).parent.parent
HAS_MAIN = (REPO_ROOT / "rlhf_studio" / "__main__.py").exists()


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("RLHF_STUDIO_HOME", str(home))

    def run(*args: str) -> Result:
        argv = ["data", *map(str, args)]
        if HAS_MAIN:
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            command = [sys.executable, "-m", "rlhf_studio", *argv]
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
            return Result(done.returncode, done.stdout, done.stderr)
        code = main(argv)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    run.home = home
    return run


def write_jsonl(folder, records, name="data.jsonl"):
    path = folder / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture
def prefs(tmp_path):
    records = [{"prompt": f"Q{i}", "chosen": "good", "rejected": "bad"} for i in range(10)]
    return write_jsonl(
        tmp_path, records + [{"prompt": "Q", "chosen": "same", "rejected": "same"}], "prefs.jsonl"
    )


def test_check_prints_format_usable_and_dropped_rows(cli, prefs):
    result = cli("check", prefs, "--stage", "dpo")
    assert result.code == 0
    assert "format: preference" in result.out
    assert "usable rows: 10; dropped: 1" in result.out
    assert "line 11, rejected: chosen identical to rejected" in result.out
    assert "stage dpo: fits" in result.out


def test_check_json_is_one_object(cli, prefs):
    result = cli("check", prefs, "--json")
    report = json.loads(result.out)
    assert result.code == 0
    assert (report["ok"], report["format"], report["kind"], report["usable"], report["dropped"]) == (
        True,
        "preference",
        "preference",
        10,
        1,
    )
    assert len(report["rows"]) == 10 and set(report["rows"][0]) >= {"prompt", "chosen", "rejected"}
    assert report["problems"] == [
        {"line": 11, "field": "rejected", "reason": "chosen identical to rejected", "detail": ""}
    ]
    assert report["message"].startswith("preference: 10 usable")


def test_check_exits_non_zero_when_the_stage_does_not_fit(cli, prefs):
    result = cli("check", prefs, "--stage", "sft", "--json")
    report = json.loads(result.out)
    assert result.code == 3
    assert (report["ok"], report["stage_fits"]) == (False, False)
    assert "sft needs demonstrations" in report["stage_reason"]


def test_check_exits_non_zero_for_unusable_files(cli, tmp_path):
    page = tmp_path / "page.jsonl"
    page.write_text("<html><body>404</body></html>")
    result = cli("check", page, "--json")
    report = json.loads(result.out)
    assert result.code == 1
    assert report["ok"] is False and report["rows"] == [] and report["usable"] == 0
    assert report["problems"][0]["reason"] == "wrong file type" and report["problems"][0]["line"] == 1
    assert "Traceback" not in result.out + result.err


def test_check_with_map_and_format(cli, tmp_path):
    path = write_jsonl(tmp_path, [{"question": "Q", "answer": "A"}])
    assert cli("check", path).code == 1
    result = cli(
        "check", path, "--map", "prompt=question,completion=answer", "--format", "prompt_only", "--json"
    )
    report = json.loads(result.out)
    assert (result.code, report["format"], report["kind"]) == (0, "prompt_only", "prompt")


def test_bad_map_is_a_usage_error(cli, prefs):
    if HAS_MAIN:
        assert cli("check", prefs, "--map", "prompt").code == 2
    else:
        with pytest.raises(SystemExit) as exit_info:
            cli("check", prefs, "--map", "prompt")
        assert exit_info.value.code == 2


def test_import_stores_into_the_workspace_and_refuses_a_second_time(cli, prefs):
    result = cli("import", prefs, "--name", "prefs", "--eval-fraction", "0.2", "--stage", "rm")
    assert result.code == 0
    assert "stored prefs: 8 train + 2 eval preference rows" in result.out
    manifest = json.loads((cli.home / "datasets" / "prefs" / "manifest.json").read_text())
    assert (manifest["rows_train"], manifest["rows_eval"], manifest["dropped"]) == (8, 2, 1)
    again = cli("import", prefs, "--name", "prefs")
    assert again.code == 1 and "already exists" in again.err
    assert cli("import", prefs, "--name", "prefs", "--overwrite", "--eval-fraction", "0").code == 0
    assert json.loads((cli.home / "datasets" / "prefs" / "manifest.json").read_text())["rows_eval"] == 0


def test_import_refuses_bad_names_in_one_line(cli, prefs):
    result = cli("import", prefs, "--name", "../up")
    assert result.code == 1
    assert result.err.strip().count("\n") == 0 and "invalid dataset name" in result.err


def test_check_json_rows_are_the_pairs_a_ranking_expands_to(cli, tmp_path):
    path = write_jsonl(
        tmp_path, [{"prompt": "Name a colour.", "responses": ["Red.", "Blue, I think.", "Dunno."]}]
    )
    report = json.loads(cli("check", path, "--json").out)
    assert report["format"] == "rankings"
    pairs = {(row["chosen"], row["rejected"]) for row in report["rows"]}
    assert pairs == {("Red.", "Blue, I think."), ("Red.", "Dunno."), ("Blue, I think.", "Dunno.")}
