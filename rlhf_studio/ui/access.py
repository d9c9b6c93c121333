"""Who may change things: when login is on, training, deleting and exporting need a signed-in user.

Every handler that starts, stops, deletes or exports calls `require_login(request, "start training")` itself,
so a call that reaches the handler without a session (a script posting to the API) is refused there too.
Login is on when the app launches with credentials (see app.py); it is off on a localhost-only app.
"""

from __future__ import annotations

import os

import gradio as gr

LOGIN_REQUIRED_ENV = "RLHF_STUDIO_LOGIN_REQUIRED"  # set by the launcher; inherited by nothing that trains


def login_required() -> bool:
    return os.environ.get(LOGIN_REQUIRED_ENV) == "1"


def require_login(request: gr.Request | None, action: str) -> None:
    """Refuse `action` (e.g. "export a model") with a sentence unless login is off or the caller signed in."""
    if not login_required():
        return
    if request is None or not getattr(request, "username", None):
        raise gr.Error(f"Sign in to {action}: this studio is reachable beyond this computer.")
