"""Checkpoints: atomic writes, safe loads, and rebuilding a model from what a checkpoint carries."""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or lacks a key the caller needs."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `state` with torch.save to a temporary file, then rename, so a crash never
    leaves a half-written checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes private files; checkpoints are shared artefacts
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """torch.load(weights_only=True) with an error that names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def require(state: dict[str, Any], key: str, path: str | os.PathLike = "") -> Any:
    """state[key], or a CheckpointError naming the key and the file."""
    if key not in state:
        raise CheckpointError(f"checkpoint {path} has no '{key}' (keys: {sorted(state)})")
    return state[key]


def model_spec(target: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The plain description of a model stored in checkpoints: class path + constructor kwargs."""
    return {"target": target, "kwargs": dict(kwargs)}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Instantiate the model a `model_spec` describes (no Hydra needed at prediction time)."""
    module_name, _, class_name = spec["target"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"unknown model class {spec['target']!r} in checkpoint") from exc
    return cls(**spec["kwargs"])
