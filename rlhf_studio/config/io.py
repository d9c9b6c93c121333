"""Job configs to and from plain data and YAML; every bad or unknown key is named in one ConfigError.

Which class a `stage:` value means is the registry's to say (rlhf_studio.stages.config_from_dict).
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import yaml

from rlhf_studio.config.base import ConfigError, JobConfig


def fields_from_dict(cls: type, data: dict, prefix: str, errors: list[str]) -> dict[str, Any]:
    """The init values of config class `cls` from `data`; each bad or unknown key appends to `errors`."""
    hints = typing.get_type_hints(cls)
    known = {item.name: item for item in fields(cls) if item.init}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            errors.append(f"{name}: unknown key{_did_you_mean(str(key), known)}")
        elif hasattr(hints[key], "__dataclass_fields__"):
            if value is None:
                continue
            if not isinstance(value, dict):
                errors.append(f"{name}: expected a mapping, got {value!r}")
                continue
            values[key] = hints[key](**fields_from_dict(hints[key], value, f"{name}.", errors))
        else:
            try:
                values[key] = _coerce(value, hints[key])
            except ValueError as error:
                errors.append(f"{name}: {error}")
    return values


def _did_you_mean(key: str, known: dict[str, Field]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, hint: Any) -> Any:
    """Check a YAML value against a field's type hint (YAML reads 1e-5 as a string: accept it as a float)."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError("a value is required")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and not isinstance(value, bool):
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is list and isinstance(value, list):
            if all(isinstance(item, str) for item in value):
                return value
    wanted = " or ".join(_type_name(option) for option in options if option is not type(None))
    raise ValueError(f"expected {wanted}, got {value!r}")


def _type_name(option: Any) -> str:
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text"}
    return names.get(option, "a list of names")


def read_yaml(path: str | Path) -> Any:
    """A config file's parsed YAML; ConfigError for text that is not YAML."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError([f"config: {path} is not valid YAML ({error})"]) from error


def save_config(config: JobConfig, path: str | Path) -> None:
    """Write the config as YAML (field order, nested lora section) via a temp file and a rename."""
    path = Path(path)
    header = f"# RLHF Studio {config.stage} job: python -m rlhf_studio train {path.name}\n"
    text = header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
