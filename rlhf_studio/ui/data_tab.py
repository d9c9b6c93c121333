"""Data tab: upload (or pick a demo set) → detected format → counts and reasons → preview → lengths → save."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import pandas as pd

from rlhf_studio.data import (
    FORMATS,
    DataError,
    DataReport,
    check_file,
    import_dataset,
    list_datasets,
    parse_column_map,
)
from rlhf_studio.data.preview import display_rows, token_lengths
from rlhf_studio.data.problems import listed
from rlhf_studio.models import BUNDLED_MODEL, default_model, load_tokenizer
from rlhf_studio.plots import length_histogram
from rlhf_studio.stages import stage_fit, stage_names
from rlhf_studio.ui.errors import user_errors
from rlhf_studio.workspace import Workspace

DEMO_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo"
FULL_CHECK_BYTES = 50 * 1024 * 1024  # larger files are previewed; the save streams the whole file
PREVIEW_RECORDS = 2000
AUTO = "auto-detect"
PROBLEM_COLUMNS = ["line", "field", "reason", "detail"]
LIBRARY_COLUMNS = ["name", "kind", "format", "style", "train", "eval", "dropped", "created"]


def demo_sets() -> list[str]:
    return sorted(path.name for path in DEMO_DIR.glob("*.jsonl"))


def source_inputs() -> tuple:
    """The file upload, the demo picker, and the format and column-mapping overrides with their button."""
    upload = gr.File(
        label="Upload preference or SFT data (JSONL, JSON, CSV, TSV, Parquet)",
        file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet"],
    )
    demo = gr.Dropdown(demo_sets(), value=None, label="…or pick a bundled demo set")
    with gr.Accordion("Format and column mapping", open=False):
        format_name = gr.Dropdown([AUTO, *FORMATS], value=AUTO, label="Format")
        mapping = gr.Textbox(label="Column mapping", placeholder="prompt=question, chosen=good, rejected=bad")
        recheck = gr.Button("Check again")
    return upload, demo, format_name, mapping, recheck


def build_data_tab(workspace: Workspace) -> None:
    checked_file = gr.State(None)
    checked_rows = gr.State([])
    with gr.Row():
        with gr.Column(scale=1):
            upload, demo, format_name, mapping, recheck = source_inputs()
            verdict = gr.Markdown(elem_id="data-verdict")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="data-summary")
            problems = gr.Dataframe(headers=PROBLEM_COLUMNS, label="Dropped rows and why", interactive=False)
    preview = gr.Dataframe(
        label="Normalized rows (preview)",
        interactive=False,
        wrap=True,
        max_height=420,
        elem_id="data-preview",
    )
    with gr.Row():
        model = gr.Dropdown(
            [BUNDLED_MODEL], value=default_model(), allow_custom_value=True, label="Tokenizer"
        )
        histogram = gr.Plot(label="Lengths in tokens")
    with gr.Row():
        name = gr.Textbox(label="Dataset name", placeholder="letters, digits, - and _")
        eval_fraction = gr.Slider(0.0, 0.5, value=0.1, step=0.05, label="Eval split")
        seed = gr.Number(0, precision=0, label="Split seed")
        save = gr.Button("Save to library", variant="primary")
    saved = gr.Markdown(elem_id="data-saved")
    library = gr.Dataframe(
        library_table(workspace), label="Library", interactive=False, elem_id="data-library"
    )

    check_inputs = [checked_file, format_name, mapping]
    check_outputs = [verdict, summary, problems, preview, name, checked_rows]

    def lengths(rows, model_spec, progress=gr.Progress()):
        return lengths_figure(workspace, rows, model_spec, progress)

    def store(path, chosen_format, mapping_text, dataset_name, fraction, split_seed):
        message = save_dataset(
            workspace, path, chosen_format, mapping_text, dataset_name, fraction, split_seed
        )
        return message, library_table(workspace)

    upload.upload(lambda file: file, upload, checked_file).then(
        check_and_show, check_inputs, check_outputs
    ).then(lengths, [checked_rows, model], histogram)
    demo.input(lambda pick: str(DEMO_DIR / pick) if pick else None, demo, checked_file).then(
        check_and_show, check_inputs, check_outputs
    ).then(lengths, [checked_rows, model], histogram)
    recheck.click(check_and_show, check_inputs, check_outputs).then(lengths, [checked_rows, model], histogram)
    model.change(lengths, [checked_rows, model], histogram)
    save.click(store, [*check_inputs, name, eval_fraction, seed], [saved, library])


def run_check(path: str | None, chosen_format: str, mapping_text: str) -> DataReport:
    if not path:
        raise DataError("Upload a file or pick a demo set first.")
    column_map = parse_column_map(mapping_text) if mapping_text and mapping_text.strip() else None
    preview = PREVIEW_RECORDS if Path(path).stat().st_size > FULL_CHECK_BYTES else None
    return check_file(
        path,
        format_name=None if chosen_format == AUTO else chosen_format,
        column_map=column_map,
        preview_rows=preview,
    )


def check_and_show(path, chosen_format, mapping_text):
    """Everything the tab shows about one check; a refused file is an explanation, not an exception."""
    try:
        report = run_check(path, chosen_format, mapping_text)
    except DataError as error:
        return f"**Problem:** {error}", "", empty_problems(), pd.DataFrame(), gr.update(), []
    problem_rows = [problem.to_dict() for problem in report.problems]
    problem_frame = pd.DataFrame(problem_rows, columns=PROBLEM_COLUMNS) if problem_rows else empty_problems()
    if not report.ok:
        refused = f"**Refused:** {report.message}"
        return refused, columns_note(report), problem_frame, pd.DataFrame(), gr.update(), []
    verdict = f"**Detected: {report.format}** — {report.kind} data, {report.style} style"
    if report.alternatives:
        verdict += f"\n\nAlso matches: {', '.join(report.alternatives)} (choose under *Format*)."
    preview = pd.DataFrame(display_rows(report.rows))
    return verdict, summary_markdown(report), problem_frame, preview, suggest_name(path), report.rows


def summary_markdown(report: DataReport) -> str:
    scope = (
        f"first {report.records_read} records (large file)"
        if report.preview
        else f"{report.records_read} records"
    )
    lines = [
        f"**{report.usable} usable rows** from {scope}; **{report.dropped} dropped**.",
        *(f"- {reason}: {count}" for reason, count in report.drop_reasons.items()),
        "",
        "| stage | fits | why |",
        "|---|---|---|",
        *(f"| {stage} | {'yes' if fits else 'no'} | {why} |" for stage, (fits, why) in stage_table(report)),
        "",
        columns_note(report),
    ]
    return "\n".join(lines)


def stage_table(report: DataReport) -> list[tuple[str, tuple[bool, str]]]:
    return [(stage, stage_fit(report.kind, stage, report.format)) for stage in stage_names()]


def columns_note(report: DataReport) -> str:
    note = f"Columns found: {listed(report.columns) or 'none'}."
    if report.unused_columns:
        note += f" Not used: {listed(report.unused_columns)}."
    return note


def suggest_name(path: str) -> str:
    stem = re.sub(r"[^\w-]+", "-", Path(path).stem).strip("-_") or "dataset"
    return stem[:60]


def empty_problems() -> pd.DataFrame:
    return pd.DataFrame(columns=PROBLEM_COLUMNS)


@user_errors
def lengths_figure(workspace: Workspace, rows: list[dict], model_spec: str, progress):
    """Token lengths of the checked rows in the chosen model's tokenizer (the bundled one converts once)."""
    if not rows:
        return None
    tokenizer = load_tokenizer(model_spec, workspace, lambda fraction, desc: progress(fraction, desc=desc))
    return length_histogram(token_lengths(rows, tokenizer))


@user_errors
def save_dataset(workspace, path, chosen_format, mapping_text, dataset_name, fraction, split_seed) -> str:
    if not path:
        raise DataError("Upload a file or pick a demo set first.")
    manifest = import_dataset(
        workspace,
        path,
        (dataset_name or "").strip(),
        format_name=None if chosen_format == AUTO else chosen_format,
        column_map=parse_column_map(mapping_text) if mapping_text and mapping_text.strip() else None,
        eval_fraction=float(fraction),
        seed=int(split_seed or 0),
    )
    return (
        f"Saved **{manifest.name}**: {manifest.rows_train} train + {manifest.rows_eval} eval "
        f"{manifest.kind} rows ({manifest.dropped} dropped)."
    )


def library_table(workspace: Workspace) -> pd.DataFrame:
    rows = [
        [m.name, m.kind, m.format, m.style, m.rows_train, m.rows_eval, m.dropped, m.created[:19]]
        for m in list_datasets(workspace)
    ]
    return pd.DataFrame(rows, columns=LIBRARY_COLUMNS)
