"""The Data tab in a real browser: demo set detected, bad upload explained, dataset saved to the library."""

import json

import pytest
from browser import chromium_page, needs_chromium, running_studio, screenshot

pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("ui-data") / "workspace"
    root.mkdir()
    with running_studio(root, env={"RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}) as url:
        yield url, root


def pick_demo(page, name: str) -> None:
    page.get_by_label("…or pick a bundled demo set").click()
    page.get_by_role("option", name=name).click()


def test_demo_preference_set_is_detected_and_saved(studio):
    url, root = studio
    with chromium_page() as page:
        page.goto(url)
        pick_demo(page, "preference.jsonl")
        page.locator("#data-verdict").get_by_text("preference data").wait_for()
        assert "269 usable rows" in page.locator("#data-summary").inner_text()
        page.locator(".js-plotly-plot").first.wait_for()
        screenshot(page, "data-tab-demo")
        assert "Ahoy" in page.locator("#data-preview").inner_text()
        page.get_by_label("Dataset name").fill("demo-prefs")
        page.get_by_role("button", name="Save to library").click()
        page.locator("#data-saved").get_by_text("Saved").wait_for()
        assert "demo-prefs" in page.locator("#data-library").inner_text()
    manifest = json.loads((root / "datasets" / "demo-prefs" / "manifest.json").read_text())
    assert (manifest["kind"], manifest["rows_total"]) == ("preference", 269)


def test_bad_upload_is_explained_without_a_traceback(studio, tmp_path):
    url, _ = studio
    page_file = tmp_path / "prefs.jsonl"
    page_file.write_text("<!DOCTYPE html><html><body>Not found</body></html>\n")
    with chromium_page() as page:
        page.goto(url)
        page.locator("input[type=file]").first.set_input_files(str(page_file))
        verdict = page.locator("#data-verdict")
        verdict.get_by_text("Refused").wait_for()
        text = page.inner_text("body")
        assert "wrong file type" in text and "line 1" in text
        assert "Traceback" not in text
        screenshot(page, "data-tab-refused")
