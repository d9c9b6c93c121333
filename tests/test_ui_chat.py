"""Chat tab in a real browser: three panes of tiny models answer one message, a vote is stored as preference
data and counted in the arena stats, blind mode reveals the names only after the vote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import chromium_page, needs_chromium, running_studio, screenshot
from playwright.sync_api import expect
from tiny_model import build_tiny_model_dir

from rlhf_studio.data import check_file

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
    page.get_by_text("Generation settings").click()
    page.get_by_label("Max new tokens").fill(str(max_new_tokens))
    page.locator("#chat-message textarea").fill(message)
    page.locator("#chat-send").click()
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
