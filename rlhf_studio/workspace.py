"""The workspace folder: datasets, runs and the model cache, kept across restarts.

Location: $RLHF_STUDIO_HOME if set, else ./workspace under the current directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def from_env(cls) -> Workspace:
        root = os.environ.get("RLHF_STUDIO_HOME") or "workspace"
        return cls.at(root)

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
