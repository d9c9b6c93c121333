"""What the tabs' pickers offer, read from the stage registry and the runs: stages and pipelines, finished
runs by what they hold (policy or reward model), and the datasets that fit a stage (with the reasons others do
not). Every tab takes its choices from here, so a new stage's runs appear wherever their product fits.
"""

from __future__ import annotations

import gradio as gr

from rlhf_studio.data import list_datasets
from rlhf_studio.models import BUNDLED_MODEL, RUN_PREFIX, default_model
from rlhf_studio.runner.pipelines import (
    PIPELINES,
    PipelineRunner,
    available_pipelines,
    pipeline_stages,
    pipeline_title,
)
from rlhf_studio.runner.runs import COMPLETED
from rlhf_studio.stages import (
    POLICY,
    REWARD_MODEL,
    all_stages,
    find_stage,
    stage_fit,
    stage_label,
    stages_producing,
)


def stage_choices() -> list[tuple[str, str]]:
    singles = [(stage.label, stage.name) for stage in all_stages()]
    return singles + [(pipeline_title(name), name) for name in available_pipelines()]


def stage_note(selection: str) -> str:
    """One line under the stage picker: the config class's summary, or what a pipeline chains."""
    stage = find_stage(selection)
    if stage is not None:
        return f"**{stage.label}:** {stage.summary} **Pick it when** {stage.when}"
    stages = [stage_label(name) for name in pipeline_stages(selection)]
    scored = any(link.reward_model_from for link in PIPELINES[selection])
    return (
        f"**Pipeline:** {', then '.join(stages)}; each stage starts from the model of the stage before it"
        + (", and the reward-model run scores the RL stage" if scored else "")
        + ". Pick one dataset per stage; a failed or stopped stage ends the pipeline."
    )


def stages_of(selection: str) -> list[str]:
    return [selection] if find_stage(selection) else pipeline_stages(selection)


def finished_runs(runner: PipelineRunner) -> list:
    """The completed runs, newest first (one read of every status file: take it once per event)."""
    return [row for row in runner.jobs.runs() if row.state == COMPLETED]


def run_choices(finished: list, stages: tuple[str, ...]) -> list[tuple[str, str]]:
    """Finished runs of these stages as run:<id> choices, newest first."""
    return [
        (f"{RUN_PREFIX}{row.run_id} · {row.stage} on {row.dataset}", RUN_PREFIX + row.run_id)
        for row in finished
        if row.stage in stages
    ]


def policy_choices(finished: list) -> list[tuple[str, str]]:
    """Finished runs whose model is a policy (a language model): chat panes, eval candidates."""
    return run_choices(finished, stages_producing(POLICY))


def reward_choices(finished: list) -> list[tuple[str, str]]:
    """Finished reward-model runs: PPO's scorer, the chat's RM score, an evaluation's judge."""
    return run_choices(finished, stages_producing(REWARD_MODEL))


def model_choices(finished: list) -> list:
    """What a stage can start from and a chat pane can load: the default models, then every policy run."""
    base = [default_model()] + ([BUNDLED_MODEL] if default_model() != BUNDLED_MODEL else [])
    return base + policy_choices(finished)


def dataset_picker(runner: PipelineRunner, stage: str, current: str | None) -> tuple[dict, list[str]]:
    """The dropdown update for one stage's data and the reasons the other datasets do not fit."""
    fitting, reasons = [], []
    for manifest in list_datasets(runner.workspace):
        fits, reason = stage_fit(manifest.kind, stage, manifest.format)
        if fits:
            fitting.append(manifest.name)
        else:
            reasons.append(f"`{manifest.name}`: {reason}")
    value = current if current in fitting else (fitting[0] if fitting else None)
    return gr.update(choices=fitting, value=value), reasons
