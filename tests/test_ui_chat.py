"""Chat tab in a real browser: three panes of tiny models answer one message, a vote is stored as preference
data and counted in the arena stats, blind mode reveals the names only after the vote, and thumbs under the
replies become unpaired rows that a KTO run trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import chromium_page, needs_chromium, running_studio, screenshot
from playwright.sync_api import expect
from test_training_common import read_metrics, tiny_config
from tiny_model import build_tiny_model_dir

from rlhf_studio.data import check_file
from rlhf_studio.stages.kto import KTOJobConfig
from rlhf_studio.training import run_stage
from rlhf_studio.workspace import Workspace

REPLY_MS = 120_000


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("ui-chat") / "workspace"
    root.mkdir()
    other = build_tiny_model_dir(tmp_path_factory.mktemp("tiny-other"), seed=1)
    third = build_tiny_model_dir(tmp_path_factory.mktemp("tiny-third"), seed=2)
    with running_studio(root, env={"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}) as url:
        yield url, root, other, third


def pick(page, letter: str, model: str) -> None:
    field = page.locator(f"#chat-model-{letter} input")
    field.fill(model)
    field.press("Enter")


def pane_replies(page) -> list[str]:
    """The last assistant message of each visible pane."""
    return page.evaluate(
        "() => ['a', 'b', 'c'].map(l => { const bot = document.querySelector(`#chat-pane-${l}`);"
        " const replies = bot ? bot.querySelectorAll('.message.bot, [data-testid=bot]') : [];"
        " return replies.length ? replies[replies.length - 1].innerText.trim() : ''; })"
    )


def send(page, message: str, max_new_tokens: int) -> None:
    """Send one message to every pane and wait until the round is done."""
    if not page.get_by_label("Max new tokens").is_visible():
        page.get_by_text("Generation settings").click()
    page.get_by_label("Max new tokens").fill(str(max_new_tokens))
    page.locator("#chat-message textarea").fill(message)
    page.locator("#chat-send").click()
    expect(page.locator("#chat-message textarea")).to_have_value("")  # the round began: status reset
    expect(page.locator("#chat-status")).to_contain_text("Done", timeout=REPLY_MS)


@pytest.mark.slow
@needs_chromium
def test_three_panes_answer_and_a_vote_becomes_preference_data(studio):
    url, root, other, third = studio
    with chromium_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Chat").click()
        expect(page.locator("#chat-model-a input")).not_to_have_value("")
        pick(page, "b", str(other))
        pick(page, "c", str(third))
        send(page, "Say something nice.", max_new_tokens=12)
        replies = pane_replies(page)
        assert all(replies), replies  # every pane wrote a reply
        screenshot(page, "chat-tab-replies")

        page.locator("#chat-vote-best-a").click()
        expect(page.locator("#chat-vote-message")).to_contain_text("2 preference pair(s) added to")
        expect(page.locator("#chat-stats")).to_contain_text(str(other))
        screenshot(page, "chat-tab-voted")
        page.locator("#chat-export").click()
        link = page.locator("#chat-exported a").first
        expect(link).to_have_attribute("download", "arena-votes.jsonl")
        with page.expect_download() as download:
            link.click()
        exported = Path(download.value.path()).read_text().splitlines()
        assert len(exported) == 2 and {"prompt", "chosen", "rejected"} <= set(json.loads(exported[0]))

    votes = (root / "arena" / "votes.jsonl").read_text().splitlines()
    assert len(votes) == 1 and json.loads(votes[0])["kind"] == "best"
    report = check_file(root / "datasets" / "arena-votes" / "train.jsonl")
    assert report.kind == "preference" and report.usable == 2


@pytest.mark.slow
@needs_chromium
def test_blind_mode_hides_the_names_until_the_vote(studio):
    url, root, other, _ = studio
    with chromium_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Chat").click()
        page.locator("#chat-count").get_by_text("2", exact=True).click()
        pick(page, "b", str(other))
        page.locator("#chat-blind input").check()
        send(page, "Hello?", max_new_tokens=6)
        panes = page.locator("#chat-pane-a, #chat-pane-b")
        expect(panes.first).to_contain_text("Model A")
        assert str(other) not in page.locator("#chat-pane-a").inner_text()
        assert str(other) not in page.locator("#chat-pane-b").inner_text()
        page.locator("#chat-vote-tie").click()
        expect(page.locator("#chat-vote-message")).to_contain_text(str(other))
        expect(page.locator("#chat-vote-message")).to_contain_text("0 preference pair(s)")


@pytest.mark.slow
@needs_chromium
def test_thumbs_become_unpaired_rows_that_kto_trains_on(studio, tiny_model_dir):
    url, root, other, _ = studio
    with chromium_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Chat").click()
        page.locator("#chat-count").get_by_text("2", exact=True).click()
        expect(page.locator("#chat-thumb-up-c")).to_be_hidden()
        pick(page, "b", str(other))
        page.locator("#chat-blind input").check()
        message = page.locator("#chat-thumb-message")
        page.locator("#chat-thumb-up-a").click()  # no reply yet
        expect(message).to_have_text("⚠ Send a message first: there is no reply to rate.")
        for round_message in ("Hello?", "Tell me more."):
            send(page, round_message, max_new_tokens=6)
            expect(message).to_have_text("")  # a new round starts without the last round's thumbs
            page.locator("#chat-thumb-up-a").click()
            expect(message).to_contain_text("👍 on pane A (model")
            page.locator("#chat-thumb-down-b").click()
            expect(message).to_contain_text("👎 on pane B (model")
        expect(message).to_contain_text("1 row added to arena-feedback (4 rows)")
        replies = pane_replies(page)
        assert all(replies[:2]), replies
        shown = message.inner_text()
        assert str(other) in shown or str(tiny_model_dir) in shown  # the thumb revealed the model
        page.locator("#chat-thumb-down-b").click()
        expect(message).to_contain_text("⚠ Pane B's reply already has a 👎: send another message")
        assert pane_replies(page) == replies  # a refusal leaves the panes as they were
        screenshot(page, "chat-tab-thumbs")

    rows = [
        json.loads(line)
        for line in (root / "datasets" / "arena-feedback" / "train.jsonl").read_text().splitlines()
    ]
    assert [row["label"] for row in rows] == [True, False, True, False]
    assert rows[0]["metadata"]["blind"] and not rows[1]["metadata"]["blind"]
    assert rows[2]["prompt"][-1] == {"role": "user", "content": "Tell me more."}
    report = check_file(root / "datasets" / "arena-feedback" / "train.jsonl")
    assert (report.kind, report.usable, report.dropped) == ("unpaired_preference", 4, 0)

    workspace = Workspace.at(root)
    config = tiny_config(
        KTOJobConfig, tiny_model_dir, "arena-feedback", max_steps=2, per_device_train_batch_size=2
    )
    run_stage(config, workspace.runs_dir / "kto-from-thumbs", workspace)
    metrics = read_metrics(workspace.runs_dir / "kto-from-thumbs")
    assert [row["step"] for row in metrics if "loss" in row] == [1, 2]
