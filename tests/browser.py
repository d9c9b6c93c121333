"""Start the real app in a child process and drive it with Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
REPO = Path(__file__).resolve().parent.parent

# What a page shows after a server round trip (a tab's refresh, a picker filled in) can take well over
# Playwright's default 5 s on a busy 2-core machine; a check that must fail still fails, only later.
EXPECT_TIMEOUT_MS = 30_000

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_studio(workspace_root: Path, extra_args: tuple[str, ...] = (), env: dict | None = None):
    """Yield the URL of a freshly started app; stop it afterwards whatever happened."""
    port = free_port()
    environment = {
        **os.environ,
        "RLHF_STUDIO_HOME": str(workspace_root),
        "RLHF_STUDIO_TRAINING_LOCK": str(workspace_root.parent / "training.lock"),  # the test's own
        "HF_HUB_OFFLINE": "1",
        **(env or {}),
    }
    log_path = workspace_root.parent / f"app-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), *extra_args],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited early:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"app did not answer within {timeout} s:\n{log_path.read_text()[-3000:]}")


def patient_expect() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@contextmanager
def chromium_page():
    from playwright.sync_api import sync_playwright

    patient_expect()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def stop_leftover_runs(root: Path) -> None:
    """Trainings are separate processes that outlive the app: end any a test left queued or running."""
    from rlhf_studio.runner.processes import stop_detached
    from rlhf_studio.runner.runs import ACTIVE_STATES, RunError, read_status
    from rlhf_studio.workspace import Workspace

    workspace = Workspace.at(root)
    for folder in workspace.runs_dir.iterdir():
        status = read_status(folder)
        if status is not None and status.state in ACTIVE_STATES:
            try:
                stop_detached(workspace, status.run_id)
            except RunError:
                pass
