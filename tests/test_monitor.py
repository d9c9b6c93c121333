import json
from datetime import datetime, timedelta

from rlhf_studio.runner.monitor import MetricsReader, metric_names, series, smooth, training_progress
from rlhf_studio.runner.runs import RunStatus


def append(path, *rows, partial: str = ""):
    with open(path, "a") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in rows) + partial)


def test_reader_reads_only_appended_complete_lines(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    reader = MetricsReader()
    assert reader.rows(tmp_path) == []
    append(metrics, {"step": 1, "loss": 2.0}, partial='{"step": 2, "lo')
    assert [row["step"] for row in reader.rows(tmp_path)] == [1]
    with open(metrics, "a") as handle:
        handle.write('ss": 1.5}\n')
    append(metrics, {"step": 3})
    assert [row.get("loss") for row in reader.rows(tmp_path)] == [2.0, 1.5, None]


def test_reader_starts_over_when_the_file_is_trimmed(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    reader = MetricsReader()
    append(metrics, {"step": 1}, {"step": 2}, {"step": 3})
    assert len(reader.rows(tmp_path)) == 3
    metrics.write_text(json.dumps({"step": 1}) + "\n")
    assert [row["step"] for row in reader.rows(tmp_path)] == [1]


def test_progress_has_eta_and_pace_while_running():
    now = datetime.now().astimezone()
    status = RunStatus("r1", "running", "dpo", started=(now - timedelta(seconds=100)).isoformat())
    rows = [{"step": 10, "max_steps": 40, "time": 1000.0}, {"step": 20, "max_steps": 40, "time": 1050.0}]
    progress = training_progress(status, rows, now)
    assert (progress.step, progress.total) == (20, 40)
    assert progress.steps_per_second == 0.2 and progress.eta == 100.0
    assert 99 <= progress.elapsed <= 101 and progress.fraction == 0.5
    assert "step 20/40" in progress.describe() and "ETA 1:40" in progress.describe()


def test_series_skips_missing_and_non_finite_values():
    rows = [{"step": 1, "loss": 1.0, "time": 10.0}, {"step": 2, "time": 12.0}, {"step": 3, "loss": None}]
    assert series(rows, "loss") == ([1], [1.0])
    assert series(rows + [{"step": 4, "loss": 0.5, "time": 15.0}], "loss", "time") == ([0.0, 5.0], [1.0, 0.5])


def test_metric_names_leave_bookkeeping_out():
    rows = [{"step": 1, "epoch": 0.1, "time": 1.0, "max_steps": 9, "loss": 1.0, "rewards/margins": 0.2}]
    assert metric_names(rows) == ["loss", "rewards/margins"]


def test_smoothing_is_debiased_and_zero_is_identity():
    assert smooth([1.0, 2.0, 3.0], 0) == [1.0, 2.0, 3.0]
    smoothed = smooth([4.0, 4.0, 4.0], 0.9)
    assert all(abs(value - 4.0) < 1e-9 for value in smoothed)
