"""Assemble the tabs into one Blocks app and choose safe launch settings."""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from rlhf_studio.chat import ModelCache
from rlhf_studio.runner.jobs import JobManager
from rlhf_studio.runner.monitor import MetricsReader
from rlhf_studio.runner.pipelines import PipelineRunner
from rlhf_studio.ui.access import LOCAL_HOSTS, AccessPolicy, SameOriginOnly, auth_options, login_required
from rlhf_studio.ui.chat_tab import build_chat_tab
from rlhf_studio.ui.data_tab import build_data_tab
from rlhf_studio.ui.eval_tab import build_eval_tab
from rlhf_studio.ui.export_tab import build_export_tab
from rlhf_studio.ui.monitor_tab import build_monitor_tab
from rlhf_studio.ui.train_tab import build_train_tab
from rlhf_studio.workspace import Workspace

QUEUE_MAX_SIZE = 64
EPHEMERAL_WARNING = (
    "⚠️ **This Space has no persistent storage: datasets, runs and votes are lost when it restarts.** "
    "Add persistent storage in the Space's settings; the studio then keeps everything in `/data/rlhf-studio`."
)


def header(workspace: Workspace) -> str:
    text = (
        "# RLHF Studio\nUpload preference data, train SFT → reward model → PPO or SFT → DPO, "
        f"and compare every stage. Workspace: `{workspace.root}`"
    )
    return text + (" · [Sign out](logout)" if login_required() else "")


def build_app(workspace: Workspace) -> gr.Blocks:
    """The app and its shared state: one JobManager (it recovers and re-attaches runs of a previous app),
    one PipelineRunner on top of it, one MetricsReader and one chat ModelCache; per-browser state lives in
    each tab's gr.State."""
    runner = PipelineRunner(JobManager(workspace))
    reader = MetricsReader()
    cache = ModelCache(workspace)  # chat and evaluation share loaded models
    with gr.Blocks(title="RLHF Studio") as studio:
        gr.Markdown(header(workspace))
        if not workspace.persistent:
            gr.Markdown(EPHEMERAL_WARNING, elem_id="storage-warning")
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                build_data_tab(workspace)
            with gr.Tab("Train", id="train") as train_tab:
                launched = build_train_tab(runner, reader, train_tab, studio)
            with gr.Tab("Monitor", id="monitor") as monitor_tab:
                build_monitor_tab(runner, reader, monitor_tab, studio, launched)
            with gr.Tab("Chat", id="chat") as chat_tab:
                build_chat_tab(runner, cache, chat_tab)
            with gr.Tab("Eval", id="eval") as eval_tab:
                build_eval_tab(runner, cache, eval_tab)
            with gr.Tab("Export", id="export") as export_tab:
                build_export_tab(runner, export_tab)
    studio.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=2)
    return studio


def launch_options(host: str, port: int, max_upload_mb: int, access: AccessPolicy | None = None) -> dict:
    """Bound to localhost unless asked otherwise; uploads capped; errors shown as curated sentences only;
    no share link; the throttled sign-in when the access policy asks for a login; requests from other
    sites' pages refused, and a local app without login answering only to this computer's names."""
    local = host.strip().strip("[]").lower() in LOCAL_HOSTS
    login = access is not None and access.login_required
    origin_check = Middleware(SameOriginOnly, local_names=LOCAL_HOSTS if local and not login else None)
    return {
        "server_name": host,
        "server_port": port,
        "max_file_size": f"{max_upload_mb}mb",
        "show_error": False,
        "share": False,
        "theme": gr.themes.Soft(),
        "app_kwargs": {"middleware": [origin_check]},
        # The origin check compares the browser's Origin with the Host it reached: the browser must talk to
        # this server, not to Gradio's Node renderer in front of it (GRADIO_SSR_MODE could turn it on).
        "ssr_mode": False,
        # Gradio's run history page and its /gradio_api/run-history routes (no login check; they use the
        # operator's saved Hugging Face token for local callers, CVE-2026-134825 with SSR) are not needed.
        "run_history": False,
        **(auth_options(access) if access else {}),
    }
