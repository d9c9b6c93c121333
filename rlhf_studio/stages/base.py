"""What the studio knows about a training stage: the Stage record every stage module fills in once.

A stage module (sft.py, reward.py, ...) declares its job config class, its checks, how it trains, and one
`STAGE = Stage(...)` with the facts the rest of the studio asks about: the tabs, the runner, the plots, the
report cards, the CLI and the pipelines read them from the registry and never name a stage.

Training is one of two shapes, both imported only inside the training child:
- `build_trainer(config, run_dir, workspace, callbacks) -> (trainer, start source)`: a TRL Trainer, which the
  shared loop (rlhf_studio.training.run_stage) trains, stops, saves and summarises;
- `train(job) -> summary`: a stage with its own loop (PPO), given the run's metrics log and stop flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlhf_studio.config.base import JobConfig
from rlhf_studio.workspace import Workspace

if TYPE_CHECKING:  # imported by the training child only: they pull in transformers
    from rlhf_studio.training.callbacks import GracefulStop, MetricsLog

# What a finished run of a stage holds, and so which pickers offer it.
POLICY = "policy"  # a language model: a starting point, a chat pane, a win-rate candidate
REWARD_MODEL = "reward model"  # a sequence classifier: a PPO scorer, the chat's RM score, an eval judge

# Which way a learning metric should move for the stage to have learned (report cards).
UP, DOWN, BOUNDED = "up", "down", "bounded"

Check = tuple[str, bool, str]  # (field, ok, reason when not ok)


@dataclass(frozen=True)
class DataNeed:
    """The dataset kinds a stage trains on: its own kind, and others it takes a part of (PPO: the prompts)."""

    kind: str  # the normalized kind it trains on (rlhf_studio.data.KINDS)
    description: str  # "preference pairs (prompt, chosen, rejected)"
    uses: dict[str, str] = field(default_factory=dict)  # another kind -> how the stage uses it
    refused_formats: dict[str, str] = field(default_factory=dict)  # a layout -> why it cannot be used
    own_kind_note: str = ""  # what the fit says for its own kind; default "<stage> trains on <description>"

    def fit(self, stage: str, kind: str, format_name: str | None = None) -> tuple[bool, str]:
        """(fits, reason) for training `stage` on a dataset of `kind` in layout `format_name`."""
        if format_name in self.refused_formats:
            return False, self.refused_formats[format_name]
        if kind == self.kind:
            return True, self.own_kind_note or f"{stage} trains on {self.description}"
        if kind in self.uses:
            return True, self.uses[kind]
        return False, f"{stage} needs {self.description}, but this dataset is {kind}"


DEMONSTRATIONS = DataNeed("sft", "demonstrations (prompt/completion, messages or text)")
PREFERENCE_PAIRS = DataNeed("preference", "preference pairs (prompt, chosen, rejected)")


OTHER_KINDS = ("sft", "preference", "unpaired_preference")  # kinds whose rows hold prompts too


def prompts_need(label: str) -> DataNeed:
    """Prompts for an online stage (PPO, GRPO, ...): prompt-only rows, or the prompts of any other kind."""
    return DataNeed(
        "prompt",
        "prompts",
        uses={
            kind: f"{label} takes the prompts of this dataset"
            for kind in ("sft", "preference", "unpaired_preference")
        },
        refused_formats={"text": f"{label} needs prompts, and plain text rows have no prompt to take"},
        own_kind_note=f"prompt-only rows feed {label}",
    )


@dataclass
class TrainingJob:
    """What a stage with its own loop gets from run_stage (rlhf_studio.training)."""

    config: JobConfig
    run_dir: Path
    workspace: Workspace
    resume_from: Path | None  # the checkpoint to continue from
    metrics: MetricsLog  # where each step's metrics row goes
    stop: GracefulStop  # set by SIGTERM, checked between steps


@dataclass(frozen=True)
class Stage:
    """Everything the studio asks about one training stage."""

    name: str  # the config's `stage`, in run ids and file names: "dpo"
    label: str  # how the UI, the model card and the pipelines write it: "DPO"
    when: str  # when to pick it, one line for the Train tab
    config: type[JobConfig]  # its job config class (the class docstring is the Train tab's one-line summary)
    data: DataNeed  # the datasets it trains on
    produces: str  # POLICY or REWARD_MODEL
    charts: tuple[str, ...]  # the Monitor's first charts, in order
    learning: dict[str, str]  # metric -> UP / DOWN / BOUNDED: what says it learned (report cards)
    build_trainer: Callable | None = None  # a TRL Trainer for the shared loop ...
    train: Callable[[TrainingJob], dict] | None = None  # ... or its own loop
    checks: Callable[[Any], list[Check]] = lambda config: []  # its own fields, beside the shared checks
    workspace_checks: Callable[[Any, Workspace], list[str]] = lambda config, workspace: []  # "field: reason"
    starts_from: tuple[str, ...] = (POLICY,)  # what its `model` may be
    rlhf: bool = False  # a policy tuned on feedback: the Chat tab's third default pane beside base and SFT
    launch: tuple[str, ...] | None = None  # the accelerate configs it may run under; None: every one

    def __post_init__(self) -> None:
        if (self.build_trainer is None) == (self.train is None):
            raise ValueError(f"stage {self.name}: give exactly one of build_trainer and train")

    @property
    def scored_by_reward_model(self) -> bool:
        """Whether its config names a reward model (`reward_model`): the Train tab shows that picker."""
        return "reward_model" in self.config.__dataclass_fields__

    @property
    def summary(self) -> str:
        return " ".join((self.config.__doc__ or "").split())

    def fit(self, kind: str, format_name: str | None = None) -> tuple[bool, str]:
        return self.data.fit(self.name, kind, format_name)
