"""Train tab: a stage or a pipeline, the model, the data, the settings; start, stop, save/load, show command.

Nothing starts before every check passed (PipelineRunner.submit / start run launch_errors: the config's own
checks, the dataset's fit for the stage, the model's source); a refused launch lists plain "field: reason"
lines. The settings of each stage of a pipeline are kept in a gr.State while the form shows one stage.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from rlhf_studio.config import ConfigError, JobConfig
from rlhf_studio.models import RUN_PREFIX, default_model
from rlhf_studio.runner.commands import command_text, config_file_name, config_yaml, shell_lines
from rlhf_studio.runner.monitor import MetricsReader, training_progress
from rlhf_studio.runner.pipelines import (
    PIPELINES,
    PipelineRunner,
    linked_config,
    placeholder_run_ids,
)
from rlhf_studio.runner.runs import run_dir
from rlhf_studio.stages import (
    config_from_dict,
    get_stage,
    load_config,
    stage_label,
    stage_names,
)
from rlhf_studio.ui.access import require_login
from rlhf_studio.ui.errors import user_errors
from rlhf_studio.ui.monitor_view import pipeline_html, progress_html, queue_note
from rlhf_studio.ui.pickers import (
    dataset_picker,
    finished_runs,
    model_choices,
    reward_choices,
    stage_choices,
    stage_note,
    stages_of,
)
from rlhf_studio.ui.settings_form import SettingsForm, nest

REFRESH_SECONDS = 2.0
IDLE = '<p style="opacity:0.8">No training is running.</p>'


class TrainTab:
    """The tab's components and handlers; build_train_tab lays it out and wires it."""

    def __init__(self, runner: PipelineRunner, reader: MetricsReader) -> None:
        self.runner, self.reader = runner, reader
        first = stage_names()[0]
        self.launched = gr.State({})  # {"run": id} or {"pipeline": id}: what this browser started
        self.editing = gr.State(first)  # the stage the form shows
        self.values = gr.State({})  # stage -> flat form values the user set
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                self.stage = gr.Radio(stage_choices(), value=first, label="Stage", elem_id="train-stage")
                self.stage_note = gr.Markdown(stage_note(first), elem_id="train-stage-note")
                with gr.Row():
                    self.model = gr.Dropdown(
                        [default_model()],
                        value=default_model(),
                        allow_custom_value=True,
                        label="Start from model",
                        info="The bundled model, a hub id, a local folder, or a finished run (run:<id>).",
                        elem_id="train-model",
                        scale=3,
                    )
                    self.reward = gr.Dropdown(
                        [],
                        allow_custom_value=True,
                        label="Reward model",
                        info="A finished reward-model run, or a local sequence-classifier folder.",
                        visible=False,
                        elem_id="train-reward",
                        scale=2,
                    )
                with gr.Row():
                    self.datasets = {
                        stage: gr.Dropdown(
                            [],
                            label=f"{stage_label(stage)} data",
                            visible=stage == first,
                            elem_id=f"train-data-{stage}",
                        )
                        for stage in stage_names()
                    }
                self.data_note = gr.Markdown(elem_id="train-data-note")
            with gr.Column(scale=2, variant="panel"):
                self.status = gr.HTML(IDLE, elem_id="train-status")
                with gr.Row():
                    self.start = gr.Button("Start training", variant="primary", elem_id="train-start")
                    self.stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
                self.message = gr.Markdown(elem_id="train-message")
        gr.Markdown("### Settings")
        self.settings_for = gr.Radio([first], value=first, label="Settings for stage", visible=False)
        self.form = SettingsForm()
        with gr.Row(equal_height=True):
            self.save = gr.Button("Save config (YAML)", size="md")
            self.load = gr.UploadButton("Load config", file_types=[".yaml", ".yml"], size="md")
            self.show_command = gr.Button("Show command", size="md")
        self.saved = gr.File(label="Config files", file_count="multiple", visible=False, interactive=False)
        with gr.Accordion("Command line", open=False, visible=False) as self.command_box:
            self.commands = gr.Code(language="shell", label="Run it from a terminal", lines=4)
            self.yaml = gr.Code(language="yaml", label="Config", lines=12, max_lines=40)
        self.timer = gr.Timer(REFRESH_SECONDS)

    # -- what the tab shows for a selection

    def pickers(self, selection: str, inputs: dict) -> dict:
        """Model, reward-model and data pickers for the selected stage or pipeline, choices refreshed."""
        stages = stages_of(selection)
        finished = finished_runs(self.runner)
        updates: dict = {self.model: gr.update(choices=model_choices(finished))}
        reward_needed = get_stage(stages[0]).scored_by_reward_model
        rewards = reward_choices(finished) if reward_needed else []
        current = inputs.get(self.reward)  # kept if typed in (a folder) or still offered; else the newest
        keep = current and (not current.startswith(RUN_PREFIX) or current in [v for _, v in rewards])
        updates[self.reward] = gr.update(
            visible=reward_needed,
            choices=rewards,
            value=current if keep else (rewards[0][1] if rewards else None),
        )
        notes = []
        for stage, dropdown in self.datasets.items():
            if stage not in stages:
                updates[dropdown] = gr.update(visible=False)
                continue
            update, reasons = dataset_picker(self.runner, stage, inputs.get(dropdown))
            updates[dropdown] = {**update, "visible": True}
            if not update["choices"]:
                notes.append(
                    f"**No dataset in the library fits {stage_label(stage)}.** "
                    "Import one in the Data tab." + "".join(f"\n- {reason}" for reason in reasons)
                )
        updates[self.data_note] = "\n\n".join(notes)
        updates[self.stage_note] = stage_note(selection)
        return updates

    def show_stage(self, selection: str, editing: str, values: dict) -> dict:
        stages = stages_of(selection)
        return {
            **self.form.show(editing, values.get(editing) or self.form.defaults(editing)),
            self.editing: editing,
            self.values: values,
            self.settings_for: gr.update(
                choices=[(stage_label(s), s) for s in stages], value=editing, visible=len(stages) > 1
            ),
        }

    def remember(self, inputs: dict) -> dict:
        """The per-stage values with the form's current values stored under the stage it shows."""
        editing = inputs[self.editing]
        return {**inputs[self.values], editing: self.form.read(editing, inputs)}

    # -- handlers

    def on_stage(self, inputs: dict) -> dict:
        selection = inputs[self.stage]
        values = self.remember(inputs)
        return {
            **self.pickers(selection, inputs),
            **self.show_stage(selection, stages_of(selection)[0], values),
        }

    def on_edit(self, inputs: dict) -> dict:
        return self.show_stage(inputs[self.stage], inputs[self.settings_for], self.remember(inputs))

    def on_open(self, inputs: dict) -> dict:
        """Choices refreshed when the tab is opened: new datasets and finished runs appear."""
        return {**self.pickers(inputs[self.stage], inputs), self.status: self.describe(inputs[self.launched])}

    def on_page_load(self, inputs: dict) -> dict:
        selection, editing = inputs[self.stage], inputs[self.editing]
        return {**self.on_open(inputs), **self.show_stage(selection, editing, inputs[self.values])}

    def on_memory(self, inputs: dict) -> str:
        """The expected memory of the chosen model at the form's precision and LoRA settings."""
        return self.form.memory_note(inputs[self.model], inputs[self.editing], inputs, self.runner.workspace)

    def configs(self, inputs: dict, values: dict) -> list[JobConfig]:
        """One config per stage of the selection; ConfigError lines carry the stage in a pipeline."""
        stages = stages_of(inputs[self.stage])
        configs, errors = [], []
        for stage in stages:
            data = nest(values.get(stage) or self.form.defaults(stage))
            data.update(
                stage=stage, model=inputs[self.model] or "", dataset=inputs[self.datasets[stage]] or ""
            )
            if len(stages) == 1 and get_stage(stage).scored_by_reward_model:
                data["reward_model"] = inputs[self.reward] or ""
            try:
                configs.append(config_from_dict(data))
            except ConfigError as error:
                errors += [f"{stage} {line}" if len(stages) > 1 else line for line in error.errors]
        if errors:
            raise ConfigError(errors)
        return configs

    def on_start(self, inputs: dict, request: gr.Request) -> dict:
        require_login(request, "start training")
        values = self.remember(inputs)
        selection = inputs[self.stage]
        try:
            configs = self.configs(inputs, values)
            if len(configs) == 1:
                launched = {"run": self.runner.submit(configs[0])}
            else:
                launched = {"pipeline": self.runner.start(selection, configs).pipeline_id}
        except ConfigError as error:
            refused = "**Not started.** Fix these first:\n" + "".join(f"\n- {line}" for line in error.errors)
            return {self.message: refused, self.values: values}
        return {
            self.message: "Started: follow the curves in the **Monitor** tab.",
            self.launched: launched,
            self.values: values,
            self.status: self.describe(launched),
        }

    def target(self, launched: dict) -> tuple[str, str] | None:
        """What Stop stops: this browser's pipeline or run while active, else the workspace's training."""
        jobs = self.runner.jobs
        pipeline = self.runner.get(launched.get("pipeline", ""))
        if pipeline is not None and pipeline.state == "running":
            return "pipeline", pipeline.pipeline_id
        if launched.get("run") and jobs.is_active(launched["run"]):
            return "run", launched["run"]
        active = jobs.running()
        if active is None:
            return None
        owner = self.runner.pipeline_of(active)
        if owner is not None and owner.state == "running":
            return "pipeline", owner.pipeline_id
        return "run", active

    def on_stop(self, launched: dict, request: gr.Request) -> str:
        require_login(request, "stop training")
        target = self.target(launched)
        if target is None:
            return "Nothing is training or waiting."
        kind, ident = target
        if kind == "pipeline":
            self.runner.stop(ident)
        else:
            self.runner.jobs.stop(ident)
        return f"Stopping {kind} `{ident}`…"

    def describe(self, launched: dict) -> str:
        """The status panel: this browser's run or pipeline, else the workspace's active run."""
        jobs = self.runner.jobs
        pipeline = self.runner.get(launched.get("pipeline", ""))
        run_id = pipeline.last_run if pipeline else launched.get("run") or jobs.running()
        parts = [pipeline_html(pipeline)] if pipeline else []
        status = jobs.status(run_id) if run_id else None
        if status is None:
            return "".join(parts) or IDLE
        rows = self.reader.rows(run_dir(self.runner.workspace, run_id))
        note = queue_note(jobs.queue_position(run_id), jobs.running())
        return "".join(parts) + progress_html(status, training_progress(status, rows), note)

    def on_save(self, inputs: dict) -> dict:
        values = self.remember(inputs)
        folder = Path(tempfile.mkdtemp(prefix="rlhf-studio-config-"))
        paths = []
        for file_name, config in self.named_configs(inputs, values):
            path = folder / file_name
            path.write_text(config_yaml(config, file_name), encoding="utf-8")
            paths.append(str(path))
        return {self.saved: gr.update(value=paths, visible=True), self.values: values}

    def named_configs(self, inputs: dict, values: dict) -> list[tuple[str, JobConfig]]:
        """(file name, config) per stage; a pipeline's later stages point at placeholder run ids."""
        configs = self.configs(inputs, values)
        if len(configs) == 1:
            return [(config_file_name(configs[0]), configs[0])]
        selection = inputs[self.stage]
        run_ids = placeholder_run_ids(selection)
        linked = [
            linked_config(c, link, run_ids) for c, link in zip(configs, PIPELINES[selection], strict=True)
        ]
        for config in linked:
            config.parent_run = None  # loading the file fills it in from the run:<id> put into `model`
        return [(f"{index}-{config_file_name(c)}", c) for index, c in enumerate(linked, start=1)]

    def on_show_command(self, inputs: dict) -> dict:
        values = self.remember(inputs)
        named = self.named_configs(inputs, values)
        shell, yaml_text = [], []
        for index, (file_name, config) in enumerate(named, start=1):
            text = command_text(config, self.runner.workspace, file_name=file_name)
            if len(named) > 1:
                after = " (once the stages before it completed: put their run ids into its YAML)"
                shell.append(f"# stage {index}: {config.stage}{after if index > 1 else ''}")
            shell += [*shell_lines(text), ""]
            yaml_text.append(text.yaml)
        return {
            self.commands: "\n".join(shell).strip(),
            self.yaml: "\n---\n".join(yaml_text),
            self.command_box: gr.update(visible=True, open=True),
            self.values: values,
        }

    def on_load(self, inputs: dict) -> dict:
        path = inputs[self.load]
        config = load_config(path)
        values = {**inputs[self.values], config.stage: self.form.from_config(config)}
        picked = {**inputs, self.datasets[config.stage]: config.dataset}
        updates = {
            **self.pickers(config.stage, picked),
            **self.show_stage(config.stage, config.stage, values),
        }
        updates[self.datasets[config.stage]]["value"] = config.dataset
        updates[self.model] = {**updates[self.model], "value": config.model}
        if hasattr(config, "reward_model"):
            updates[self.reward] = {**updates[self.reward], "value": config.reward_model}
        updates[self.stage] = config.stage
        updates[self.message] = f"Loaded `{Path(path).name}`: {config.stage} on `{config.dataset}`."
        return updates


def build_train_tab(
    runner: PipelineRunner, reader: MetricsReader, tab: gr.Tab, studio: gr.Blocks
) -> gr.State:
    """Lay out the Train tab and wire its events; returns the state that names what this browser started."""
    view = TrainTab(runner, reader)
    form_inputs = {view.stage, view.editing, view.values, view.settings_for, *view.form.widgets.values()}
    inputs = form_inputs | {view.model, view.reward, view.launched, *view.datasets.values()}
    everything = [
        view.model, view.reward, view.data_note, view.stage_note, view.editing, view.values,
        view.settings_for, view.form.stage_box, view.stage, view.message, view.status,
        *view.datasets.values(), *view.form.widgets.values(),
    ]  # fmt: skip
    view.stage.input(view.on_stage, inputs, everything)
    view.settings_for.input(view.on_edit, form_inputs, everything)
    tab.select(view.on_open, inputs, everything, show_progress="hidden")
    memory_inputs = {view.model, view.editing, *view.form.memory_widgets()}
    studio.load(view.on_page_load, inputs, everything, show_progress="hidden").then(
        view.on_memory, memory_inputs, view.form.memory, show_progress="hidden"
    )
    memory_changes = [view.model.change, view.editing.change, *(w.change for w in view.form.memory_widgets())]
    gr.on(memory_changes, view.on_memory, memory_inputs, view.form.memory, show_progress="hidden")
    view.timer.tick(view.describe, view.launched, view.status, show_progress="hidden", concurrency_limit=None)
    view.start.click(
        user_errors(view.on_start), inputs, [view.message, view.launched, view.values, view.status]
    )
    view.stop.click(user_errors(view.on_stop), view.launched, view.message)
    view.save.click(user_errors(view.on_save), inputs, [view.saved, view.values])
    view.show_command.click(
        user_errors(view.on_show_command), inputs, [view.commands, view.yaml, view.command_box, view.values]
    )
    view.load.upload(user_errors(view.on_load), inputs | {view.load}, everything)
    return view.launched
