"""Atomic file writes: every file a run leaves behind (checkpoints, JSON, TSV, CSV, plots, reports)
goes to a temporary file in the target's folder, is flushed to disk, then renamed over the target,
so no reader and no crash ever sees half a file."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "write_csv", "write_json", "write_text"]


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[Any]], object], text: bool = False
) -> Path:
    """Call ``write(handle)`` on a new temporary file next to ``path`` (folders are created), then
    fsync and rename it to ``path``; on any error ``path`` is left as it was and the temporary
    file is removed. ``text=True`` gives a UTF-8 text handle that writes newlines as given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600); a plain open honours the umask like any file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if text:
            handle = open(tmp, "x", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
        else:
            handle = open(tmp, "xb")  # noqa: SIM115
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Atomic UTF-8 text write."""
    return atomic_write(path, lambda handle: handle.write(text), text=True)


def write_csv(table: Any, path: str | os.PathLike, **to_csv: Any) -> Path:
    """Atomic ``DataFrame.to_csv`` (keyword arguments are passed on)."""
    return atomic_write(path, lambda handle: table.to_csv(handle, **to_csv), text=True)


def write_json(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Atomic JSON object write, keys sorted; NaN and inf become null so every reader parses it."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()
    }
    return write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n", path)
