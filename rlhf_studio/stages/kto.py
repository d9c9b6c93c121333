"""KTO (Kahneman-Tversky optimisation): TRL's KTOTrainer on unpaired feedback, thumbs up or down per reply.

    python -m rlhf_studio train kto.yaml      # stage: kto, model: run:<sft run>, dataset: good/bad rows

Rows are (prompt, completion, label): desirable replies are pushed up and undesirable ones down, each against
the reference, so no pairs are needed. A preference dataset works too: each pair becomes one desirable row
(the chosen reply) and one undesirable row (the rejected one). The reference is the starting model, as in
DPO: with LoRA the adapter-disabled base (one copy of the weights), else a frozen copy. TRL estimates the KL
term from mismatched prompt/completion pairs of a batch, so a batch needs at least two rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_studio.config.base import JobConfig, _field, _override
from rlhf_studio.stages.base import POLICY, UP, Check, DataNeed, Stage
from rlhf_studio.workspace import Workspace

KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")


@dataclass(kw_only=True)
class KTOJobConfig(JobConfig):
    """KTO (TRL KTOTrainer): learn from replies marked good or bad, no pairs needed; the reference is the
    starting model. Preference pairs are split into one good and one bad reply."""

    stage: str = _override(JobConfig, "stage", "kto", init=False)
    max_steps: int | None = _override(JobConfig, "max_steps", 40)
    learning_rate: float = _override(JobConfig, "learning_rate", 5e-5)
    eval_steps: int = _override(JobConfig, "eval_steps", 20)
    beta: float = _field(
        0.1,
        "How far the model may move from the reference: higher beta, smaller moves.",
        label="β (KL strength)",
        basic=True,
    )
    desirable_weight: float = _field(
        1.0, "Weight of the desirable rows' loss (raise it when they are fewer than the undesirable ones)."
    )
    undesirable_weight: float = _field(1.0, "Weight of the undesirable rows' loss.")
    loss_type: str = _field(
        "kto", "KTO loss variant (TRL loss_type): kto, or apo_zero_unpaired.", choices=KTO_LOSS_TYPES
    )


def checks(config: KTOJobConfig) -> list[Check]:
    return [
        ("beta", config.beta > 0, "must be above 0"),
        ("desirable_weight", config.desirable_weight > 0, "must be above 0"),
        ("undesirable_weight", config.undesirable_weight > 0, "must be above 0"),
        ("loss_type", config.loss_type in KTO_LOSS_TYPES, f"must be one of {', '.join(KTO_LOSS_TYPES)}"),
        (
            "per_device_train_batch_size",
            config.per_device_train_batch_size >= 2,
            "KTO needs at least 2 rows per batch (its KL estimate pairs rows of a batch)",
        ),
    ]


def unpaired(dataset):
    """Preference pairs as KTO rows (rlhf_studio.data.unpair_rows); unpaired rows as they are."""
    from rlhf_studio.data import unpair_rows

    if dataset is None or "chosen" not in dataset.column_names:
        return dataset

    def split(batch: dict) -> dict:
        pairs = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        rows = list(unpair_rows(pairs))
        return {key: [row[key] for row in rows] for key in ("prompt", "completion", "label")}

    return dataset.map(split, batched=True, remove_columns=dataset.column_names, desc="Unpairing for KTO")


def build_trainer(config: KTOJobConfig, run_dir: Path, workspace: Workspace, callbacks: list):
    """(trainer, resolved starting model) for a KTO job."""
    from trl import KTOConfig, KTOTrainer

    from rlhf_studio.training.common import (
        CAUSAL,
        frozen_reference,
        load_splits,
        load_starting_point,
        trainer_inputs,
    )
    from rlhf_studio.training.common import training_arguments as shared

    start = load_starting_point(config, workspace, CAUSAL)
    train, evaluation = load_splits(config, workspace, start.tokenizer)
    args = KTOConfig(
        **shared(config, run_dir, has_eval=evaluation is not None),
        beta=config.beta,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
        loss_type=config.loss_type,
    )
    inputs = trainer_inputs(config, start, unpaired(train), unpaired(evaluation), callbacks, "CAUSAL_LM")
    return KTOTrainer(ref_model=frozen_reference(inputs), args=args, **inputs), start.source


FEEDBACK = DataNeed(
    "unpaired_preference",
    "labelled completions (prompt, completion, label)",
    uses={"preference": "each pair becomes one desirable and one undesirable example for KTO"},
)

STAGE = Stage(
    name="kto",
    label="KTO",
    when="your feedback is thumbs up or down on single replies rather than pairs of replies.",
    config=KTOJobConfig,
    data=FEEDBACK,
    produces=POLICY,
    charts=("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl", "eval_rewards/margins"),
    learning={"eval_rewards/margins": UP, "rewards/margins": UP},
    build_trainer=build_trainer,
    checks=checks,
    rlhf=True,
)
