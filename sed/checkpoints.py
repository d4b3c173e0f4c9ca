"""Checkpoints: atomic writes, safe loads, and rebuilding a model from what a checkpoint carries."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sed.errors import CheckpointError, ModelSpecError
from sed.io import atomic_write


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save `state` atomically (sed.io), so a crash never leaves half a checkpoint; a
    failed write (a full disk) is a CheckpointError saying that the previous file is intact."""
    try:
        return atomic_write(path, lambda handle: torch.save(state, handle))
    except (OSError, RuntimeError) as err:
        kept = "the previous one is intact" if Path(path).is_file() else "nothing was written"
        reason = getattr(err, "strerror", None) or err
        raise CheckpointError(f"cannot write checkpoint {path} ({reason}); {kept}") from err


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


# Only these packages' nn.Module classes may be built from a spec (DESIGN: nothing read from a
# checkpoint or config selects code beyond this allow-list).
MODEL_PACKAGE = "sed.models"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def model_class(target: Any, where: str = "model spec") -> type[nn.Module]:
    """The nn.Module class `target` names, if it is a public class defined in sed.models.

    The module path is checked before anything is imported, so a spec naming any other code
    (`subprocess.run`, `os.system`, a torch class) is refused without running it.
    """
    if not isinstance(target, str):
        raise ModelSpecError(f"{where}: model class must be a dotted name, got {target!r}")
    module_name, _, class_name = target.rpartition(".")
    parts = module_name.split(".")
    allowed = (module_name == MODEL_PACKAGE or module_name.startswith(MODEL_PACKAGE + ".")) and all(
        _IDENTIFIER.match(part) for part in [*parts, class_name]
    )
    if not allowed or class_name.startswith("_"):
        raise ModelSpecError(
            f"{where}: model class {target!r} is not allowed; only nn.Module classes of "
            f"{MODEL_PACKAGE} can be built (e.g. sed.models.crnn.CRNN)"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise ModelSpecError(f"{where}: unknown model class {target!r}") from None
    if not (
        isinstance(cls, type)
        and issubclass(cls, nn.Module)
        and cls.__module__.startswith(MODEL_PACKAGE + ".")
    ):
        raise ModelSpecError(
            f"{where}: {target!r} is not an nn.Module class of {MODEL_PACKAGE}; refusing to call it"
        )
    return cls


def plain_kwargs(kwargs: Any, where: str = "model spec") -> dict[str, Any]:
    """`kwargs` if it is a dict of str keys to plain values (None, bool, int, float, str and
    lists / dicts of them), else a ModelSpecError naming the offending key."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ModelSpecError(f"{where}: kwargs must be a dict with str keys, got {kwargs!r}")
    for key, value in kwargs.items():
        if not _is_plain(value):
            raise ModelSpecError(
                f"{where}: kwargs[{key!r}] must be a plain value (None, bool, int, float, str, "
                f"or lists / dicts of them), got {type(value).__name__}"
            )
    return kwargs


def build_model(spec: Any, where: str = "model spec") -> nn.Module:
    """Instantiate the model a `model_spec` describes (no Hydra needed at prediction time).

    Only an nn.Module class of sed.models (`model_class`), called with plain keyword arguments
    its constructor accepts; everything is checked before the class is called. `where` names
    the spec's origin (a checkpoint file, a config key) in errors.
    """
    if not isinstance(spec, dict) or set(spec) != {"target", "kwargs"}:
        raise ModelSpecError(
            f"{where}: expected a dict with keys 'target' and 'kwargs', got {spec!r}"[:300]
        )
    cls = model_class(spec["target"], where)
    kwargs = plain_kwargs(spec["kwargs"], where)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise ModelSpecError(f"{where}: cannot build {spec['target']}: {err}") from None
    try:
        return cls(**kwargs)
    except ValueError as err:  # the model's own argument checks
        raise ModelSpecError(f"{where}: cannot build {spec['target']}: {err}") from None


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False
