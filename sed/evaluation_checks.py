"""Validation of evaluation inputs: class lists, event tables, durations and score arrays.

Shared by the sed_eval metrics (sed.evaluation), frame metrics (sed.frame_metrics) and PSDS
(sed.psds). Each check raises EvaluationError naming the table, file and row at fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sed.annotations import COLUMNS
from sed.errors import EvaluationError

__all__ = ["check_classes", "check_durations", "check_events", "scored_durations", "to_numpy"]


def check_classes(classes: Sequence[str]) -> list[str]:
    """Class list as plain strings that survive dcase_util's label normalisation."""
    classes = [str(c) for c in classes]
    if not classes:
        raise EvaluationError("classes is empty")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise EvaluationError(f"duplicate class name(s) {dupes}")
    for c in classes:
        # dcase_util strips labels and turns "" / "none" into None, which would lose events.
        if c != c.strip() or c.strip().lower() in ("", "none"):
            raise EvaluationError(f"class name {c!r} cannot be evaluated by sed_eval")
    return classes


def check_events(
    events: pd.DataFrame | None, classes: Sequence[str], name: str
) -> tuple[pd.DataFrame, set[str]]:
    """Validated event table and the set of all filenames it names (rows without events too)."""
    if events is None:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        return empty.astype({"onset": float, "offset": float}), set()
    if not isinstance(events, pd.DataFrame):
        raise EvaluationError(f"{name} events must be a pandas DataFrame, got {type(events)}")
    missing = [c for c in COLUMNS if c not in events.columns]
    if missing:
        raise EvaluationError(
            f"{name} events: missing column(s) {missing}; expected columns {COLUMNS}"
        )
    events = events.loc[:, COLUMNS].reset_index(drop=True)
    if events["filename"].isna().any():
        row = int(np.flatnonzero(events["filename"].isna().to_numpy())[0])
        raise EvaluationError(f"{name} events: row {row} has no filename")
    events["filename"] = events["filename"].astype(str)
    filenames = set(events["filename"])
    # DESED convention: a row with empty onset, offset and label is a file with no events.
    empty_rows = events[["onset", "offset", "event_label"]].isna().all(axis=1).to_numpy()
    events = events.loc[~empty_rows].reset_index(drop=True)
    for col in ("onset", "offset"):
        values = pd.to_numeric(events[col], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise EvaluationError(
                f"{name} events: file {events.at[i, 'filename']!r} row {i}: "
                f"{col} {events.at[i, col]!r} is not a finite number"
            )
        events[col] = values.astype(float)
    bad = (events["onset"] < 0).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(
            f"{name} events: file {events.at[i, 'filename']!r} row {i}: "
            f"negative onset {events.at[i, 'onset']}"
        )
    bad = (events["offset"] < events["onset"]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(
            f"{name} events: file {events.at[i, 'filename']!r} row {i}: offset "
            f"{events.at[i, 'offset']} is before onset {events.at[i, 'onset']}"
        )
    labels = events["event_label"]
    unknown = ~labels.isin(classes).to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        bad_labels = sorted(map(str, set(labels[unknown])))
        raise EvaluationError(
            f"{name} events: label(s) {bad_labels} not in classes {list(classes)} "
            f"(first in file {events.at[i, 'filename']!r}, row {i})"
        )
    return events, filenames


def check_durations(
    durations: Mapping[str, float] | None, named: dict[str, set[str]]
) -> dict[str, float] | None:
    """Durations as {str: float}; every file named in an event table must have one."""
    if durations is None:
        return None
    durations = {str(k): float(v) for k, v in durations.items()}
    for f, d in durations.items():
        if not (math.isfinite(d) and d >= 0):
            raise EvaluationError(f"durations: file {f!r} has invalid duration {d}")
    for name, files in named.items():
        absent = sorted(files - durations.keys())
        if absent:
            shown = ", ".join(repr(f) for f in absent[:5])
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            raise EvaluationError(f"{name} events: file(s) {shown}{more} not in durations")
    return durations


def scored_durations(
    probs: Mapping[str, Any], durations: Mapping[str, float] | None, hop_seconds: float
) -> dict[str, float]:
    """Durations of exactly the scored files (default: T * hop each), or an error naming the
    files that are scored but have no duration, or have a duration but no scores."""
    if durations is None:
        return {f: np.shape(p)[0] * float(hop_seconds) for f, p in probs.items()}
    durations = {str(f): float(d) for f, d in durations.items()}
    unscored = sorted(durations.keys() - probs.keys())
    if unscored:
        raise EvaluationError(f"file(s) {unscored[:5]} in durations have no predictions")
    missing = sorted(probs.keys() - durations.keys())
    if missing:
        raise EvaluationError(f"predicted file(s) {missing[:5]} not in durations")
    return durations


def to_numpy(x: Any) -> np.ndarray:
    """numpy array from an array-like or a (CPU/GPU, any dtype) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach()
        if x.is_floating_point():
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)
