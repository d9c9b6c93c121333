"""Security probes against the real app (tests/browser.py starts app.py in a child process) and the engine.

- Gradio's file routes (`/gradio_api/file=`, the older `/gradio_api/file/`, `/static`, `/assets`,
  `/gradio_api/custom_component`, `/gradio_api/proxy=`) refuse traversal, encoded traversal, absolute paths,
  backslashes, case tricks, symlinks out of Gradio's cache and URLs: never the file, always 4xx. What the
  app hands out (the votes JSONL, an exported model zip) is served from Gradio's cache only, also when the
  workspace lies outside the working directory and the temp folder (a Space's /data disk).
- A browser page on another site cannot upload, join the queue, call an endpoint, sign in or read the
  config (403); a DNS-rebinding name cannot reach a local app without login (400). Same-origin requests and
  requests without Origin (curl, gradio_client) pass.
- Uploads: exactly the limit passes, one byte more is refused (413).
- A model folder that asks to run its own code is refused by the real app unless it was started with
  --trust-remote-code (the engine's loaders and handlers: test_model_traps.py).
- With login on, what tests/test_access.py does not cover: export, upload and cached files over HTTP.
- Gradio's pin carries the fixes of its published advisories (or the studio mitigates the one it does not).

The app's temp folder is the test's own (TMPDIR), so that the workspace lies outside it, and the files
Gradio caches stay with the test.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from urllib.parse import quote, urlsplit

import gradio as gr
import pytest
from browser import REPO, running_studio
from packaging.version import Version
from test_model_traps import remote_code_folder

from rlhf_studio.data import import_dataset
from rlhf_studio.runner.runs import COMPLETED, create_run, finish_status, run_dir
from rlhf_studio.stages.sft import SFTJobConfig
from rlhf_studio.ui import launch_options
from rlhf_studio.ui.access import LOCAL_HOSTS, SameOriginOnly, access_policy, same_origin
from rlhf_studio.workspace import Workspace

DEMO_PREFERENCES = REPO / "assets" / "demo" / "preference.jsonl"
SECRET = f"studio-secret-{secrets.token_hex(8)}"  # in files the app must never serve
NEVER_SERVED = [SECRET.encode(), b"root:x:0:0", b"RLHF Studio in the browser"]  # + /etc/passwd, app.py
MIB = 1024 * 1024


# -- talking HTTP without a client that tidies the request up


def raw(url: str, method: str, target: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) for exactly this request target: http.client neither normalises `..` nor
    re-encodes, and sends the Host header given here if any."""
    parsed = urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        headers = {}
        for key, value in response.getheaders():  # repeated headers (Set-Cookie) one a line
            headers[key.lower()] = f"{headers[key.lower()]}\n{value}" if key.lower() in headers else value
        return response.status, headers, response.read()
    finally:
        connection.close()


def multipart(size: int, filename: str) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def api_name(client, prefix: str, label: str) -> str:
    """The endpoint whose name starts with `prefix` and that takes an input labelled `label` (Gradio numbers
    repeated handler names in build order)."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name, info in endpoints.items():
        if name.startswith(prefix) and any(p.get("label") == label for p in info["parameters"]):
            return name
    raise AssertionError(f"no endpoint {prefix}* with an input {label!r}: {sorted(endpoints)}")


def chat_args(client, models: list[str], message: str, max_new_tokens: int) -> list:
    """The Chat tab's Send inputs in the API's order, found by their labels."""
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/on_send"]
    values = {"Panes": len(models), "Max new tokens": max_new_tokens, "Reward model (optional)": ""}
    values.update({f"Pane {letter}": model for letter, model in zip("ABC", models, strict=False)})
    args = []
    for parameter in endpoint["parameters"]:
        label = parameter.get("label")
        if label in values:
            args.append(values[label])
        elif parameter["component"] == "Textbox" and label != "System prompt":
            args.append(message)  # the message box has no label
        else:
            args.append(parameter.get("parameter_default"))
    return args


def chat_round(client, models: list[str], message: str = "Hello?", max_new_tokens: int = 6) -> list:
    """Send one message through the API; every value the handler streamed back."""
    job = client.submit(*chat_args(client, models, message, max_new_tokens), api_name="/on_send")
    job.result(timeout=180)
    return [value for output in job.outputs() for value in output]


def unwrap(value):
    """A component's value, also when the handler sent gr.update(value=...)."""
    if isinstance(value, dict) and value.get("__type__") == "update":
        return value.get("value")
    return value


def replies(values: list) -> list[str]:
    return [
        str(message["content"])
        for value in map(unwrap, values)
        if isinstance(value, list)
        for message in value
        if isinstance(message, dict) and message.get("role") == "assistant" and message.get("content")
    ]


# -- the real app: file routes, origins, uploads, what it serves


@dataclass
class Studio:
    url: str
    root: Path
    run_id: str
    cache: Path  # Gradio's cache and upload folder of the app

    @property
    def port(self) -> int:
        return urlsplit(self.url).port


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("security")
    root, app_tmp = base / "workspace", base / "app-tmp"
    app_tmp.mkdir()
    workspace = Workspace.at(root)
    (root / "secret.txt").write_text(SECRET)
    run_id = create_run(workspace, SFTJobConfig(model=str(tiny_model_dir), dataset="arena-votes"))
    shutil.copytree(tiny_model_dir, run_dir(workspace, run_id) / "model")
    with open(run_dir(workspace, run_id) / "config.yaml", "a") as config:
        config.write(f"# {SECRET}\n")
    finish_status(run_dir(workspace, run_id), COMPLETED)
    import_dataset(workspace, DEMO_PREFERENCES, "arena-votes")
    cache = app_tmp / "gradio"
    links = cache / "probe-links"
    links.mkdir(parents=True)
    (links / "passwd").symlink_to("/etc/passwd")
    (links / "secret.txt").symlink_to(root / "secret.txt")
    env = {"TMPDIR": str(app_tmp), "RLHF_STUDIO_DEFAULT_MODEL": str(tiny_model_dir)}
    with running_studio(root, extra_args=("--max-upload-mb", "1"), env=env) as url:
        yield Studio(url=url, root=root, run_id=run_id, cache=cache.resolve())


UP = "../" * 8
FILE_PROBES = [  # request targets; {…} filled in from the running studio
    f"/gradio_api/file={UP}etc/passwd",
    "/gradio_api/file=" + quote(f"{UP}etc/passwd", safe=""),
    "/gradio_api/file=" + "%2e%2e%2f" * 8 + "etc%2fpasswd",
    "/gradio_api/file=" + "%252e%252e%252f" * 8 + "etc%252fpasswd",
    "/gradio_api/file=..%c0%af..%c0%af..%c0%afetc/passwd",
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file=%2Fetc%2Fpasswd",
    "/gradio_api/file=//etc/passwd",
    "/gradio_api/file=/ETC/PASSWD",
    "/gradio_api/file=/etc/passwd%00.png",
    "/gradio_api/file=file:///etc/passwd",
    "/gradio_api/file=" + "..\\" * 8 + "etc\\passwd",
    "/gradio_api/file=" + "..%5c" * 8 + "etc%5cpasswd",
    "/gradio_api/file={cache}/" + UP + "etc/passwd",
    "/gradio_api/file={cache}/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file={cache}/probe-links/passwd",
    "/gradio_api/file={cache}/probe-links/secret.txt",
    "/gradio_api/file={root}/secret.txt",
    "/gradio_api/file={root}/runs/{run_id}/config.yaml",
    "/gradio_api/file={root}/runs/{run_id}/model/config.json",
    "/gradio_api/file={ROOT_UPPER}/secret.txt",
    "/gradio_api/file=app.py",
    "/gradio_api/file=./app.py",
    "/gradio_api/file=rlhf_studio/../app.py",
    "/gradio_api/file={repo}/app.py",
    "/gradio_api/file={repo}/.git/config",
    "/gradio_api/FILE=/etc/passwd",
    "/GRADIO_API/file=/etc/passwd",
    f"/gradio_api/file/{UP}etc/passwd",
    "/gradio_api/file//etc/passwd",
    "/gradio_api/file/" + "%2e%2e%2f" * 8 + "etc/passwd",
    "/file=/etc/passwd",
    f"/static/{UP}etc/passwd",
    "/static/" + "..%2f" * 8 + "etc%2fpasswd",
    "/static//etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/assets/" + "..%2f" * 8 + "etc%2fpasswd",
    "/assets//etc/passwd",
    "/gradio_api/custom_component/x/client/" + "..%2f" * 8 + "/etc/passwd",
    "/gradio_api/file=http://127.0.0.1:{port}/gradio_api/file={root}/secret.txt",
    "/gradio_api/proxy=http://127.0.0.1:{port}/config",
    "/gradio_api/run-history/buckets",
    "/gradio_api/runs",
]


@pytest.mark.slow
@pytest.mark.parametrize("probe", FILE_PROBES)
def test_file_routes_refuse_what_the_app_did_not_hand_out(studio, probe):
    target = probe.format(
        cache=studio.cache,
        root=studio.root,
        ROOT_UPPER=str(studio.root).upper(),
        run_id=studio.run_id,
        repo=REPO,
        port=studio.port,
    )
    status, _, body = raw(studio.url, "GET", target)
    assert 400 <= status < 500, (target, status, body[:200])
    assert not any(secret in body for secret in NEVER_SERVED), (target, body[:200])


@pytest.mark.slow
def test_downloads_are_served_from_gradio_cache_only(studio):
    """The votes JSONL and an exported model zip reach the browser through Gradio's cache, not through the
    workspace: the workspace here lies outside the working directory and the app's temp folder, as on a
    Space's /data disk, where Gradio would refuse to serve the zip from the workspace."""
    from gradio_client import Client

    client = Client(studio.url, download_files=False, verbose=False)
    votes = unwrap(
        client.predict("arena-votes", api_name=api_name(client, "/on_export", "Votes go to dataset"))
    )
    client.predict(None, api_name=api_name(client, "/on_open", "Finished run"))  # the tab lists the run
    exported = client.predict(f"run:{studio.run_id}", api_name=api_name(client, "/on_export", "Finished run"))
    zip_file = next(unwrap(value) for value in exported if isinstance(unwrap(value), dict))
    for served, name in ((votes, "arena-votes.jsonl"), (zip_file, f"{studio.run_id}.zip")):
        path = Path(served["path"])
        assert path.name == name and path.is_relative_to(studio.cache), path
        assert not path.is_relative_to(studio.root)
        status, _, body = raw(studio.url, "GET", "/gradio_api/file=" + quote(str(path)))
        assert status == 200, (path, body[:200])
        assert body == path.read_bytes()
    rows = [json.loads(line) for line in Path(votes["path"]).read_text().splitlines()]
    assert rows and {"prompt", "chosen", "rejected"} <= set(rows[0])
    archive = zipfile.ZipFile(Path(zip_file["path"]))
    assert f"{studio.run_id}/model.safetensors" in archive.namelist()
    kept = studio.root / "runs" / studio.run_id / "export" / f"{studio.run_id}.zip"
    assert kept.is_file()  # the workspace keeps its zip; only Gradio's cache serves it
    status, _, _ = raw(studio.url, "GET", "/gradio_api/file=" + quote(str(kept)))
    assert status == 403


CROSS_ORIGINS = ["https://evil.example", "null", "http://127.0.0.1:1", "http://localhost.evil.example:{port}"]


def acting_requests(upload_name: str) -> dict[str, tuple]:
    """name -> (method, target, body, headers) of requests that do something, and a read of the config."""
    upload, content_type = multipart(10, upload_name)
    as_json = {"Content-Type": "application/json"}
    call = json.dumps({"data": [None]}).encode()
    join = json.dumps({"fn_index": 0, "data": [], "session_hash": "probe"}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return {
        "upload": ("POST", "/gradio_api/upload", upload, {"Content-Type": content_type}),
        "queue/join": ("POST", "/gradio_api/queue/join", join, as_json),
        "call": ("POST", "/gradio_api/call/on_resume", call, as_json),
        "run": ("POST", "/gradio_api/run/on_resume", call, as_json),
        "login": ("POST", "/login", b"username=a&password=b", form),
        "config": ("GET", "/config", None, {}),
    }


@pytest.mark.slow
def test_requests_from_other_sites_are_refused_and_the_own_pages_pass(studio):
    """Gradio's own CORS middleware answers preflights before the check (it allows no foreign origin on a
    localhost Host); the request itself is what the check refuses, on any Host."""
    uploads = {"refused": [], "passed": []}
    for origin in [*CROSS_ORIGINS, studio.url, None]:  # None: curl, gradio_client
        origin = origin and origin.format(port=studio.port)
        verdict = "passed" if origin in (studio.url, None) else "refused"
        uploads[verdict].append(f"probe-{secrets.token_hex(4)}.jsonl")
        for name, (method, target, body, headers) in acting_requests(uploads[verdict][-1]).items():
            sent = {**headers, **({"Origin": origin} if origin else {})}
            status, _, text = raw(studio.url, method, target, body, sent)
            if verdict == "refused":
                assert status == 403 and b"another site" in text, (name, origin, status, text[:200])
            else:
                assert status < 400, (name, origin, status, text[:200])
    cached = {path.name for path in studio.cache.rglob("probe-*.jsonl")}
    assert set(uploads["passed"]) <= cached and not set(uploads["refused"]) & cached
    assert len(uploads["refused"]) == len(CROSS_ORIGINS)


@pytest.mark.slow
def test_a_local_studio_without_login_answers_only_to_local_names(studio):
    """A DNS-rebinding page (its own name now pointing at 127.0.0.1) sends matching Host and Origin."""
    rebound = f"rebind.example:{studio.port}"
    for method, target in (("GET", "/config"), ("POST", "/gradio_api/call/on_resume")):
        headers = {"Host": rebound, "Origin": f"http://{rebound}", "Content-Type": "application/json"}
        status, _, text = raw(studio.url, method, target, b'{"data": [null]}', headers)
        assert status == 400 and b"answers only to localhost" in text, (target, status, text[:200])
    for host in (f"localhost:{studio.port}", f"127.0.0.1:{studio.port}", f"[::1]:{studio.port}"):
        assert raw(studio.url, "GET", "/config", headers={"Host": host})[0] == 200, host


@pytest.mark.slow
def test_uploads_of_exactly_the_limit_pass_and_one_byte_more_is_refused(studio):
    body, content_type = multipart(MIB, "limit.jsonl")
    assert raw(studio.url, "POST", "/gradio_api/upload", body, {"Content-Type": content_type})[0] == 200
    body, content_type = multipart(MIB + 1, "over.jsonl")
    status, _, text = raw(studio.url, "POST", "/gradio_api/upload", body, {"Content-Type": content_type})
    assert status == 413 and b"maximum allowed size" in text
    assert not list(studio.cache.rglob("over.jsonl"))


@pytest.mark.slow
def test_the_real_app_refuses_remote_code_unless_started_with_the_flag(studio, tmp_path, tiny_model_dir):
    from gradio_client import Client

    marker = tmp_path / "remote.marker"
    folder = remote_code_folder(tiny_model_dir, tmp_path / "remote-code", marker)
    values = chat_round(Client(studio.url, verbose=False), [str(folder), str(tiny_model_dir)])
    assert any("--trust-remote-code" in str(value) for value in values)
    assert not marker.exists()

    root = tmp_path / "trusting"
    root.mkdir()
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}  # where transformers copies the folder's code
    with running_studio(root, extra_args=("--trust-remote-code",), env=env) as url:
        values = chat_round(Client(url, verbose=False), [str(folder), str(tiny_model_dir)])
    assert marker.read_text() == "remote code ran"
    assert len(replies(values)) >= 2 and not any("⚠" in str(value) for value in values)


# -- with login on: what tests/test_access.py does not cover


@pytest.mark.slow
def test_with_login_export_upload_and_cached_files_need_a_signed_in_user(tmp_path, tiny_model_dir):
    """tests/test_access.py covers start, delete, resume, queue/join, config and the throttle over HTTP."""
    root = tmp_path / "workspace"
    workspace = Workspace.at(root)
    run_id = create_run(workspace, SFTJobConfig(model=str(tiny_model_dir), dataset="d"))
    finish_status(run_dir(workspace, run_id), COMPLETED)
    cached = tmp_path / "app-tmp" / "gradio" / "cached" / "votes.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_text(SECRET)
    env = {"RLHF_STUDIO_USERNAME": "alice", "RLHF_STUDIO_PASSWORD": "pw", "TMPDIR": str(tmp_path / "app-tmp")}
    with running_studio(root, env=env) as url:
        as_json = {"Content-Type": "application/json"}
        for export in ("on_export", "on_export_1", "on_push"):
            status, _, _ = raw(url, "POST", f"/gradio_api/call/{export}", b'{"data": []}', as_json)
            assert status == 401, export
        body, content_type = multipart(10, "anonymous.jsonl")
        assert raw(url, "POST", "/gradio_api/upload", body, {"Content-Type": content_type})[0] == 401
        status, _, text = raw(url, "GET", "/gradio_api/file=" + quote(str(cached.resolve())))
        assert status == 401 and SECRET.encode() not in text
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        signed_in = raw(url, "POST", "/login", b"username=alice&password=pw", form)
        assert signed_in[0] == 200
        cookie = "; ".join(
            line.split(";")[0] for line in signed_in[1]["set-cookie"].splitlines() if "access-token" in line
        )
        status, _, text = raw(
            url, "GET", "/gradio_api/file=" + quote(str(cached.resolve())), headers={"Cookie": cookie}
        )
        assert status == 200 and text == SECRET.encode()
        cross = {"Cookie": cookie, "Origin": "https://evil.example", **as_json}
        assert raw(url, "POST", "/gradio_api/call/on_resume", b'{"data": [null]}', cross)[0] == 403
        login_csrf = raw(url, "POST", "/login", b"username=alice&password=pw", {**form, "Origin": "null"})
        assert login_csrf[0] == 403


# -- launch settings and the origin check on their own


def test_launch_options_serve_no_folder_and_check_origins():
    for host, login, local_names in (
        ("127.0.0.1", False, LOCAL_HOSTS),
        ("127.0.0.1", True, None),
        ("0.0.0.0", True, None),
    ):
        environ = {"RLHF_STUDIO_USERNAME": "a", "RLHF_STUDIO_PASSWORD": "b"} if login else {}
        options = launch_options(host, 7860, 500, access_policy(host, environ))
        assert "allowed_paths" not in options and options["share"] is False
        assert options["ssr_mode"] is False and options["run_history"] is False
        (middleware,) = options["app_kwargs"]["middleware"]
        assert middleware.cls is SameOriginOnly and middleware.kwargs == {"local_names": local_names}
    gradio_package = Path(gr.__file__).parent  # its own icons; nothing of the studio's set_static_paths
    assert all(Path(path).is_relative_to(gradio_package) for path in gr.data_classes._StaticFiles.all_paths)


@pytest.mark.parametrize(
    ("origin", "hosts", "same"),
    [
        ("http://127.0.0.1:7860", ["127.0.0.1:7860"], True),
        ("http://LOCALHOST:7860", ["localhost:7860"], True),
        ("https://me-studio.hf.space", ["me-studio.hf.space"], True),
        ("https://me-studio.hf.space", ["10.0.0.5:7860", "me-studio.hf.space"], True),  # X-Forwarded-Host
        ("https://me-studio.hf.space", ["me-studio.hf.space:443"], True),
        ("http://[::1]:7860", ["[::1]:7860"], True),
        ("http://127.0.0.1:7861", ["127.0.0.1:7860"], False),
        ("http://localhost:7860", ["127.0.0.1:7860"], False),
        ("https://127.0.0.1:7860", ["127.0.0.1:7860"], True),  # scheme not compared: TLS ends at a proxy
        ("https://evil.example", ["127.0.0.1:7860"], False),
        ("null", ["127.0.0.1:7860"], False),
        ("file://", ["127.0.0.1:7860"], False),
        ("http://127.0.0.1:port", ["127.0.0.1:7860"], False),
        ("http://127.0.0.1:7860", [""], False),
    ],
)
def test_same_origin(origin, hosts, same):
    assert same_origin(origin, hosts) is same


# -- Gradio's pin and its published advisories


# Advisories of gradio that affect 5.x or 6.x, with the first version that fixes each. Sources: the GitHub
# Advisory Database and OSV (osv.dev, pypa/advisory-database PYSEC entries) and the CVE records they cite,
# as of gradio 6.31.0 (Nov 2026). The 4.x-only ones (fixed in 4.44.0 or 5.0.0) are older than any 5.x.
ADVISORIES_FIXED = {
    "GHSA-rhm9-gp5p-5248": "5.5.0",  # CVE-2024-51751: File/UploadButton preview reads any file (5.0-5.4)
    "GHSA-j2jg-fq62-7c3h": "5.6.0",  # CVE-2025-23042: blocked_paths bypassed by letter case
    "GHSA-h3h8-3v2v-rg7m": "6.6.0",  # CVE-2026-27167: mocked OAuth exposes server credentials
    "GHSA-jmh7-g254-2cq9": "6.6.0",  # CVE-2026-28416: SSRF via proxy_url in gr.load() configs
    "CVE-2026-28415": "6.6.0",  # PYSEC-2026-65: open redirect in the OAuth flow
    "GHSA-39mp-8hj3-5c49": "6.7.0",  # CVE-2026-28414: absolute path traversal on Windows, Python 3.13+
    "GHSA-7hp7-4p35-3cx2": "6.15.0",  # CVE-2026-48545: cookie injection through the shared proxy client
    "GHSA-j36p-7w88-g82j": "6.16.0",  # CVE-2026-49119: FileExplorer path traversal
    "CVE-2026-59806": "6.20.0",  # open redirect and SSRF through /gradio_api/file=<url>
}
# GHSA-6655-8ph2-63j3 (audio cache key without metadata, reported on 6.14.0) names no fixed version; the
# installed processing_utils.save_audio_to_cache hashes the metadata (fixed), and the studio has no Audio.
# Not fixed in the pin (6.31.0 is the newest release on PyPI): the studio turns off what it needs.
ADVISORIES_MITIGATED = {
    # Gradio 6.27.0 to 6.31.x: with ssr_mode on, a forged `Host: localhost` passes run history's loopback
    # check and uses the operator's saved Hugging Face token. The studio launches with ssr_mode=False and
    # run_history=False (no /gradio_api/run-history routes at all); probed in FILE_PROBES.
    "CVE-2026-134825": "6.32.0",
}


def test_gradio_pin_carries_the_fixes_of_its_published_advisories():
    requirements = (REPO / "requirements.txt").read_text()
    (pin,) = re.findall(r"^gradio==(\S+)$", requirements, flags=re.MULTILINE)
    assert version("gradio") == pin  # the tests ran against the pinned version
    assert f"sdk_version: {pin}" in (REPO / "README.md").read_text()  # and a Space runs it too
    assert Version(pin) >= max(Version(fixed) for fixed in ADVISORIES_FIXED.values())
    for advisory, fixed in ADVISORIES_MITIGATED.items():
        if Version(pin) < Version(fixed):
            options = launch_options("0.0.0.0", 7860, 500)
            assert options["ssr_mode"] is False and options["run_history"] is False, advisory
