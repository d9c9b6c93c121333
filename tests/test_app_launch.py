"""Launch defaults of the real app: localhost only, uploads capped, no share link."""

import urllib.error
import urllib.request
import uuid

import pytest
from browser import running_studio

from rlhf_studio.ui import launch_options

pytestmark = pytest.mark.slow


def test_launch_options_are_safe_by_default():
    options = launch_options("127.0.0.1", 7860, 500)
    assert options["server_name"] == "127.0.0.1"
    assert options["share"] is False and options["show_error"] is False
    assert options["max_file_size"] == "500mb"


def upload(url: str, size: int) -> int:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.jsonl"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"x" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_uploads_over_the_limit_are_refused(tmp_path):
    root = tmp_path / "workspace"
    root.mkdir()
    with running_studio(root, extra_args=("--max-upload-mb", "1")) as url:
        assert url.startswith("http://127.0.0.1:")
        assert upload(url, 1000) == 200
        assert upload(url, 1024 * 1024 + 1) == 413
