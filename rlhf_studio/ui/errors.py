"""Turn engine errors into one plain sentence in the browser; never show a traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import gradio as gr

from rlhf_studio.data import DataError
from rlhf_studio.models import ModelError

log = logging.getLogger("rlhf_studio.ui")
USER_ERRORS = (DataError, ModelError, ValueError, FileNotFoundError)


def user_errors(handler: Callable) -> Callable:
    """Wrap an event handler: known errors become gr.Error, anything else is logged and summarised."""

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from None
        except Exception as error:
            log.exception("handler %s failed", handler.__name__)
            raise gr.Error(
                f"Unexpected {type(error).__name__}: {error}. The full report is in the studio's log."
            ) from None

    return wrapped
