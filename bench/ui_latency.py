"""Latency of the Monitor tab's refresh and of the runs list while a DPO job trains on the bundled model.

    python bench/ui_latency.py [--calls 50] [--interval 2.0] [--history 30]

Makes a temporary workspace (the bundled model copied from ./workspace/models, or converted once; the demo
preference data imported; --history finished runs, so that the runs table is not trivially short), starts a
DPO run on the bundled model through the JobManager (a metrics row every step, so the charts change as often
as they can), waits for its first metrics row, then calls the same Python functions the UI's events call,
Gradio's postprocess of every output (plots to JSON, tables) included:

    tick   one browser's timer: MonitorTab.refresh, then refresh_runs, every --interval s; charts are rebuilt
           only when a row was appended, so this is the mix a user gets while watching
    cold   MonitorTab.refresh for a browser that has drawn nothing, with an empty figure cache (a new
           window while rows keep arriving: the worst case), back to back
    runs   JobManager.runs() alone, and refresh_runs for a browser that has no table yet, back to back

Prints p50/p95 in ms, the ratio cold/tick at the median, and the conditions (cores, load average, training
processes on the machine). Target: p95 <= 300 ms for the refresh and the runs list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gradio as gr  # noqa: E402

from rlhf_studio.data import import_dataset  # noqa: E402
from rlhf_studio.models import BUNDLED_FOLDER, BUNDLED_MODEL, ensure_bundled_model  # noqa: E402
from rlhf_studio.runner.jobs import JobManager  # noqa: E402
from rlhf_studio.runner.monitor import MetricsReader  # noqa: E402
from rlhf_studio.runner.pipelines import PipelineRunner  # noqa: E402
from rlhf_studio.runner.runs import COMPLETED, RUNNING, create_run, finish_status, run_dir, update_status  # noqa: E402
from rlhf_studio.stages.dpo import DPOJobConfig  # noqa: E402
from rlhf_studio.ui.monitor_tab import MonitorTab  # noqa: E402
from rlhf_studio.ui.monitor_view import FigureCache  # noqa: E402
from rlhf_studio.workspace import Workspace  # noqa: E402

DATASET = "bench-preference"


def prepare(root: Path, history: int) -> Workspace:
    workspace = Workspace.at(root)
    cached = REPO / "workspace" / "models" / BUNDLED_FOLDER
    if (cached / "model.safetensors").is_file():
        shutil.copytree(cached, workspace.models_dir / BUNDLED_FOLDER)
    ensure_bundled_model(workspace)
    import_dataset(workspace, REPO / "assets" / "demo" / "preference.jsonl", DATASET)
    for index in range(history):
        run_id = create_run(workspace, DPOJobConfig(dataset=DATASET, max_steps=40))
        update_status(run_dir(workspace, run_id), started=time.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
        update_status(run_dir(workspace, run_id), summary={"eval_rewards/accuracies": 0.5 + index / 100})
        finish_status(run_dir(workspace, run_id), COMPLETED)
    return workspace


def start_dpo(jobs: JobManager, reader: MetricsReader, timeout: float = 900) -> str:
    config = DPOJobConfig(
        dataset=DATASET, model=BUNDLED_MODEL, max_steps=500, logging_steps=1, eval_on_start=False
    )
    run_id = jobs.submit(config)
    deadline = time.monotonic() + timeout
    while not reader.rows(run_dir(jobs.workspace, run_id)):
        status = jobs.status(run_id)
        if status.state not in ("queued", RUNNING) or time.monotonic() > deadline:
            raise SystemExit(f"the DPO run did not start training: {status.state} {status.message}")
        time.sleep(1)
    return run_id


def postprocess(updates: dict) -> None:
    """What Gradio does with a handler's outputs before sending them: each component's postprocess.

    (Gradio first applies the update's new choices to the session's copy of a dropdown; these bare
    components warn that the picked run is not among their build-time choices, which changes nothing.)
    """
    warnings.filterwarnings("ignore", message="The value passed into gr.Dropdown", category=UserWarning)
    for component, update in updates.items():
        if isinstance(component, gr.State):
            continue
        value = update.get("value") if isinstance(update, dict) else update
        if value is not None:
            component.postprocess(value)


def timed(handler, inputs: dict) -> tuple[float, dict]:
    """Milliseconds for one event: the handler and the postprocess of what it returns."""
    start = time.perf_counter()
    updates = handler(inputs)
    postprocess(updates)
    return (time.perf_counter() - start) * 1000, updates


def summary(name: str, values: list[float]) -> str:
    p95 = statistics.quantiles(values, n=20)[18]
    return f"{name:<28} p50 {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms   (n={len(values)})"


def training_processes() -> int:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return sum(1 for line in listing.splitlines() if "rlhf_studio train" in line)


def measure(view: MonitorTab, run_id: str, calls: int, interval: float) -> dict[str, list[float]]:
    picked = {view.run: run_id, view.overlay: [], view.x_axis: "step", view.smoothing: 0.0, view.extra: []}
    listing = {view.run: run_id, view.overlay: [], view.launched: {}, view.followed: None}
    drawn, listed = {}, None
    results: dict[str, list[float]] = {"tick refresh": [], "tick runs list": [], "charts rebuilt": []}
    for _ in range(calls):
        began = time.monotonic()
        elapsed, updates = timed(view.refresh, {**picked, view.drawn: drawn})
        drawn = updates[view.drawn]
        results["tick refresh"].append(elapsed)
        results["charts rebuilt"].append(float(any(plot in updates for plot in view.plots)))
        elapsed, updates = timed(view.refresh_runs, {**listing, view.listed: listed})
        listed = updates[view.listed]
        results["tick runs list"].append(elapsed)
        time.sleep(max(0.0, interval - (time.monotonic() - began)))
    results["cold refresh"] = []
    for _ in range(calls):
        view.figures = FigureCache()
        results["cold refresh"].append(timed(view.refresh, {**picked, view.drawn: {}})[0])
    results["JobManager.runs()"] = []
    results["cold runs list"] = []
    for _ in range(calls):
        start = time.perf_counter()
        view.runner.jobs.runs()
        results["JobManager.runs()"].append((time.perf_counter() - start) * 1000)
        results["cold runs list"].append(timed(view.refresh_runs, {**listing, view.listed: None})[0])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between timer ticks")
    parser.add_argument("--history", type=int, default=30, help="finished runs in the table besides the DPO")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ui-latency-"))
    os.environ["RLHF_STUDIO_HOME"] = str(root)
    workspace = prepare(root, args.history)
    jobs = JobManager(workspace)
    runner = PipelineRunner(jobs)
    reader = MetricsReader()
    with gr.Blocks():
        view = MonitorTab(runner, reader, gr.State({}))
    try:
        print(f"starting a DPO run on {BUNDLED_MODEL} ...", flush=True)
        run_id = start_dpo(jobs, reader)
        load_before, others = os.getloadavg(), training_processes()
        results = measure(view, run_id, args.calls, args.interval)
        status = jobs.status(run_id)
        rows = reader.rows(run_dir(workspace, run_id))
    finally:
        runner.shutdown()
        jobs.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nconditions: {os.cpu_count()} cores, load average {load_before[0]:.1f} before / "
          f"{os.getloadavg()[0]:.1f} after, {others} training processes on the machine (ours included), "
          f"{args.history + 1} runs in the table")  # fmt: skip
    print(f"the DPO run was {status.state} at the end, {len(rows)} metrics rows (step {rows[-1]['step']})")
    rebuilt = results.pop("charts rebuilt")
    print(f"ticks that rebuilt the charts (a new row had arrived): {int(sum(rebuilt))} of {len(rebuilt)}\n")
    for name, values in results.items():
        print(summary(name, values))
    ratio = statistics.median(results["cold refresh"]) / statistics.median(results["tick refresh"])
    print(f"\ncold / tick refresh at the median: {ratio:.1f}x")


if __name__ == "__main__":
    main()
