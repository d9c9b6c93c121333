"""Access control: credentials, the throttled sign-in, the access policy, the guarded handlers, and the real
app refusing calls over plain HTTP until a user signed in."""

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import gradio as gr
import pytest
from browser import REPO, free_port, running_studio
from fastapi import HTTPException

from rlhf_studio.ui import build_app, launch_options
from rlhf_studio.ui.access import (
    LOGIN_REQUIRED_ENV,
    SIGN_IN_MESSAGE,
    AccessError,
    LoginThrottle,
    SignIn,
    access_policy,
    read_credentials,
)
from rlhf_studio.workspace import Workspace

ALICE = {"RLHF_STUDIO_USERNAME": "alice", "RLHF_STUDIO_PASSWORD": "correct horse battery"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the throttle


def test_five_failures_lock_the_name_even_for_the_right_password_until_the_cooldown_ends():
    clock = FakeClock()
    sign_in = SignIn({"alice": "right"}, LoginThrottle(clock=clock))
    for _ in range(5):
        clock.now += 10
        assert sign_in("alice", "wrong") is False
    fifth_failure = clock.now
    with pytest.raises(HTTPException) as refused:
        sign_in("alice", "right")
    assert refused.value.status_code == 400 and "Too many failed sign-ins" in refused.value.detail
    assert "try again in 15 minutes" in refused.value.detail
    clock.now = fifth_failure + 15 * 60 - 1  # the cooldown runs from the failure that started it
    with pytest.raises(HTTPException, match="try again in 1 minute.$"):
        sign_in("alice", "right")
    clock.now += 1
    assert sign_in("alice", "right") is True


def test_failures_older_than_the_window_do_not_count_and_success_clears_the_count():
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    sign_in = SignIn({"alice": "right"}, throttle)
    for _ in range(4):
        sign_in("alice", "wrong")
    clock.now += 15 * 60  # the window has passed
    for _ in range(4):
        sign_in("alice", "wrong")
    assert throttle.wait("alice") == 0
    assert sign_in("alice", "right") is True
    for _ in range(4):
        sign_in("alice", "wrong")
    assert throttle.wait("alice") == 0  # 4 since the success, not 8
    assert "alice" in throttle.failures and len(throttle.failures) == 2  # alice and the overall count


def test_failures_spread_over_many_names_lock_everyone():
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    sign_in = SignIn({"alice": "right"}, throttle)
    for index in range(20):
        assert sign_in(f"guess-{index}", "wrong") is False
    assert throttle.wait("alice") == pytest.approx(15 * 60)
    with pytest.raises(HTTPException):
        sign_in("alice", "right")
    clock.now += 15 * 60
    assert sign_in("alice", "right") is True
    assert set(throttle.failures) == set() and throttle.locked_until == {}  # old counts forgotten


def test_passwords_must_match_exactly_in_any_script():
    sign_in = SignIn({"zoë": "pässwörd ✓", "bob": "b"})
    assert sign_in("zoë", "pässwörd ✓") is True
    assert sign_in("zoë", "pässwörd") is False and sign_in("zoë", "") is False
    assert sign_in("nobody", "b") is False and sign_in("bob", "B") is False


# -- credentials and the policy


def test_credentials_come_from_the_environment_and_a_users_file(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# team\n\ncarol:pa:ss word \n dave:x\n", encoding="utf-8")
    credentials = read_credentials({**ALICE, "RLHF_STUDIO_USERS_FILE": str(users)})
    assert credentials == {"alice": "correct horse battery", "carol": "pa:ss word ", "dave": "x"}
    assert read_credentials({}) == {}
    with pytest.raises(AccessError, match="Set both RLHF_STUDIO_USERNAME and RLHF_STUDIO_PASSWORD"):
        read_credentials({"RLHF_STUDIO_USERNAME": "alice"})
    users.write_text("carol:secret\nno password here\n", encoding="utf-8")
    with pytest.raises(AccessError, match="line 2 is not `user:password`"):
        read_credentials({"RLHF_STUDIO_USERS_FILE": str(users)})
    with pytest.raises(AccessError, match="Cannot read the users file"):
        read_credentials({"RLHF_STUDIO_USERS_FILE": str(tmp_path / "missing.txt")})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_localhost_needs_no_login_unless_credentials_are_set(host):
    assert access_policy(host, {}).login_required is False
    policy = access_policy(host, ALICE)
    assert policy.login_required and policy.users == {"alice": "correct horse battery"} and not policy.warning


@pytest.mark.parametrize(
    ("host", "environ", "where"),
    [
        ("0.0.0.0", {}, "on --host 0.0.0.0"),
        ("192.168.1.20", {}, "on --host 192.168.1.20"),
        ("127.0.0.1", {"SPACE_ID": "someone/studio"}, "as a Hugging Face Space"),
    ],
)
def test_exposed_app_needs_credentials_or_an_explicit_unsafe_override(host, environ, where):
    with pytest.raises(AccessError) as refused:
        access_policy(host, environ)
    message = str(refused.value)
    assert where in message and "RLHF_STUDIO_PASSWORD" in message and "--no-login" in message
    assert access_policy(host, {**environ, **ALICE}).login_required
    unsafe = access_policy(host, environ, no_login=True)
    assert not unsafe.login_required and "anyone who reaches it can train" in unsafe.warning


def test_launch_options_add_the_throttled_sign_in_and_never_a_share_link():
    options = launch_options("0.0.0.0", 7860, 500, access_policy("0.0.0.0", ALICE))
    assert options["share"] is False and options["server_name"] == "0.0.0.0"
    assert isinstance(options["auth"], SignIn) and options["auth_message"] == SIGN_IN_MESSAGE
    assert options["auth"]("alice", "correct horse battery") is True
    assert "auth" not in launch_options("127.0.0.1", 7860, 500, access_policy("127.0.0.1", {}))


def test_host_defaults_to_localhost_and_to_every_interface_on_a_space(monkeypatch):
    import app

    monkeypatch.setattr(sys, "argv", ["app.py"])
    for name in ("RLHF_STUDIO_HOST", "SPACE_ID", "RLHF_STUDIO_NO_LOGIN"):
        monkeypatch.delenv(name, raising=False)
    assert app.parse_args().host == "127.0.0.1" and app.parse_args().no_login is False
    monkeypatch.setenv("SPACE_ID", "someone/studio")  # a Space reaches the app through its proxy
    monkeypatch.setenv("RLHF_STUDIO_NO_LOGIN", "1")
    assert app.parse_args().host == "0.0.0.0" and app.parse_args().no_login is True


# -- the handlers and the header of the built app

RUN = "20260101-000000-sft-abcd"
GUARDED = {  # handler -> the positional inputs it is called with
    "TrainTab.on_start": ({},),
    "TrainTab.on_stop": ({},),
    "MonitorTab.on_resume": (RUN,),
    "MonitorTab.on_stop": (RUN,),
    "MonitorTab.on_delete": (RUN,),
    "ExportTab.on_export": (f"run:{RUN}", {}),
    "ExportTab.on_push": (f"run:{RUN}", "someone/model", "", True, {}),
    "EvalTab.on_rm": (f"run:{RUN}", "prefs", "eval"),
    "EvalTab.on_win_rate": ({},),
}


def handlers(studio: gr.Blocks) -> dict:
    return {block_fn.fn.__qualname__: block_fn.fn for block_fn in studio.fns.values() if block_fn.fn}


def test_handlers_that_change_things_refuse_a_caller_who_did_not_sign_in(workspace, monkeypatch):
    monkeypatch.setenv(LOGIN_REQUIRED_ENV, "1")
    run = workspace.runs_dir / RUN
    run.mkdir()
    studio = build_app(workspace)
    found = handlers(studio)
    for name, inputs in GUARDED.items():
        for request in (gr.Request(), None):
            with pytest.raises(gr.Error) as refused:
                found[name](*inputs, request=request)
            assert refused.value.message.startswith("Sign in to"), name
    assert run.is_dir()  # the refused delete deleted nothing
    assert found["MonitorTab.on_resume"](None, request=gr.Request(username="alice")) == "Pick a run first."
    texts = [str(block.value) for block in studio.blocks.values() if isinstance(block, gr.Markdown)]
    assert any("[Sign out](logout)" in text for text in texts)


def test_header_warns_when_the_workspace_does_not_outlive_a_restart(tmp_path, monkeypatch):
    monkeypatch.setenv(LOGIN_REQUIRED_ENV, "0")
    ephemeral = Workspace(Workspace.at(tmp_path / "workspace").root, persistent=False)
    for workspace, warned in ((ephemeral, True), (Workspace.at(tmp_path / "kept"), False)):
        studio = build_app(workspace)
        texts = [block.value for block in studio.blocks.values() if isinstance(block, gr.Markdown)]
        assert any("lost when it restarts" in str(text) for text in texts) is warned
        assert not any("Sign out" in str(text) for text in texts)


# -- the real app over HTTP


def http(opener, url: str, data: dict | None = None, form: bool = False) -> tuple[int, str]:
    body = None
    headers = {}
    if data is not None:
        body = urllib.parse.urlencode(data).encode() if form else json.dumps(data).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
    try:
        with opener.open(urllib.request.Request(url, data=body, headers=headers), timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def call(opener, url: str, api_name: str, data: list) -> tuple[int, str]:
    """Gradio's two-step API: POST the inputs, then read the event stream of the result."""
    status, text = http(opener, f"{url}/gradio_api/call/{api_name}", {"data": data})
    if status != 200:
        return status, text
    return http(opener, f"{url}/gradio_api/call/{api_name}/{json.loads(text)['event_id']}")


def sign_in(opener, url: str, username: str, password: str) -> tuple[int, str]:
    return http(opener, f"{url}/login", {"username": username, "password": password}, form=True)


def session():
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))


@pytest.mark.slow
def test_the_real_app_refuses_everything_until_signed_in_and_throttles_guessing(tmp_path):
    root = tmp_path / "workspace"
    root.mkdir()
    users = tmp_path / "users.txt"
    users.write_text("bob:bobs own passphrase\n", encoding="utf-8")
    env = {**ALICE, "RLHF_STUDIO_USERS_FILE": str(users)}
    password = ALICE["RLHF_STUDIO_PASSWORD"]
    with running_studio(root, extra_args=("--host", "127.0.0.1"), env=env) as url:
        anonymous, alice = urllib.request.build_opener(), session()
        assert sign_in(alice, url, "alice", "wrong")[0] == 400
        assert http(alice, f"{url}/config")[0] == 401
        status, text = sign_in(alice, url, "alice", password)
        assert (status, json.loads(text)) == (200, {"success": True})
        status, text = http(alice, f"{url}/config")
        assert status == 200
        api_names = {dependency.get("api_name") for dependency in json.loads(text)["dependencies"]}
        assert {"on_start", "on_stop", "on_resume", "on_delete"} <= api_names

        for api_name, data in (("on_start", []), ("on_delete", [None]), ("on_resume", [None])):
            assert call(anonymous, url, api_name, data)[0] == 401
        join = {"fn_index": 0, "data": [], "session_hash": "x"}
        assert http(anonymous, f"{url}/gradio_api/queue/join", join)[0] == 401
        assert http(anonymous, f"{url}/config")[0] == 401

        status, stream = call(alice, url, "on_resume", [None])  # the handler saw the signed-in user
        assert status == 200 and "event: complete" in stream and "Pick a run first." in stream

        guesser = session()
        for attempt in range(5):
            status, text = sign_in(guesser, url, "bob", f"guess {attempt}")
            assert status == 400 and "Incorrect credentials" in text
        status, text = sign_in(guesser, url, "bob", "bobs own passphrase")
        assert status == 400 and "Too many failed sign-ins" in text
        assert http(guesser, f"{url}/config")[0] == 401
        assert sign_in(guesser, url, "alice", password)[0] == 200  # the lock is bob's, not everyone's

        http(alice, f"{url}/logout")  # the header's "Sign out" link
        assert http(alice, f"{url}/config")[0] == 401


@pytest.mark.slow
def test_app_on_every_interface_without_credentials_refuses_to_start(tmp_path):
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("RLHF_STUDIO_") and name not in ("SPACE_ID", "GRADIO_SERVER_NAME")
    }
    root = tmp_path / "workspace"
    environment.update(RLHF_STUDIO_HOME=str(root), HF_HUB_OFFLINE="1")
    port = free_port()
    finished = subprocess.run(
        [sys.executable, "app.py", "--host", "0.0.0.0", "--port", str(port)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,  # a studio that did start would be killed here and the test fail
    )
    assert finished.returncode == 1
    assert "RLHF Studio did not start. Running on --host 0.0.0.0" in finished.stderr
    assert "reachable beyond this computer and needs a login" in finished.stderr
    assert "RLHF_STUDIO_PASSWORD" in finished.stderr and "--no-login" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert not root.exists()  # refused before it touched anything
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
