"""Who may use the studio: a sign-in when it is reachable beyond this computer, throttled, checked again in
every handler that changes things.

Login is on when credentials are configured or when the app is exposed (`--host` other than 127.0.0.1,
localhost or ::1, or running as a Hugging Face Space). An exposed app without credentials refuses to start,
unless the operator passes --no-login (unsafe: anyone who reaches the port may train, delete and export).
Credentials come from the environment, never from the code: RLHF_STUDIO_USERNAME with RLHF_STUDIO_PASSWORD
(a Space's secrets), and/or RLHF_STUDIO_USERS_FILE, a file of `user:password` lines.

With login on, Gradio puts the whole app behind its sign-in form (`auth=SignIn(...)`: every page, upload
and API call needs the session cookie). Failed sign-ins are throttled: MAX_FAILURES_PER_NAME failures for
one name, or MAX_FAILURES_TOTAL for all names together, within WINDOW_SECONDS lock that name (or everyone)
out for COOLDOWN_SECONDS, right password or not. Gradio's auth callable sees only the name and password,
not the caller's address, so the throttle cannot be per address; the overall limit caps guessing with many
names.

Every handler that starts, stops, resumes, deletes or exports also calls `require_login(request, action)`,
so a call that reaches a handler without a signed-in user is refused there too.

Requests that a browser sends from another site's page are refused before they reach Gradio
(`SameOriginOnly`, below), and a local app without login answers only to this computer's names.
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rlhf_studio.workspace import on_space

LOGIN_REQUIRED_ENV = "RLHF_STUDIO_LOGIN_REQUIRED"  # "1" or "0": app.py sets it from the AccessPolicy
USERNAME_ENV = "RLHF_STUDIO_USERNAME"
PASSWORD_ENV = "RLHF_STUDIO_PASSWORD"
USERS_FILE_ENV = "RLHF_STUDIO_USERS_FILE"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_TOTAL = 20
WINDOW_SECONDS = 15 * 60
COOLDOWN_SECONDS = 15 * 60
SIGN_IN_MESSAGE = (
    f"Sign in to use RLHF Studio. After {MAX_FAILURES_PER_NAME} failed attempts for a name, sign-in for "
    f"that name pauses for {COOLDOWN_SECONDS // 60} minutes."
)

log = logging.getLogger("rlhf_studio.access")


class AccessError(Exception):
    """The app must not start with this access setup; the message is one sentence for the operator."""


# -- credentials


def read_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """Name -> password from RLHF_STUDIO_USERNAME/RLHF_STUDIO_PASSWORD and the RLHF_STUDIO_USERS_FILE."""
    users = {}
    name, password = environ.get(USERNAME_ENV, "").strip(), environ.get(PASSWORD_ENV, "")
    if name or password:
        if not (name and password):
            raise AccessError(f"Set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither.")
        users[name] = password
    if environ.get(USERS_FILE_ENV):
        users.update(read_users_file(Path(environ[USERS_FILE_ENV])))
    return users


def read_users_file(path: Path) -> dict[str, str]:
    """`user:password` lines (the password is the rest of the line after the first colon); # comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AccessError(f"Cannot read the users file {path} ({USERS_FILE_ENV}): {error}.") from None
    users = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, password = line.partition(":")
        if not colon or not name.strip() or not password:
            raise AccessError(f"{path} line {number} is not `user:password`: fix it or remove it.")
        users[name.strip()] = password
    return users


# -- the throttle and Gradio's auth callable


@dataclass
class LoginThrottle:
    """Counts failed sign-ins per name and overall (key None) and locks a key out after too many."""

    max_per_name: int = MAX_FAILURES_PER_NAME
    max_total: int = MAX_FAILURES_TOTAL
    window: float = WINDOW_SECONDS
    cooldown: float = COOLDOWN_SECONDS
    clock: Callable[[], float] = time.monotonic
    failures: dict[str | None, list[float]] = field(default_factory=dict)
    locked_until: dict[str | None, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wait(self, name: str) -> float:
        """Seconds before `name` may try again; 0 when it may now."""
        with self.lock:
            until = max(self.locked_until.get(name, 0.0), self.locked_until.get(None, 0.0))
            return max(0.0, until - self.clock())

    def failed(self, name: str) -> None:
        with self.lock:
            now = self.clock()
            for key, limit in ((name, self.max_per_name), (None, self.max_total)):
                recent = [t for t in self.failures.get(key, []) if now - t < self.window] + [now]
                if len(recent) >= limit:
                    self.locked_until[key] = now + self.cooldown
                    self.failures.pop(key, None)
                    log.warning(
                        "sign-in paused for %d s after failures: %s",
                        self.cooldown,
                        "every name" if key is None else repr(key),
                    )
                else:
                    self.failures[key] = recent
            self.forget_old(now)

    def succeeded(self, name: str) -> None:
        with self.lock:
            self.failures.pop(name, None)
            self.forget_old(self.clock())

    def forget_old(self, now: float) -> None:
        """Drop counts and locks that no longer matter, so that many names cannot grow memory."""
        for key in [k for k, times in self.failures.items() if now - times[-1] >= self.window]:
            del self.failures[key]
        for key in [k for k, until in self.locked_until.items() if until <= now]:
            del self.locked_until[key]


class SignIn:
    """Gradio's `auth=` callable: is (name, password) one of the configured users? Throttled."""

    def __init__(self, users: dict[str, str], throttle: LoginThrottle | None = None) -> None:
        self.users = users
        self.throttle = throttle or LoginThrottle()

    def __call__(self, username: str, password: str) -> bool:
        wait = self.throttle.wait(username)
        if wait > 0:
            minutes = math.ceil(wait / 60)
            # Status 400 makes Gradio's form say "incorrect credentials"; a script reads the reason.
            raise HTTPException(
                status_code=400,
                detail=f"Too many failed sign-ins: try again in {minutes} minute{'s' * (minutes > 1)}.",
            )
        expected = self.users.get(username)
        if expected is not None and hmac.compare_digest(password.encode(), expected.encode()):
            self.throttle.succeeded(username)
            return True
        self.throttle.failed(username)
        return False


# -- the policy app.py applies


@dataclass(frozen=True)
class AccessPolicy:
    login_required: bool
    users: dict[str, str] = field(default_factory=dict, repr=False)
    warning: str = ""  # printed at start: exposed without login


def is_exposed(host: str, environ: Mapping[str, str]) -> bool:
    return host.strip().strip("[]").lower() not in LOCAL_HOSTS or on_space(environ)


def access_policy(host: str, environ: Mapping[str, str], no_login: bool = False) -> AccessPolicy:
    """Login when credentials are configured or the app is exposed; refuse an exposed app without any."""
    users = read_credentials(environ)
    exposed = is_exposed(host, environ)
    where = "as a Hugging Face Space" if on_space(environ) else f"on --host {host}"
    if no_login:
        warning = (
            f"Login is off (--no-login) while the studio runs {where}: anyone who reaches it can train, "
            "delete runs and export models."
        )
        return AccessPolicy(login_required=False, warning=warning if exposed else "")
    if exposed and not users:
        raise AccessError(
            f"Running {where}, the studio is reachable beyond this computer and needs a login: set "
            f"{USERNAME_ENV} and {PASSWORD_ENV} (a Space's secrets) or {USERS_FILE_ENV}, or listen on "
            "127.0.0.1, or pass --no-login (unsafe: anyone who reaches it may train, delete runs and export)."
        )
    return AccessPolicy(login_required=bool(users), users=users)


def auth_options(policy: AccessPolicy) -> dict:
    """The `launch()` arguments of the policy: the throttled sign-in when login is on, else nothing."""
    if not policy.login_required:
        return {}
    return {"auth": SignIn(policy.users), "auth_message": SIGN_IN_MESSAGE}


# -- the check in the handlers


def login_required() -> bool:
    return os.environ.get(LOGIN_REQUIRED_ENV) == "1"


def require_login(request: gr.Request | None, action: str) -> None:
    """Refuse `action` (e.g. "export a model") with a sentence unless login is off or the caller signed in."""
    if not login_required():
        return
    if request is None or not getattr(request, "username", None):
        raise gr.Error(f"Sign in to {action}: this studio requires a login.")


# -- requests from other sites


def same_origin(origin: str, hosts: list[str]) -> bool:
    """Whether `origin` (a browser's Origin header) is one of `hosts` (Host header values): same name and
    port, a missing port being the origin scheme's default. "null" and anything not http(s) never are."""
    parsed = urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    default = 443 if parsed.scheme == "https" else 80
    try:
        port = parsed.port or default
        return any(
            target.hostname == parsed.hostname and (target.port or default) == port
            for target in (urlsplit(f"//{host.strip()}") for host in hosts if host.strip())
        )
    except ValueError:  # a port that is not a number
        return False


class SameOriginOnly:
    """ASGI middleware: refuse requests a browser sent from another site's page; on a local app without a
    login, also refuse requests addressed to a name that is not this computer's.

    Browsers add `Origin` to every POST and to every cross-origin fetch. Gradio's CORS middleware decides only
    whether the answer may be *read* (and echoes any origin, with credentials, when the Host is not
    localhost, as on a Space), while the request itself still runs: a page on https://evil.example could
    start training, upload files or delete runs in a studio its visitor has open on localhost or is signed in
    to. So a request whose Origin is not the address it was sent to (its Host, or the X-Forwarded-Host a
    proxy adds) is refused with 403, whatever the method; `Origin: null` (sandboxed frames, file:// pages)
    too. Requests without Origin (curl, gradio_client, opening a link) pass: that is how browsers send
    navigations and same-origin GETs, and other programs can reach the port anyway.

    A DNS-rebinding page reaches 127.0.0.1 under its own name, so its Origin and Host agree; `local_names`
    (the names of this computer) closes that on a local app without login, with 400 for any other Host.
    """

    def __init__(self, app: ASGIApp, local_names: frozenset[str] | None = None) -> None:
        self.app = app
        self.local_names = local_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            hosts = [headers.get("host", ""), headers.get("x-forwarded-host", "").split(",")[0]]
            origin = headers.get("origin")
            refusal = None
            if self.local_names is not None and urlsplit(f"//{hosts[0]}").hostname not in self.local_names:
                refusal = PlainTextResponse(
                    "Refused: this studio runs without a login and answers only to localhost and 127.0.0.1.",
                    status_code=400,
                )
            elif origin is not None and not same_origin(origin, hosts):
                refusal = PlainTextResponse(
                    "Refused: a request from another site's page (its Origin is not this studio's address).",
                    status_code=403,
                )
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
