"""Post-processing: logits -> probabilities -> threshold -> median filter -> gaps and short
events -> boundary shift -> event table.

Frame i of a file spans ``[i * hop, (i + 1) * hop)`` seconds (DESIGN). Every step works on a
``[T, C]`` activity matrix, so events come out on the frame grid; the final conversion to an
event table is :func:`sed.annotations.targets_to_events`.

The boundary shift (``onset_shift`` / ``offset_shift``, seconds added to every onset / offset,
rounded to whole frames) compensates a detector's latency: a causal recurrent model reports a
sound once it has heard enough of it, and lets it go only after its state has decayed, so its
onsets and offsets come late by a fairly constant amount. The search on validation
(:mod:`sed.postprocess_search`) estimates it like any other setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from sed.annotations import targets_to_events
from sed.errors import PostProcessError

__all__ = [
    "PostProcessError",
    "PostProcessing",
    "binarize",
    "fill_gaps",
    "frames_to_events",
    "logits_to_probs",
    "median_filter",
    "probs_to_events",
    "remove_short",
    "seconds_to_frames",
    "shift_boundaries",
]

# Slack for comparing durations that are whole multiples of the hop with a limit in seconds,
# so that e.g. 5 frames of 0.02 s count as 0.1 s despite floating-point rounding.
_EPS = 1e-9

PerClass = float | Sequence[float] | Mapping[str, float]

# The boundary shifts may be negative; every other setting in seconds or probability may not.
SHIFTS = ("onset_shift", "offset_shift")
SETTINGS = ("threshold", "median_seconds", "min_duration", "min_gap", *SHIFTS)


def logits_to_probs(logits: Any) -> np.ndarray:
    """Sigmoid of model logits (numpy or torch, any shape) as a float numpy array."""
    if hasattr(logits, "detach"):  # torch tensor, without importing torch here
        logits = logits.detach().float().cpu().numpy()
    return expit(np.asarray(logits, dtype=np.float64)).astype(np.float32)


def _per_class(value: Any, classes: Sequence[str], name: str) -> np.ndarray:
    """One value per class from a scalar, a sequence in class order or a dict label -> value."""
    num = len(classes)
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(classes))
        if unknown:
            raise PostProcessError(
                f"{name}: unknown class(es) {unknown}; classes are {list(classes)}"
            )
        missing = [c for c in classes if c not in value]
        if missing:
            raise PostProcessError(f"{name}: no value for class(es) {missing}")
        out = np.array([value[c] for c in classes], dtype=np.float64)
    elif np.ndim(value) == 0:
        out = np.full(num, float(value), dtype=np.float64)
    else:
        out = np.asarray(value, dtype=np.float64).reshape(-1)
        if out.shape[0] != num:
            raise PostProcessError(
                f"{name}: {out.shape[0]} values given for {num} classes {list(classes)}"
            )
    if not np.all(np.isfinite(out)):
        raise PostProcessError(f"{name} must be finite, got {value!r}")
    return out


def seconds_to_frames(seconds: float, hop_seconds: float) -> int:
    """Odd median window in frames closest to ``seconds`` (at least 1 frame)."""
    if seconds < 0:
        raise PostProcessError(f"median window must be >= 0 seconds, got {seconds}")
    frames = max(1, int(math.floor(seconds / hop_seconds + 0.5)))
    return frames if frames % 2 == 1 else frames + 1


def _windows(
    median_frames: Any, median_seconds: Any, hop_seconds: float, classes: Sequence[str]
) -> np.ndarray:
    """Per-class odd median window lengths in frames."""
    if median_seconds is not None:
        secs = _per_class(median_seconds, classes, "median_seconds")
        return np.array([seconds_to_frames(s, hop_seconds) for s in secs], dtype=np.int64)
    frames = _per_class(1 if median_frames is None else median_frames, classes, "median_frames")
    for label, k in zip(classes, frames, strict=True):
        if k < 1 or k != int(k) or int(k) % 2 == 0:
            raise PostProcessError(
                f"median_frames for class {label!r} must be an odd integer >= 1, got {k:g}"
            )
    return frames.astype(np.int64)


def _check_probs(probs: Any, classes: Sequence[str], filename: str = "") -> np.ndarray:
    """Validate a [T, C] probability array and return it as numpy."""
    where = f" for file {filename!r}" if filename else ""
    if hasattr(probs, "detach"):
        probs = probs.detach().float().cpu().numpy()
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise PostProcessError(
            f"probabilities{where} must have shape [T, {len(classes)}] (one column per class), "
            f"got {probs.shape}"
        )
    if probs.size and (not np.all(np.isfinite(probs)) or probs.min() < 0.0 or probs.max() > 1.0):
        raise PostProcessError(
            f"probabilities{where} must be finite and in [0, 1] "
            f"(pass logits through logits_to_probs first)"
        )
    return probs


def binarize(probs: np.ndarray, threshold: PerClass, classes: Sequence[str]) -> np.ndarray:
    """Active frames ``probs > threshold`` (one threshold or one per class) as bool [T, C]."""
    thresholds = _per_class(threshold, classes, "threshold")
    probs = np.asarray(probs)
    if np.issubdtype(probs.dtype, np.floating):
        # compare at the probabilities' precision: float32 0.6 is not "> 0.6"
        thresholds = thresholds.astype(probs.dtype)
    return probs > thresholds[None, :]


def median_filter(active: np.ndarray, window: int | Sequence[int]) -> np.ndarray:
    """Median filter binary activity [T, C] along time, one odd window per class.

    For 0/1 data the median is a majority vote, computed here with cumulative sums. Frames
    outside the file count as inactive (scipy's ``mode="constant", cval=0``), so the same
    minimum length applies at the edges as inside, and an event touching the first or last
    frame keeps its onset/offset there if it is long enough to survive at all.
    """
    active = np.asarray(active, dtype=bool)
    num_frames, num_classes = active.shape
    windows = np.broadcast_to(np.asarray(window, dtype=np.int64), (num_classes,))
    out = active.copy()
    for k in np.unique(windows):
        if k < 1 or k % 2 == 0:
            raise PostProcessError(f"median window must be an odd integer >= 1, got {k}")
        if k == 1 or num_frames == 0:
            continue
        cols = np.flatnonzero(windows == k)
        half = int(k) // 2
        padded = np.pad(active[:, cols].astype(np.int32), ((half + 1, half), (0, 0)))
        csum = np.cumsum(padded, axis=0)
        counts = csum[k:] - csum[:-k]  # ones in frames [i - half, i + half]
        out[:, cols] = counts > half
    return out


def _runs(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) frame indices of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate(([0], column.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def fill_gaps(
    active: np.ndarray, min_gap: PerClass, hop_seconds: float, classes: Sequence[str]
) -> np.ndarray:
    """Merge events of one class whose gap is shorter than ``min_gap`` seconds."""

    def gaps(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ends[:-1], starts[1:]  # the inactive stretches between consecutive events

    return _set_short(active, min_gap, "min_gap", hop_seconds, classes, gaps, True)


def remove_short(
    active: np.ndarray, min_duration: PerClass, hop_seconds: float, classes: Sequence[str]
) -> np.ndarray:
    """Drop events shorter than ``min_duration`` seconds."""

    def events(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return starts, ends

    return _set_short(active, min_duration, "min_duration", hop_seconds, classes, events, False)


def _set_short(
    active: np.ndarray,
    limit: PerClass,
    name: str,
    hop_seconds: float,
    classes: Sequence[str],
    stretches: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    value: bool,
) -> np.ndarray:
    """Set to `value` every stretch (from `stretches(starts, ends)` of each class's runs of
    activity) shorter than that class's `limit` in seconds."""
    limits = _per_class(limit, classes, name)
    out = np.array(active, dtype=bool, copy=True)
    for c in np.flatnonzero(limits > 0):
        first, stop = stretches(*_runs(out[:, c]))
        short = (stop - first) * hop_seconds < limits[c] - _EPS
        for s, e in zip(first[short], stop[short], strict=True):
            out[s:e, c] = value
    return out


def shift_boundaries(
    active: np.ndarray,
    onset_shift: PerClass,
    offset_shift: PerClass,
    hop_seconds: float,
    classes: Sequence[str],
) -> np.ndarray:
    """Move every event's onset by ``onset_shift`` and its offset by ``offset_shift`` seconds
    (negative = earlier), each rounded to whole frames and clipped to the file. An event keeps at
    least its first (shifted) frame; events of one class that come to overlap merge."""
    onsets = _per_class(onset_shift, classes, "onset_shift")
    offsets = _per_class(offset_shift, classes, "offset_shift")
    out = np.array(active, dtype=bool, copy=True)
    num_frames = out.shape[0]
    for c in np.flatnonzero((onsets != 0) | (offsets != 0)):
        on = int(math.floor(onsets[c] / hop_seconds + 0.5))
        off = int(math.floor(offsets[c] / hop_seconds + 0.5))
        if on == 0 and off == 0:
            continue
        starts, ends = _runs(out[:, c])
        starts = np.clip(starts + on, 0, num_frames - 1)
        ends = np.clip(np.maximum(ends + off, starts + 1), 1, num_frames)
        column = np.zeros(num_frames, dtype=bool)
        for s, e in zip(starts, ends, strict=True):
            column[s:e] = True
        out[:, c] = column
    return out


def frames_to_events(
    probs: Any,
    hop_seconds: float,
    classes: Sequence[str],
    threshold: PerClass = 0.5,
    median_frames: int | Sequence[int] | Mapping[str, int] = 1,
    min_duration: PerClass = 0.0,
    min_gap: PerClass = 0.0,
    filename: str = "",
    median_seconds: PerClass | None = None,
    onset_shift: PerClass = 0.0,
    offset_shift: PerClass = 0.0,
) -> pd.DataFrame:
    """Event table (COLUMNS) of one file from probabilities [T, C] on the frame grid.

    Steps: threshold (``>``) -> median filter (odd window per class, in frames, or in seconds
    via ``median_seconds``) -> merge same-class events separated by less than ``min_gap`` s ->
    drop events shorter than ``min_duration`` s -> add ``onset_shift`` / ``offset_shift`` s to
    every onset / offset (:func:`shift_boundaries`). Frame i spans ``[i * hop, (i + 1) * hop)``.
    """
    classes = list(classes)
    if not hop_seconds > 0:
        raise PostProcessError(f"hop_seconds must be > 0, got {hop_seconds}")
    default_frames = not isinstance(median_frames, Mapping) and np.ndim(median_frames) == 0
    if median_seconds is not None and not (default_frames and median_frames == 1):
        raise PostProcessError("give median_frames or median_seconds, not both")
    probs = _check_probs(probs, classes, filename)
    windows = _windows(median_frames, median_seconds, hop_seconds, classes)
    active = binarize(probs, threshold, classes)
    active = median_filter(active, windows)
    active = fill_gaps(active, min_gap, hop_seconds, classes)
    active = remove_short(active, min_duration, hop_seconds, classes)
    active = shift_boundaries(active, onset_shift, offset_shift, hop_seconds, classes)
    return targets_to_events(active, hop_seconds, classes, filename=filename)


@dataclass
class PostProcessing:
    """Post-processing settings, stored in checkpoints with to_dict/from_dict.

    Each of threshold, median_seconds / median_frames, min_duration, min_gap, onset_shift and
    offset_shift is one value for all classes, a list in class order, or a dict label -> value.
    Give at most one of median_seconds and median_frames (neither means no median filtering).
    The shifts are seconds added to every onset / offset (negative = earlier); a setting stored
    before they existed reads as no shift.
    """

    threshold: PerClass = 0.5
    median_seconds: PerClass | None = None
    median_frames: int | Sequence[int] | Mapping[str, int] | None = None
    min_duration: PerClass = 0.0
    min_gap: PerClass = 0.0
    onset_shift: PerClass = 0.0
    offset_shift: PerClass = 0.0

    def __post_init__(self) -> None:
        if self.median_seconds is not None and self.median_frames is not None:
            raise PostProcessError(
                "PostProcessing: give median_seconds or median_frames, not both "
                f"(got {self.median_seconds!r} and {self.median_frames!r})"
            )
        for name in SETTINGS:
            value = getattr(self, name)
            if value is None:
                continue
            values = value.values() if isinstance(value, Mapping) else np.ravel(value)
            try:
                numbers = [float(v) for v in values]
            except (TypeError, ValueError):
                raise PostProcessError(
                    f"postprocess.{name} must be numbers, got {value!r}"
                ) from None
            if name == "threshold" and not all(0.0 < v < 1.0 for v in numbers):
                # 0 or 1 would make every frame active or none: every metric silently 0.
                raise PostProcessError(f"postprocess.threshold must lie in (0, 1), got {value!r}")
            if not all(math.isfinite(v) for v in numbers):
                raise PostProcessError(f"postprocess.{name} must be finite, got {value!r}")
            if name not in SHIFTS and not all(v >= 0 for v in numbers):
                raise PostProcessError(f"postprocess.{name} must be >= 0, got {value!r}")

    def windows(self, hop_seconds: float, classes: Sequence[str]) -> np.ndarray:
        """Per-class median window lengths in frames for this hop."""
        return _windows(self.median_frames, self.median_seconds, hop_seconds, list(classes))

    def __call__(
        self, probs: Any, hop_seconds: float, classes: Sequence[str], filename: str = ""
    ) -> pd.DataFrame:
        """Event table of one file (see :func:`frames_to_events`)."""
        return frames_to_events(
            probs,
            hop_seconds,
            classes,
            threshold=self.threshold,
            median_frames=1 if self.median_frames is None else self.median_frames,
            median_seconds=self.median_seconds,
            min_duration=self.min_duration,
            min_gap=self.min_gap,
            filename=filename,
            onset_shift=self.onset_shift,
            offset_shift=self.offset_shift,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON / torch.load(weights_only=True) friendly)."""
        return {key: _plain(value) for key, value in asdict(self).items()}

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> PostProcessing:
        """A copy with the non-null `overrides` applied (the entry points' `postprocess.*`); a
        median window given in seconds replaces one in frames and vice versa."""
        return PostProcessing.from_dict(self.to_dict(), overrides)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> PostProcessing:
        """Inverse of to_dict, with the non-null `overrides` applied first (see with_overrides),
        so that an override can replace a stored value that is no longer valid. Unknown keys
        raise naming the key."""
        given = {key: value for key, value in (overrides or {}).items() if value is not None}
        merged = {**data, **given}
        for key, other in (
            ("median_seconds", "median_frames"),
            ("median_frames", "median_seconds"),
        ):
            if key in given and other not in given:
                merged[other] = None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        try:
            if unknown:
                raise PostProcessError(
                    f"PostProcessing: unknown key(s) {unknown}; expected some of {sorted(known)}"
                )
            return cls(**{key: _plain(value) for key, value in merged.items()})
        except PostProcessError as err:
            if not given:
                raise
            raise PostProcessError(f"postprocess overrides {given}: {err}") from None


def _plain(value: Any) -> Any:
    """numpy scalars / arrays / tuples -> Python floats, ints, lists and dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def probs_to_events(
    probs: Mapping[str, Any] | Iterable[tuple[str, Any]],
    hop_seconds: float,
    classes: Sequence[str],
    postprocessing: PostProcessing | Mapping[str, Any] | None = None,
    durations: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One event table (sorted by filename, onset) from per-file probabilities {filename: [T, C]}.

    With `durations` (filename -> seconds), offsets are clipped to the file's end: the last
    frame of the grid reaches past the end of the audio.
    """
    if postprocessing is None:
        postprocessing = PostProcessing()
    elif isinstance(postprocessing, Mapping):
        postprocessing = PostProcessing.from_dict(postprocessing)
    items = probs.items() if isinstance(probs, Mapping) else probs
    tables = [postprocessing(p, hop_seconds, classes, filename=str(f)) for f, p in items]
    tables = [t for t in tables if len(t)]
    if not tables:
        return targets_to_events(np.zeros((0, len(classes)), bool), hop_seconds, list(classes))
    events = pd.concat(tables, ignore_index=True)
    if durations:
        end = events["filename"].map(durations).fillna(np.inf).to_numpy(dtype=np.float64)
        events["offset"] = np.minimum(events["offset"].to_numpy(), end)
        events = events[events["onset"] < events["offset"]]
    return events.sort_values(["filename", "onset"], kind="stable", ignore_index=True)
