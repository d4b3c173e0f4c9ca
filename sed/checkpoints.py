"""Checkpoints: atomic writes, safe loads, and rebuilding a model from what a checkpoint carries."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sed.io import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or lacks a key the caller needs."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save `state` atomically (sed.io), so a crash never leaves half a checkpoint."""
    return atomic_write(path, lambda handle: torch.save(state, handle))


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
