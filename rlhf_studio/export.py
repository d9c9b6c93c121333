"""Export a finished run as a standalone model: merged weights (safetensors), the tokenizer with its chat
template, the generation config and a model card; zip it for a browser download or push it to the Hub.

    folder = export_model(workspace, "20261122-141501-dpo-3f2a")  # runs/<id>/export/<id>/
    zip_export(folder)                                             # runs/<id>/export/<id>.zip
    push_to_hub(folder, "me/pirate-smollm")                        # -> https://huggingface.co/me/pirate-smollm

    python -m rlhf_studio export RUN_ID [--out DIR] [--zip] [--push REPO_ID] [--public]

A LoRA run is merged into its base exactly as a later stage starts from it (`load_model_chain` follows a chain
of adapter runs down to a full model and merges each adapter), so the export loads with plain transformers,
no PEFT, and computes what the run computed. Reward-model runs export as one-label sequence classifiers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from datetime import datetime
from pathlib import Path

from rlhf_studio.config.checks import is_reward_model
from rlhf_studio.models import (
    BUNDLED_HUB_ID,
    BUNDLED_MODEL,
    HUB_ID,
    RUN_PREFIX,
    ModelError,
    Progress,
    load_tokenizer,
)
from rlhf_studio.runner.runs import (
    COMPLETED,
    MODEL_DIR,
    RunError,
    RunStatus,
    key_metric,
    lineage,
    read_status,
    run_dir,
)
from rlhf_studio.stages import stage_label
from rlhf_studio.workspace import Workspace

EXPORT_DIR = "export"  # inside the run folder: export/<run id>/ and export/<run id>.zip
HUB_URL = "https://huggingface.co"


class ExportError(ValueError):
    """A run could not be exported, zipped or pushed; the message is one sentence for the user."""


def export_model(
    workspace: Workspace, run_id: str, out_dir: Path | None = None, progress: Progress | None = None
) -> Path:
    """Write run `run_id`'s model, merged, as a standalone folder; return the folder.

    The folder is written under a hidden temporary name and renamed into place, so a half-written export
    never looks complete. The default folder (runs/<id>/export/<id>/) is replaced by a new export; a folder
    given as `out_dir` must not exist yet or be empty.
    """
    report = progress or (lambda fraction, text: None)
    status, model_dir = finished_model(workspace, run_id)
    target = (
        Path(out_dir).expanduser().resolve() if out_dir else run_dir(workspace, run_id) / EXPORT_DIR / run_id
    )
    if out_dir and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"{target} already exists and is not empty: choose a new folder for the export.")
    report(0.05, f"Loading {run_id} (adapters are merged into their base)")
    try:
        model, tokenizer = load_merged(workspace, run_id, model_dir)
    except (ModelError, RunError) as error:
        raise ExportError(f"Run {run_id} cannot be exported: {error}") from error
    report(0.6, "Saving the merged model as safetensors")
    partial = target.with_name(f".{target.name}.partial-{secrets.token_hex(2)}")
    try:
        partial.mkdir(parents=True)
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)  # writes chat_template.jinja when the tokenizer has a template
        report(0.9, "Writing the model card")
        card = model_card(workspace, status, base_model(workspace, run_id), is_reward_model(model_dir))
        (partial / "README.md").write_text(card, encoding="utf-8")
        replace_folder(partial, target)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise ExportError(f"Could not write the export to {target}: {error.strerror or error}.") from error
    report(1.0, f"Exported to {target}")
    return target


def finished_model(workspace: Workspace, run_id: str) -> tuple[RunStatus, Path]:
    """The run's status and model folder; refused unless the run completed and saved a model."""
    try:
        folder = run_dir(workspace, run_id)
    except RunError as error:
        raise ExportError(str(error)) from error
    status = read_status(folder)
    if status is None:
        raise ExportError(f"There is no run {run_id}.")
    if status.state != COMPLETED:
        raise ExportError(f"Run {run_id} is {status.state}: only a completed run can be exported.")
    model_dir = folder / MODEL_DIR
    if not model_dir.is_dir():
        raise ExportError(f"Run {run_id} completed but saved no model, so there is nothing to export.")
    return status, model_dir


def load_merged(workspace: Workspace, run_id: str, model_dir: Path):
    """(model with every adapter merged, tokenizer): the same loading as training's `model: run:<id>`."""
    from rlhf_studio.chat.sources import model_source
    from rlhf_studio.training.common import CAUSAL, REWARD, load_model_chain

    reward = is_reward_model(model_dir)
    model = load_model_chain(str(model_dir), REWARD if reward else CAUSAL, {}, workspace)
    # training saves a tokenizer next to every model; a run without one uses the nearest in its lineage
    tokenizer = load_tokenizer(model_source(RUN_PREFIX + run_id, workspace).tokenizer_source, workspace)
    if reward and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # the score is read at the last non-pad token
    return model.eval(), tokenizer


def replace_folder(partial: Path, target: Path) -> None:
    """Move a complete folder into place; an older export there is removed only after the rename."""
    if not target.exists():
        os.replace(partial, target)
        return
    old = target.with_name(f".{target.name}.old-{secrets.token_hex(2)}")
    os.replace(target, old)
    os.replace(partial, target)
    shutil.rmtree(old)


# ---------------------------------------------------------------- model card


def base_model(workspace: Workspace, run_id: str) -> str:
    """The model the oldest run of the lineage started from (a hub id, the bundled model or a folder)."""
    oldest = lineage(workspace, run_id)[-1]
    status = read_status(run_dir(workspace, oldest))
    return status.model if status else ""


def model_card(workspace: Workspace, status: RunStatus, base: str, reward: bool) -> str:
    """README.md: front matter for the Hub, then what the model is, where it came from and how to load it."""
    stage = stage_label(status.stage)
    hub_base = BUNDLED_HUB_ID if base == BUNDLED_MODEL else base if HUB_ID.match(base) else None
    front = ["---", "library_name: transformers", "tags:", "- rlhf-studio", f"- {status.stage}"]
    front += [f"base_model: {hub_base}"] if hub_base else []
    front += [f"pipeline_tag: {'text-classification' if reward else 'text-generation'}", "---"]
    chain = lineage(workspace, status.run_id)
    metric = key_metric(status.summary or {})
    rows = [
        ("stage", stage),
        ("base model", f"`{base}`"),
        ("dataset", f"`{status.dataset}`"),
        ("lineage", " ← ".join(f"`{run}`" for run in chain) + f" ← `{base}`"),
        ("trained", f"{status.started or '?'} to {status.ended or '?'}"),
        ("exported", datetime.now().astimezone().isoformat(timespec="seconds")),
    ] + ([(metric[0], f"{metric[1]:.4g}")] if metric else [])
    auto_class = "AutoModelForSequenceClassification" if reward else "AutoModelForCausalLM"
    use = (
        "The reward is the single logit: `model(**tokenizer(text, return_tensors='pt')).logits[0, 0]`."
        if reward
        else "Chat with it through the tokenizer's chat template (`tokenizer.apply_chat_template`)."
    )
    return "\n".join(
        [
            *front,
            "",
            f"# {status.run_id}",
            "",
            f"Trained with RLHF Studio ({stage}); LoRA adapters, if any, are merged into the weights.",
            "",
            "| | |",
            "|---|---|",
            *(f"| {name} | {value} |" for name, value in rows),
            "",
            "## Use",
            "",
            "```python",
            f"from transformers import {auto_class}, AutoTokenizer",
            "",
            f'model = {auto_class}.from_pretrained("PATH_OR_REPO_ID")',
            'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO_ID")',
            "```",
            "",
            use,
            "",
        ]
    )


# ---------------------------------------------------------------- zip and Hub


def zip_export(folder: Path) -> Path:
    """Zip an export folder next to it (<folder>.zip, files under <folder name>/); return the zip."""
    folder = Path(folder)
    target = folder.with_name(f"{folder.name}.zip")
    partial = folder.with_name(f".{folder.name}.zip.partial-{secrets.token_hex(2)}")
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                # safetensors barely compress: storing them is as small and much faster
                stored = path.suffix == ".safetensors"
                archive.write(
                    path,
                    f"{folder.name}/{path.relative_to(folder)}",
                    compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                )
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ExportError(f"Could not write {target}: {error.strerror or error}.") from error
    return target


def hub_offline() -> bool:
    """Read at call time, as huggingface_hub reads it at import: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in {"1", "ON", "YES", "TRUE"}


def hub_token(repo_id: str, token: str | None = None) -> str:
    """The token a push to `repo_id` would use; refused before any network call when the push cannot work:
    offline, a malformed repo id, no token (argument, HF_TOKEN, or the one `hf auth login` stored)."""
    from huggingface_hub import get_token

    if hub_offline():
        raise ExportError(
            "The studio is offline (HF_HUB_OFFLINE=1): unset it to push to the Hugging Face Hub."
        )
    if not HUB_ID.match((repo_id or "").strip()):
        raise ExportError(f"'{repo_id}' is not a Hub repo id: write it as owner/name, e.g. me/my-model.")
    token = (token or "").strip() or get_token()
    if not token:
        raise ExportError(
            "No Hugging Face token: paste a token with write access, set HF_TOKEN, or run `hf auth login`."
        )
    return token


def push_to_hub(folder: Path, repo_id: str, token: str | None = None, private: bool = True) -> str:
    """Upload an export folder to a model repo on the Hub (created if missing); return the repo's URL.
    Every refusal, from `hub_token` or from the Hub, is an ExportError with one sentence."""
    import httpx2  # huggingface_hub's HTTP client: the base class of its errors and of connection failures
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    repo_id, token = repo_id.strip(), hub_token(repo_id, token)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            commit_message=f"Upload {Path(folder).name} (RLHF Studio)",
        )
    except HfHubHTTPError as error:
        raise ExportError(hub_refusal(error, repo_id)) from error
    except (httpx2.HTTPError, OSError) as error:  # no answer: DNS, refused connection, timeout, offline
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(
            f"Could not reach the Hugging Face Hub ({detail}): check the connection."
        ) from error
    return f"{HUB_URL}/{repo_id}"


def hub_refusal(error, repo_id: str) -> str:
    """One sentence for an HTTP error the Hub answered with."""
    status = error.response.status_code if error.response is not None else None
    if status == 401:
        return "The Hub refused the token (invalid or expired): paste a valid token with write access."
    if status == 403:
        return f"The token may not write to {repo_id}: use a token with write access to that owner."
    detail = (str(error).strip().splitlines() or ["no detail"])[0]
    return f"The Hub refused the upload to {repo_id} ({status or 'error'}: {detail})."
