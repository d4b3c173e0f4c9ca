"""A run's status: from its status.json, or, for a run without one (made before the entry points
wrote it, or killed before it could), from its metrics.json and its logs.

status.json, written by the entry points in the run directory::

    {"status": "running" | "finished" | "failed" | "interrupted", "entry": "train",
     "message": str | null, "started": ISO-8601, "ended": ISO-8601 | null}

A run's status is then

- ``finished``: status.json says so and metrics.json parses to a JSON object;
- ``failed``: status.json says so (the `error` column quotes its message), or says finished
  without a metrics.json, or metrics.json or status.json cannot be read;
- ``interrupted``: status.json says so (Ctrl-C; resumable);
- ``running``: status.json says so: still running, or killed without a chance to update it
  (SIGKILL, out of memory, out of time).

Without a status.json the old evidence decides: ``finished`` when metrics.json parses,
``failed`` when it does not or when a log of the run (`*.log` / `*.err` in the run dir,
`.hydra/`, `.submitit/`) holds a Python traceback, Hydra's "Error executing job" or
`sed.train: error:` (the `error` column quotes the exception, every line of its message), and
``unfinished`` otherwise (no metrics.json and no error logged).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = [
    "FAILED",
    "FINISHED",
    "INTERRUPTED",
    "RUNNING",
    "STATUSES",
    "UNFINISHED",
    "run_status",
]

FINISHED, FAILED, INTERRUPTED, RUNNING = "finished", "failed", "interrupted", "running"
UNFINISHED = "unfinished"  # no status.json, no metrics.json, no error in the logs
STATUSES = (FINISHED, FAILED, INTERRUPTED, RUNNING, UNFINISHED)
# The values status.json's "status" may hold.
RECORDED = (RUNNING, FINISHED, FAILED, INTERRUPTED)
_TRACEBACK = "Traceback (most recent call last)"
# Where a failure's report starts in a log: a traceback, Hydra's line before one, or the line
# `python -m sed.train` prints for a bad input.
_ERROR_MARKERS = (_TRACEBACK, "Error executing job", "sed.train: error: ")
# Lines that end an exception's message: the next record of a Hydra job log, Hydra's hint, a
# chained traceback.
_MESSAGE_END = re.compile(
    r"\[\d{4}-\d\d-\d\d |Set the environment variable HYDRA_FULL_ERROR|The above "
)
_MAX_ERROR_CHARS = 2000


def run_status(run_dir: Path) -> tuple[str, str, dict[str, Any]]:
    """(status, error, metrics) of one run dir: one of STATUSES (see the module docstring), the
    reason it did not finish ("" if none) and its metrics.json flattened to `a/b` keys ({} unless
    finished)."""
    path = run_dir / "metrics.json"
    metrics = None
    if path.is_file():
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            return FAILED, f"metrics.json unreadable: {error}", {}
        if not isinstance(metrics, dict):
            return FAILED, f"metrics.json holds a {type(metrics).__name__}, not an object", {}
    recorded = _read_status(run_dir / "status.json")
    if recorded is None:  # no status.json: what metrics.json and the logs say
        if metrics is not None:
            return FINISHED, "", _flatten(metrics)
        error = _log_error(run_dir)
        return (FAILED, error, {}) if error else (UNFINISHED, "", {})
    status, message = recorded
    if status == FINISHED:
        if metrics is None:
            return FAILED, "status.json says finished, but there is no metrics.json", {}
        return FINISHED, "", _flatten(metrics)
    if status == FAILED:
        reason = f"status.json: {message}" if message else _log_error(run_dir)
        return FAILED, (reason or "status.json: failed, without a message")[:_MAX_ERROR_CHARS], {}
    return status, (message or "")[:_MAX_ERROR_CHARS], {}


def _read_status(path: Path) -> tuple[str, str | None] | None:
    """(status, message) from a status.json; None when there is none; one that cannot be read or
    holds an unknown status gives (FAILED, "unreadable: why")."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return FAILED, f"unreadable: {error}"
    if not isinstance(record, dict) or record.get("status") not in RECORDED:
        found = record.get("status") if isinstance(record, dict) else type(record).__name__
        return FAILED, f"unreadable: status {found!r} is none of {list(RECORDED)}"
    message = record.get("message")
    return record["status"], None if message is None else str(message)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts become `a/b` keys; lists become JSON strings."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def _log_error(run_dir: Path) -> str | None:
    """The exception of the last failure reported in the run's logs (`LOG: Type: message`, every
    line of the message kept), or None when there is none."""
    logs = [
        *run_dir.glob("*.log"),
        *run_dir.glob("*.err"),
        *(run_dir / ".hydra").glob("*.log"),
        *(run_dir / ".submitit").rglob("*.err"),
        *(run_dir / ".submitit").rglob("*.log"),
    ]
    for log in sorted(logs):
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        start = max(text.rfind(marker) for marker in _ERROR_MARKERS)
        if start < 0:
            continue
        message = _exception_message(text[start:].splitlines())
        return f"{log.name}: {message}"[:_MAX_ERROR_CHARS]
    return None


def _exception_message(lines: list[str]) -> str:
    """The exception a failure report (`lines`, from its marker on) ends with: after a
    traceback's indented frames, the first unindented line and the message's further lines."""
    if lines[0].startswith(_TRACEBACK):
        body = lines[1:]
        while body and (not body[0].strip() or body[0][0].isspace()):
            body = body[1:]
        if not body:
            return lines[0].strip()
    else:
        body = lines
    message = [body[0].strip()]
    for line in body[1:]:
        if not line.strip() or _MESSAGE_END.match(line):
            break
        message.append(line.rstrip())
    return "\n".join(message)
