"""Export tab: a finished run as a standalone model (zip download or Hub push); running it on a cluster.

The export engine (rlhf_studio.export) merges LoRA adapters into their base and writes safetensors, the
tokenizer and a model card; this module picks the run, shows progress and hands over the zip. The cluster
section shows the run's own config and the accelerate lines from rlhf_studio.runner.commands.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import gradio as gr

from rlhf_studio.config import ConfigError
from rlhf_studio.export import export_model, hub_token, push_to_hub, zip_export
from rlhf_studio.models import RUN_PREFIX
from rlhf_studio.runner.commands import ACCELERATE_CONFIGS, command_text, shell_lines
from rlhf_studio.runner.pipelines import PipelineRunner
from rlhf_studio.runner.runs import CONFIG_FILE, lineage, read_status, run_dir
from rlhf_studio.stages import all_stages, load_config, stage_label, stage_names
from rlhf_studio.ui.access import require_login
from rlhf_studio.ui.errors import user_errors
from rlhf_studio.ui.pickers import finished_runs, run_choices

CLUSTER_NOTE = (
    "Save the config below as the file the commands name and run them from the studio's folder (the "
    f"accelerate configs are in `{ACCELERATE_CONFIGS}/`). The cluster needs the same workspace: copy it "
    "there or put it on a shared disk and set `RLHF_STUDIO_HOME`, since the config names its dataset and "
    "any `run:<id>` it starts from. DeepSpeed needs `pip install deepspeed`."
)


def launch_note() -> str:
    """Which stages run under fewer accelerate configs than every one (from each stage's `launch`)."""
    limited = [
        f"{stage.label} runs under {', '.join(f'`{name}`' for name in stage.launch)} only"
        for stage in all_stages()
        if stage.launch
    ]
    return " Every stage takes every config" + (f", except: {'; '.join(limited)}." if limited else ".")


def progress_reporter(progress: gr.Progress):
    return lambda fraction, text: progress(fraction, desc=text)


def cached_download(archive: Path, component: gr.File) -> str:
    """The zip as a file in Gradio's cache, the one folder it serves: a hard link (or a copy across disks) in
    a folder of its own. Gradio refuses files outside the working directory and the temp folder (the
    workspace on a Space's /data disk), and the workspace itself must never be served (no allowed_paths)."""
    folder = Path(component.GRADIO_CACHE) / f"export-{secrets.token_hex(16)}"
    folder.mkdir(parents=True)
    target = folder / archive.name
    try:
        os.link(archive, target)
    except OSError:
        shutil.copyfile(archive, target)
    return str(target)


class ExportTab:
    def __init__(self, runner: PipelineRunner) -> None:
        self.runner = runner
        self.exported = gr.State({})  # run id -> export folder: what this browser exported
        gr.Markdown(
            "Export a finished run as a standalone model: LoRA adapters are merged into their base, the "
            "weights saved as safetensors with the tokenizer, its chat template and a model card. It loads "
            "with plain `transformers`, no studio and no PEFT."
        )
        self.run = gr.Dropdown([], label="Finished run", elem_id="export-run")
        self.about = gr.Markdown(elem_id="export-about")
        with gr.Row():
            self.export = gr.Button("Export merged model (zip)", variant="primary", elem_id="export-go")
            self.zip = gr.File(label="Exported model", visible=False, interactive=False, elem_id="export-zip")
        self.message = gr.Markdown(elem_id="export-message")
        gr.Markdown("### Push to the Hugging Face Hub")
        with gr.Row(equal_height=True):
            self.repo = gr.Textbox(
                label="Repo id", placeholder="you/my-model", elem_id="export-repo", scale=2
            )
            self.token = gr.Textbox(
                label="Token (write access)",
                type="password",
                placeholder="empty: HF_TOKEN or the `hf auth login` token",
                elem_id="export-token",
                scale=2,
            )
            self.private = gr.Checkbox(True, label="Private repo", elem_id="export-private", scale=1)
            self.push = gr.Button("Push to Hub", elem_id="export-push", scale=1)
        self.push_message = gr.Markdown(elem_id="export-push-message")
        gr.Markdown("### Run on a cluster\n" + CLUSTER_NOTE + launch_note())
        self.commands = gr.Code(language="shell", label="Commands", lines=8, elem_id="export-commands")
        self.yaml = gr.Code(language="yaml", label="The run's config", lines=12, max_lines=40)

    # -- the picked run

    def on_open(self, current: str | None) -> dict:
        choices = run_choices(finished_runs(self.runner), tuple(stage_names()))
        values = [value for _, value in choices]
        picked = current if current in values else (values[0] if values else None)
        return {self.run: gr.update(choices=choices, value=picked), **self.on_run(picked)}

    def on_run(self, picked: str | None) -> dict:
        if not picked:
            return {
                self.about: "No finished run yet: train one in the **Train** tab.",
                self.commands: "",
                self.yaml: "",
            }
        run_id = picked.removeprefix(RUN_PREFIX)
        workspace = self.runner.workspace
        status = read_status(run_dir(workspace, run_id))
        if status is None:
            return {self.about: f"Run `{run_id}` no longer exists.", self.commands: "", self.yaml: ""}
        chain = " ← ".join(f"`{run}`" for run in lineage(workspace, run_id))
        stage = stage_label(status.stage)
        about = f"**{stage}** on `{status.dataset}` from `{status.model}` · lineage {chain}"
        try:
            text = command_text(load_config(run_dir(workspace, run_id) / CONFIG_FILE), workspace)
        except (ConfigError, OSError) as error:
            return {
                self.about: about,
                self.commands: f"# this run's config cannot be read: {error}",
                self.yaml: "",
            }
        return {self.about: about, self.commands: "\n".join(shell_lines(text)), self.yaml: text.yaml}

    # -- export and push

    def on_export(self, picked: str, exported: dict, request: gr.Request, progress=gr.Progress()) -> dict:
        require_login(request, "export a model")
        run_id = self.picked_run(picked)
        folder = export_model(self.runner.workspace, run_id, progress=progress_reporter(progress))
        archive = zip_export(folder)
        return {
            self.zip: gr.update(value=cached_download(archive, self.zip), visible=True),
            self.message: f"Exported `{run_id}` to `{folder}`; download the zip above.",
            self.exported: {**exported, run_id: str(folder)},
        }

    def on_push(
        self,
        picked: str,
        repo: str,
        token: str,
        private: bool,
        exported: dict,
        request: gr.Request,
        progress=gr.Progress(),
    ) -> dict:
        require_login(request, "push a model to the Hub")
        run_id = self.picked_run(picked)
        token = hub_token(repo, token)  # refused here, before a long export, when the push cannot work
        folder = exported.get(run_id)
        if not folder or not Path(folder).is_dir():
            folder = str(export_model(self.runner.workspace, run_id, progress=progress_reporter(progress)))
        progress(0.95, desc=f"Uploading to {repo.strip()}")
        url = push_to_hub(Path(folder), repo, token, private=bool(private))
        return {
            self.push_message: f"Pushed `{run_id}` to [{url}]({url}) ({'private' if private else 'public'}).",
            self.exported: {**exported, run_id: folder},
        }

    @staticmethod
    def picked_run(picked: str | None) -> str:
        if not picked:
            raise gr.Error("Pick a finished run first.")
        return picked.removeprefix(RUN_PREFIX)


def build_export_tab(runner: PipelineRunner, tab: gr.Tab) -> None:
    view = ExportTab(runner)
    shown = [view.run, view.about, view.commands, view.yaml]
    tab.select(user_errors(view.on_open), view.run, shown, show_progress="hidden")
    view.run.input(user_errors(view.on_run), view.run, [view.about, view.commands, view.yaml])
    view.export.click(
        user_errors(view.on_export), [view.run, view.exported], [view.zip, view.message, view.exported]
    )
    view.push.click(
        user_errors(view.on_push),
        [view.run, view.repo, view.token, view.private, view.exported],
        [view.push_message, view.exported],
    )
