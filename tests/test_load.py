"""Load and concurrency against the real app (tests/browser.py starts app.py; tiny models, the test's own
training lock).

- Two browser sessions press Start at the same moment: exactly one trains, the other waits and shows its
  place in the queue; it starts only once the first has ended.
- Twelve chat sessions while a job trains: ten API sessions plus two real Chromium pages. Every session
  gets its replies (or a sentence saying the studio is busy) within a bound, and the app's memory stays
  bounded: the shared ModelCache holds each model once, however many sessions chat with it.

Why ten API sessions and two pages, not ten pages: the API sessions are what a page does over the wire
(gradio_client joins the same queue with its own session hash and reads the same event stream), so the
server sees twelve concurrent chat sessions either way, while ten Chromium renderers of the whole app
would compete with the training job for this machine's two cores and time the browser, not the studio.
The two pages show that the browser path works under that load.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    needs_chromium,
    patient_expect,
    running_studio,
    screenshot,
    stop_leftover_runs,
)
from playwright.sync_api import expect
from test_security import chat_round, replies
from tiny_model import build_tiny_model_dir

from rlhf_studio.data import import_dataset
from rlhf_studio.runner.runs import ACTIVE_STATES, COMPLETED, QUEUED, RUNNING, read_status
from rlhf_studio.workspace import Workspace

pytestmark = [pytest.mark.slow, needs_chromium]

DEMO_PREFERENCES = REPO / "assets" / "demo" / "preference.jsonl"
TRAINING_MS = 240_000
REPLY_SECONDS = 150  # every chat session has its replies by then, or the test fails: no hang
API_SESSIONS = 10
BUSY = re.compile(r"busy|queue is full|try again", re.IGNORECASE)


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("load")
    root = base / "workspace"
    workspace = Workspace.at(root)
    import_dataset(workspace, DEMO_PREFERENCES, "demo-prefs")
    other = build_tiny_model_dir(base / "tiny-other", seed=1)
    try:
        with running_studio(root, env={"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}) as url:
            yield url, root, [str(tiny_model_dir), str(other)]
    finally:
        stop_leftover_runs(workspace.root)


def run_states(root: Path) -> dict[str, str]:
    return {
        folder.name: read_status(folder).state for folder in (root / "runs").iterdir() if read_status(folder)
    }


def app_rss_mib(url: str) -> float:
    """Resident memory of the app process serving `url` (found by its --port argument)."""
    port = str(urlsplit(url).port).encode()
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"app.py" in args and b"--port" in args and port in args:
            status = (proc / "status").read_text()
            return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    raise AssertionError(f"no app process on port {port.decode()}")


def choose_dpo(page, max_steps: int) -> None:
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-stage").get_by_role("radio", name="DPO", exact=True).check()
    expect(page.locator("#train-data-dpo input")).to_have_value("demo-prefs")
    page.locator("#setting-max-steps input").fill(str(max_steps))
    page.locator("#setting-max-length input").fill("64")


def click_together(pages, selector: str) -> None:
    """Click `selector` in every page at the same moment: each page sets a timer for one shared instant."""
    at = pages[0].evaluate("() => Date.now()") + 1500
    for page in pages:
        page.evaluate(
            "([selector, at]) => setTimeout(() => document.querySelector(selector).click(), at - Date.now())",
            [selector, at],
        )
    pages[0].wait_for_timeout(1700)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        patient_expect()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str):
    """A page in a context of its own: its own cookies and Gradio session, as a second browser."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def test_two_sessions_press_start_together_one_trains_one_waits_its_turn(studio, browser):
    url, root, _ = studio
    pages = [open_page(browser, url) for _ in range(2)]
    for page in pages:
        choose_dpo(page, max_steps=2)
    before = set(run_states(root))
    click_together(pages, "#train-start")
    for page in pages:
        expect(page.locator("#train-message")).to_contain_text("Started")
    runs = sorted(set(run_states(root)) - before)
    assert len(runs) == 2, runs

    queued_page = None
    for _ in range(TRAINING_MS // 500):  # the moment both are known: one running, one queued behind it
        states = {run: run_states(root)[run] for run in runs}
        if sorted(states.values()) == [QUEUED, RUNNING]:
            break
        pages[0].wait_for_timeout(500)
    else:
        raise AssertionError(f"never one running and one queued: {states}")
    first = next(run for run, state in states.items() if state == RUNNING)
    second = next(run for run in runs if run != first)
    for page in pages:  # each page shows what it started: the queued one its place and who is ahead
        text = page.locator("#train-status").inner_text()
        if second in text:
            queued_page = page
    assert queued_page is not None
    expect(queued_page.locator("#train-status")).to_contain_text(f"Queued: starts next, after run {first}")
    screenshot(queued_page, "load-start-queued")

    for _ in range(TRAINING_MS // 500):
        states = run_states(root)
        assert not (states[first] == RUNNING and states[second] == RUNNING), "two trainings at once"
        if states[first] not in ACTIVE_STATES and states[second] not in ACTIVE_STATES:
            break
        pages[0].wait_for_timeout(500)
    statuses = {run: read_status(root / "runs" / run) for run in runs}
    assert {status.state for status in statuses.values()} == {COMPLETED}, statuses
    assert statuses[second].started >= statuses[first].ended  # it waited for the first to end
    expect(queued_page.locator("#train-status")).to_contain_text("completed", timeout=30_000)


# -- chat under load


def chat_session(url: str, models: list[str], message: str, outcomes: list, index: int) -> None:
    """One API session sends one message; records ("replied", replies) or ("busy", sentence) or the error."""
    from gradio_client import Client

    try:
        values = chat_round(Client(url, verbose=False), models, message, max_new_tokens=8)
        warnings = [str(value) for value in values if "⚠" in str(value)]
        outcomes[index] = ("replied", replies(values)) if not warnings else ("pane error", warnings)
    except Exception as error:  # every outcome is recorded and judged by the test
        outcomes[index] = ("busy", str(error)) if BUSY.search(str(error)) else ("error", repr(error))


def page_chat(page, models: list[str], message: str) -> None:
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-count").get_by_text("2", exact=True).click()
    for letter, model in zip("ab", models, strict=True):
        field = page.locator(f"#chat-model-{letter} input")
        field.fill(model)
        field.press("Enter")
    page.get_by_text("Generation settings").click()
    page.get_by_label("Max new tokens").fill("8")
    page.locator("#chat-message textarea").fill(message)
    page.locator("#chat-send").click()


def page_replies(page) -> list[str]:
    return page.evaluate(
        "() => ['a', 'b'].map(l => { const bot = document.querySelector(`#chat-pane-${l}`);"
        " const replies = bot ? bot.querySelectorAll('.message.bot, [data-testid=bot]') : [];"
        " return replies.length ? replies[replies.length - 1].innerText.trim() : ''; })"
    )


def test_twelve_chat_sessions_while_a_job_trains_all_answer_in_bounded_time_and_memory(studio, browser):
    url, root, models = studio
    trainer, watcher = open_page(browser, url), open_page(browser, url)
    choose_dpo(trainer, max_steps=100_000)
    trainer.locator("#train-start").click()
    expect(trainer.locator("#train-status")).to_contain_text(re.compile(r"step [1-9]"), timeout=TRAINING_MS)

    warm = [None]
    chat_session(url, models, "Warm up.", warm, 0)  # loads both models into the shared cache
    assert warm[0][0] == "replied", warm
    memory_before = app_rss_mib(url)

    outcomes: list = [None] * API_SESSIONS
    threads = [
        threading.Thread(target=chat_session, args=(url, models, f"Hello number {index}.", outcomes, index))
        for index in range(API_SESSIONS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for page, message in ((trainer, "Hi from page one."), (watcher, "Hi from page two.")):
        page_chat(page, models, message)
    for thread in threads:
        thread.join(timeout=max(1.0, REPLY_SECONDS - (time.monotonic() - started)))
    assert not any(thread.is_alive() for thread in threads), f"sessions still waiting: {outcomes}"
    for page in (trainer, watcher):
        remaining = max(1.0, REPLY_SECONDS - (time.monotonic() - started))
        page.wait_for_function(
            "() => ['a', 'b'].every(l => { const bot = document.querySelector(`#chat-pane-${l}`);"
            " const r = bot ? bot.querySelectorAll('.message.bot, [data-testid=bot]') : [];"
            " return r.length && r[r.length - 1].innerText.trim(); })",
            timeout=remaining * 1000,
        )
        expect(page.locator("#chat-status")).to_contain_text("Training is running")
        assert all(page_replies(page)), page_replies(page)
    elapsed = time.monotonic() - started
    screenshot(watcher, "load-chat-while-training")

    kinds = [outcome[0] for outcome in outcomes]
    assert set(kinds) <= {"replied", "busy"}, outcomes
    assert all(len(outcome[1]) >= 2 for outcome in outcomes if outcome[0] == "replied"), outcomes
    assert kinds.count("replied") >= 1
    memory_after = app_rss_mib(url)
    # Twelve sessions on the same two models: the cache holds each once, and what a session adds (its
    # ChatArena and messages) is small. A tiny model is ~100 KB, so a duplicated one would not show here:
    # tests/test_chat_cache.py tests the cache's sharing and budget; this bounds growth per session.
    assert memory_after - memory_before < 100, (memory_before, memory_after)
    assert RUNNING in run_states(root).values()  # the job trained all along
    print(
        f"\n{kinds.count('replied')}/{API_SESSIONS} API sessions and 2 pages answered in {elapsed:.0f} s "
        f"while training; app RSS {memory_before:.0f} -> {memory_after:.0f} MiB"
    )
    trainer.get_by_role("tab", name="Train").click()
    trainer.locator("#train-stop").click()
    expect(trainer.locator("#train-status")).to_contain_text("cancelled", timeout=60_000)
