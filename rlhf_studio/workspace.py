"""The workspace folder: datasets, runs and the model cache, kept across restarts.

Location: $RLHF_STUDIO_HOME if set; else, on a Hugging Face Space with persistent storage, /data/rlhf-studio;
else ./workspace under the current directory (which a Space without persistent storage loses on restart).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

HOME_ENV = "RLHF_STUDIO_HOME"
SPACE_DATA = Path("/data")  # where a Space mounts its persistent storage, when its owner added some


def on_space(environ: Mapping[str, str]) -> bool:
    """Running as a Hugging Face Space (the platform sets SPACE_ID to owner/name)."""
    return bool(environ.get("SPACE_ID"))


def workspace_location(environ: Mapping[str, str], data_root: Path = SPACE_DATA) -> tuple[Path, bool]:
    """The workspace folder and whether it outlives a restart of the machine (False only on a Space
    without persistent storage, whose disk is reset whenever it restarts)."""
    if environ.get(HOME_ENV):
        return Path(environ[HOME_ENV]), True
    if not on_space(environ):
        return Path("workspace"), True
    if data_root.is_dir() and os.access(data_root, os.W_OK):
        return data_root / "rlhf-studio", True
    return Path("workspace"), False


@dataclass(frozen=True)
class Workspace:
    root: Path
    persistent: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, data_root: Path = SPACE_DATA) -> Workspace:
        root, persistent = workspace_location(environ, data_root)
        return replace(cls.at(root), persistent=persistent)

    @classmethod
    def at(cls, root: str | os.PathLike) -> Workspace:
        workspace = cls(Path(root).expanduser().resolve())
        for folder in (workspace.datasets_dir, workspace.runs_dir, workspace.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return workspace

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so that readers never see a half-written file (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(handle.name, path)
