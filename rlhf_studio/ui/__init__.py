"""The browser app: one builder per tab. The only package that imports gradio (with app.py)."""

from rlhf_studio.ui.app import build_app, launch_options

__all__ = ["build_app", "launch_options"]
