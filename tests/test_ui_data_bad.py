"""Bad files in the Data tab: the reason is shown (line, field, why), saving is refused in one sentence,
and the tab keeps working for the next file. Through the tab's handlers, and once in a real browser (slow)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from browser import chromium_page, needs_chromium, running_studio, screenshot

from rlhf_studio.ui.data_tab import AUTO, DEMO_DIR, check_and_show, save_dataset

BAD = Path(__file__).parent / "data" / "bad"


def test_the_tab_shows_why_and_keeps_working(workspace):
    verdict, summary, problems, preview, _, rows = check_and_show(str(BAD / "png_image.jsonl"), AUTO, "")
    assert (
        verdict == "**Refused:** png_image.jsonl: line 1: wrong file type (not JSON Lines: it is a PNG image)"
    )
    assert (rows, preview.empty, problems.to_dict("records")[0]["line"]) == ([], True, 1)

    verdict, _, _, _, _, _ = check_and_show(str(BAD / "no_known_columns.jsonl"), AUTO, "")
    assert verdict.startswith(
        "**Refused:** no_known_columns.jsonl: columns found: question, answer; they match no"
    )

    verdict, summary, problems, preview, _, rows = check_and_show(
        str(BAD / "messages_wrong_order.jsonl"), AUTO, ""
    )
    assert verdict.startswith("**Detected: messages**") and len(rows) == 1
    assert "**1 usable rows** from 5 records; **4 dropped**" in summary and "- wrong order: 4" in summary
    shown = problems[["line", "field", "reason"]].values.tolist()
    assert shown == [[2, "messages[0].role", "wrong order"], [3, "messages[1].role", "wrong order"]] + [
        [4, "messages[1].role", "wrong order"],
        [5, "messages[2].role", "wrong order"],
    ]

    with pytest.raises(gr.Error) as refused:
        save_dataset(workspace, str(BAD / "utf16le_no_bom.jsonl"), AUTO, "", "utf16", 0.1, 0)
    assert "\n" not in str(refused.value) and "UTF-16 text without a byte-order mark" in str(refused.value)
    assert not (workspace.datasets_dir / "utf16").exists()

    verdict, _, _, _, _, rows = check_and_show(str(DEMO_DIR / "preference.jsonl"), AUTO, "")
    assert verdict.startswith("**Detected: preference**") and len(rows) == 269


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("ui-data-bad") / "workspace"
    root.mkdir()
    with running_studio(root, env={"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}) as url:
        yield url


@pytest.mark.slow
@needs_chromium
def test_bad_uploads_in_a_browser(studio):
    uploads = [
        ("utf16le_no_bom.jsonl", "Refused", "UTF-16 text without a byte-order mark"),
        ("random_bytes.jsonl", "Refused", "binary data"),
        ("rankings_ties.jsonl", "Detected: scored_rankings", "equal scores"),
    ]
    with chromium_page() as page:
        for name, verdict, reason in uploads:  # one server, a fresh page per upload (the file box holds one)
            page.goto(studio)
            page.locator("input[type=file]").first.set_input_files(str(BAD / name))
            page.locator("#data-verdict").get_by_text(verdict).wait_for()
            page.get_by_text(reason).first.wait_for()
            assert "Traceback" not in page.inner_text("body")
        screenshot(page, "data-tab-bad-rankings")
        page.get_by_label("…or pick a bundled demo set").click()
        page.get_by_role("option", name="preference.jsonl").click()
        page.locator("#data-summary").get_by_text("269 usable rows").wait_for()
        assert "Detected: preference —" in page.locator("#data-verdict").inner_text()
