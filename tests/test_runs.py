"""Run folders on disk: ids, status.json, listing, deleting, lineage and the `runs` CLI; no training here."""

from __future__ import annotations

import json
import re
import time

import pytest

from rlhf_studio.cli import main
from rlhf_studio.runner.runs import (
    COMPLETED,
    FAILED,
    LOG_FILE,
    MODEL_DIR,
    RUNNING,
    RunError,
    RunStatus,
    check_run_id,
    create_run_dir,
    delete_run,
    lineage,
    list_runs,
    log_tail,
    newest_checkpoint,
    read_status,
    run_dir,
    update_status,
    write_status,
)


def make_run(workspace, stage="sft", state=COMPLETED, parent=None, summary=None, **fields) -> str:
    run_id, folder = create_run_dir(workspace, stage)
    status = RunStatus(
        run_id=run_id,
        state=state,
        stage=stage,
        model=f"run:{parent}" if parent else "tiny",
        dataset="toy",
        parent=parent,
        created="2026-11-22T14:15:01+00:00",
        summary=summary or {},
        **fields,
    )
    write_status(folder, status)
    return run_id


def test_run_ids_are_unique_readable_and_sortable(workspace):
    ids = [create_run_dir(workspace, "dpo")[0] for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"\d{8}-\d{6}-dpo-[0-9a-f]{4}", run_id) for run_id in ids)
    assert sorted(path.name for path in workspace.runs_dir.iterdir()) == sorted(ids)


@pytest.mark.parametrize(
    "bad_id", ["..", ".", "../datasets", "a/b", "/etc", "", ".hidden", "x\x00y", "a" * 200]
)
def test_run_ids_cannot_leave_the_runs_folder(workspace, bad_id):
    (workspace.datasets_dir / "keep.txt").write_text("keep")
    with pytest.raises(RunError):
        check_run_id(bad_id)
    with pytest.raises(RunError):
        delete_run(workspace, bad_id)
    assert (workspace.datasets_dir / "keep.txt").read_text() == "keep"


def test_status_round_trip_ignores_unknown_keys(workspace):
    run_id = make_run(workspace, state=RUNNING, pid=123)
    folder = run_dir(workspace, run_id)
    payload = json.loads((folder / "status.json").read_text())
    payload["added_by_a_newer_version"] = 1
    (folder / "status.json").write_text(json.dumps(payload))
    status = update_status(folder, state=FAILED, message="boom", error_type="ValueError")
    assert read_status(folder) == status
    assert (status.state, status.pid, status.message) == (FAILED, 123, "boom")
    assert not list(folder.glob("*.tmp"))


def test_log_tail_keeps_the_last_lines_and_the_last_progress_update(workspace):
    folder = run_dir(workspace, make_run(workspace))
    lines = [f"line {i}" for i in range(100)] + ["step 1/9\rstep 5/9\rstep 9/9"]
    (folder / LOG_FILE).write_text("\n".join(lines) + "\n")
    assert log_tail(folder, lines=3) == ["line 98", "line 99", "step 9/9"]
    assert log_tail(run_dir(workspace, make_run(workspace))) == []


def test_newest_checkpoint_skips_partial_ones(workspace):
    folder = run_dir(workspace, make_run(workspace))
    assert newest_checkpoint(folder) is None
    for name in ["checkpoint-9", "checkpoint-10", "checkpoint-30.partial", "tmp-checkpoint-40"]:
        (folder / "checkpoints" / name).mkdir(parents=True)
    assert newest_checkpoint(folder).name == "checkpoint-10"


def test_listing_shows_each_run_with_duration_metric_and_parent(workspace):
    sft = make_run(
        workspace,
        summary={"train_loss": 2.5, "eval_loss": 2.25, "train_runtime": 7.0},
        started="2026-11-22T14:15:01+00:00",
        ended="2026-11-22T14:16:31+00:00",
    )
    time.sleep(1.05)
    dpo = make_run(workspace, stage="dpo", state=FAILED, parent=sft, message="The loss became NaN/Inf.")
    rows = list_runs(workspace)
    assert [row.run_id for row in rows] == [dpo, sft]
    assert (rows[1].duration_s, rows[1].metric_name, rows[1].metric_value) == (90.0, "eval_loss", 2.25)
    assert (rows[0].stage, rows[0].state, rows[0].parent, rows[0].duration_s) == ("dpo", FAILED, sft, None)
    assert rows[0].message == "The loss became NaN/Inf."


def test_listing_hundreds_of_runs_is_fast(workspace):
    for _ in range(300):
        make_run(workspace, summary={"eval_loss": 1.0}, started="2026-11-22T14:15:01+00:00")
    (workspace.runs_dir / "half-created").mkdir()  # no status.json yet: skipped, not an error
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        rows = list_runs(workspace)
        timings.append(time.perf_counter() - start)
    assert len(rows) == 300
    assert min(timings) < 0.3, timings


def test_deleting_a_run_leaves_every_other_run_alone(workspace):
    keep, doomed = make_run(workspace), make_run(workspace)
    (run_dir(workspace, doomed) / MODEL_DIR).mkdir()
    (run_dir(workspace, doomed) / MODEL_DIR / "model.safetensors").write_bytes(b"x" * 100)
    before = read_status(run_dir(workspace, keep))
    delete_run(workspace, doomed)
    assert not run_dir(workspace, doomed).exists()
    assert read_status(run_dir(workspace, keep)) == before
    assert [path.name for path in workspace.runs_dir.iterdir()] == [keep]
    with pytest.raises(RunError):
        delete_run(workspace, doomed)


def test_deleting_an_active_run_is_refused(workspace):
    running = make_run(workspace, state=RUNNING)
    with pytest.raises(RunError, match="stop it"):
        delete_run(workspace, running)
    assert run_dir(workspace, running).is_dir()


def test_lineage_follows_parents_and_stops_on_loops(workspace):
    sft = make_run(workspace)
    rm = make_run(workspace, stage="rm", parent=sft)
    ppo = make_run(workspace, stage="ppo", parent=rm)
    assert lineage(workspace, ppo) == [ppo, rm, sft]
    update_status(run_dir(workspace, sft), parent=ppo)
    assert lineage(workspace, ppo) == [ppo, rm, sft]
    orphan = make_run(workspace, parent="20200101-000000-sft-dead")
    assert lineage(workspace, orphan) == [orphan, "20200101-000000-sft-dead"]


def test_cli_lists_shows_and_deletes(workspace, capsys):
    sft = make_run(workspace, summary={"eval_loss": 0.5}, started="2026-11-22T14:15:01+00:00")
    dpo = make_run(workspace, stage="dpo", parent=sft)
    assert main(["runs", "list"]) == 0
    table = capsys.readouterr().out
    assert sft in table and dpo in table and "eval_loss=0.5" in table
    assert main(["runs", "list", "--json"]) == 0
    assert {row["run_id"] for row in json.loads(capsys.readouterr().out)} == {sft, dpo}
    assert main(["runs", "show", dpo]) == 0
    assert f"{dpo} <- {sft}" in capsys.readouterr().out
    assert main(["runs", "stop", sft]) == 1
    assert "not queued or running" in capsys.readouterr().err
    assert main(["runs", "delete", "../datasets"]) == 1
    assert main(["runs", "delete", dpo]) == 0
    assert [row.run_id for row in list_runs(workspace)] == [sft]
