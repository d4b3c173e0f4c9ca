"""Post-processing chosen on the validation split: threshold, median window, minimum event
duration and minimum gap, and the onset / offset shift, shared by all classes or per class,
searched to optimise a validation metric.

The search is coordinate-wise: stage 1 tries every (threshold, median window) pair, stage 2
every minimum duration on top of the best pair, stage 3 every minimum gap, stage 4 every
(onset shift, offset shift) pair: the latency of the detector's onsets and offsets, which a
causal recurrent model reports late (docs/recipe_search.md). Probabilities are
computed once by the caller; each candidate costs one post-processing pass and one sed_eval pass
over the split. Ties keep the earlier candidate, and the defaults come first, so a score that
never moves keeps the default. Nothing here ever sees the test split.

Two scopes (`per_class`):
- shared (`per_class=False`, the default): one setting for all classes, chosen by the split's
  overall (micro) criterion. With the few events per class of a typical validation split
  (about 20 per class on the embedded set), this generalises better: in 2-fold cross-validation
  on the validation split of three trained models it gained 0.04 event F1 on the held-out half
  over the per-class search (docs/recipe_search.md).
- per class (`per_class=True`): a class's event metrics depend only on that class's own
  settings, so one evaluation under a uniform setting scores that setting for every class at
  once, and each class keeps its own best. Worth it when validation holds many events per class.

`class_thresholds=True` (with the shared scope) adds a fifth stage: each class re-picks its own
threshold from the space, the other settings staying shared, by its class-wise criterion; the
stage is kept only if the overall criterion does not fall. It gained held-out validation event
F1 in 8 of 12 runs, more with more tuning data (docs/recipe_search.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sed.errors import SearchError
from sed.evaluation import evaluate_events
from sed.postprocess import SHIFTS, PostProcessing, probs_to_events

__all__ = [
    "CRITERIA",
    "SearchSpace",
    "Tuning",
    "SearchError",
    "TuningResult",
    "tune_postprocessing",
]

# Class-wise criteria and whether higher is better.
CRITERIA = {"event_f1": True, "event_er": False, "segment_f1": True, "segment_er": False}


# The search space's non-negative lists (thresholds first), beside the shifts (any sign).
_SETTINGS = ("thresholds", "median_seconds", "min_duration", "min_gap")


@dataclass
class SearchSpace:
    """Candidate values per post-processing step (configs/tuning/*.yaml `space:`)."""

    thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7)
    median_seconds: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 1.0)
    min_duration: Sequence[float] = (0.0, 0.1, 0.2, 0.4)
    min_gap: Sequence[float] = (0.0, 0.1, 0.2, 0.4, 0.7, 1.0)
    # seconds added to every onset / offset; negative = earlier
    onset_shift: Sequence[float] = (0.0, -0.04, -0.08, -0.12, -0.16, -0.2, 0.04)
    offset_shift: Sequence[float] = (0.0, -0.1, -0.2, -0.3, -0.4, 0.1, 0.2)

    def __post_init__(self) -> None:
        for name in (*_SETTINGS, *SHIFTS):
            values = [float(v) for v in getattr(self, name)]
            if not values:
                raise SearchError(f"tuning.space.{name} must list at least one value")
            if not all(math.isfinite(v) for v in values):
                raise SearchError(f"tuning.space.{name} must be finite, got {values}")
            if name == "thresholds" and not all(0.0 < v < 1.0 for v in values):
                raise SearchError(f"tuning.space.thresholds must lie in (0, 1), got {values}")
            if name in _SETTINGS[1:] and any(v < 0 for v in values):
                raise SearchError(f"tuning.space.{name} must be >= 0, got {values}")
            setattr(self, name, tuple(values))


@dataclass
class Tuning:
    """Whether and how the final evaluation tunes post-processing (configs/tuning/*.yaml)."""

    enabled: bool = True
    criterion: str = "event_f1"
    per_class: bool = False
    class_thresholds: bool = False
    # A candidate may lower validation segment F1 by at most this much below the fixed
    # post-processing's (None: no limit): the event-F1 search otherwise favours long median
    # windows that drop short events.
    max_segment_f1_drop: float | None = None
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise SearchError(
                f"tuning.criterion must be one of {sorted(CRITERIA)}, got {self.criterion!r}"
            )
        if not isinstance(self.per_class, bool):
            raise SearchError(f"tuning.per_class must be true or false, got {self.per_class!r}")
        if not isinstance(self.class_thresholds, bool):
            raise SearchError(
                f"tuning.class_thresholds must be true or false, got {self.class_thresholds!r}"
            )
        drop = self.max_segment_f1_drop
        if drop is not None and (
            isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop <= 1
        ):
            raise SearchError(
                f"tuning.max_segment_f1_drop must be null or a number in [0, 1], got {drop!r}"
            )
        if isinstance(self.space, Mapping):
            self.space = SearchSpace(**self.space)


@dataclass
class TuningResult:
    """The chosen post-processing, its validation score against the start's, and every trial."""

    postprocessing: PostProcessing
    criterion: str
    score: float
    start_score: float
    trials: pd.DataFrame = field(repr=False)


def _first_with(default: float, values: Sequence[float]) -> list[float]:
    """`values` with `default` moved to the front (ties then keep the default)."""
    return [default] + [v for v in values if not math.isclose(v, default)]


def tune_postprocessing(
    probs: Mapping[str, np.ndarray],
    reference: pd.DataFrame,
    classes: Sequence[str],
    hop_seconds: float,
    durations: Mapping[str, float],
    start: PostProcessing,
    space: SearchSpace | None = None,
    criterion: str = "event_f1",
    progress: bool = True,
    per_class: bool = False,
    class_thresholds: bool = False,
    max_segment_f1_drop: float | None = None,
) -> TuningResult:
    """Search `space` on one (validation) split; returns the settings as dicts label -> value
    (one value for every class unless `per_class`, or the threshold with `class_thresholds`).
    `start` supplies the defaults (scalars) tried first; the result is kept only if its overall
    (micro) `criterion` is better than `start`'s, otherwise `start` is returned. With
    `max_segment_f1_drop`, a candidate whose segment F1 falls more than that below `start`'s
    (overall, or the class's own in the class-wise stages) is never chosen."""
    if criterion not in CRITERIA:
        raise SearchError(f"tuning.criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
    higher = CRITERIA[criterion]
    space = space or SearchSpace()
    classes = [str(c) for c in classes]
    default = {
        "threshold": _scalar(start.threshold, "threshold"),
        "median_seconds": _start_median(start, hop_seconds),
        "min_duration": _scalar(start.min_duration, "min_duration"),
        "min_gap": _scalar(start.min_gap, "min_gap"),
        "onset_shift": _scalar(start.onset_shift, "onset_shift"),
        "offset_shift": _scalar(start.offset_shift, "offset_shift"),
    }
    rows: list[dict[str, Any]] = []
    floor: dict[str, float] = {}  # lowest admissible segment F1, overall and per class

    def score(settings: dict[str, Any], stage: str) -> dict[str, float]:
        pp = PostProcessing(**settings)
        estimated = probs_to_events(probs, hop_seconds, classes, pp, durations)
        metrics = evaluate_events(reference, estimated, classes, durations, classwise=True)
        per_class = {c: _orient(metrics[f"{criterion}/{c}"], higher) for c in classes}
        segment = {"_overall": metrics["segment_f1"]}
        segment.update({c: metrics[f"segment_f1/{c}"] for c in classes})
        rows.append(
            {
                "stage": stage,
                **{k: _show(v) for k, v in settings.items()},
                criterion: metrics[criterion],
                **({} if criterion == "segment_f1" else {"segment_f1": metrics["segment_f1"]}),
                **{f"{criterion}/{c}": metrics[f"{criterion}/{c}"] for c in classes},
            }
        )
        per_class["_overall"] = _orient(metrics[criterion], higher)
        if max_segment_f1_drop is not None and not floor:  # the start sets the floor
            floor.update({k: v - max_segment_f1_drop - 1e-12 for k, v in segment.items()})
        for key, value in segment.items():
            if floor and not value >= floor[key] and not math.isnan(floor[key]):
                per_class[key] = -math.inf  # lowers segment F1 too far: never chosen
        return per_class

    start_score = score(dict(default), "start")["_overall"]
    best = {c: dict(default) for c in classes}
    best_score = {c: -math.inf for c in classes}
    stages = [
        ("threshold+median", [
            {"threshold": t, "median_seconds": m}
            for t in _first_with(default["threshold"], space.thresholds)
            for m in _first_with(default["median_seconds"], space.median_seconds)
        ]),
        ("min_duration", [{"min_duration": d} for d in _first_with(default["min_duration"], space.min_duration)]),
        ("min_gap", [{"min_gap": g} for g in _first_with(default["min_gap"], space.min_gap)]),
        ("onset+offset shift", [
            {"onset_shift": a, "offset_shift": b}
            for a in _first_with(default["onset_shift"], space.onset_shift)
            for b in _first_with(default["offset_shift"], space.offset_shift)
        ]),
    ]  # fmt: skip
    own_thresholds = class_thresholds and not per_class
    if own_thresholds:  # from the shared result: each class by its own score (ties keep it)
        stages.append(("class thresholds", [
            {"threshold": t} for t in _first_with(default["threshold"], space.thresholds)
        ]))  # fmt: skip
    total = sum(len(c) for _, c in stages)
    scope = (
        "per class" if per_class else "shared" + (", class thresholds" if own_thresholds else "")
    )
    bar = tqdm(
        total=total,
        desc=f"tune post-processing ({criterion}, {scope})",
        disable=None if progress else True,
    )
    class_score = {c: -math.inf for c in classes}  # each class's own score under best[c]
    for stage, candidates in stages:
        own = per_class or stage == "class thresholds"
        if stage == "class thresholds":
            shared_best, shared_overall = (
                {c: dict(best[c]) for c in classes},
                best_score[classes[0]],
            )
            best_score = dict(class_score)
        base = {c: dict(best[c]) for c in classes}
        for candidate in candidates:
            settings = {
                key: {c: candidate.get(key, base[c][key]) for c in classes} for key in default
            }
            scores = score(settings, stage)
            for c in classes:
                # shared scope: every class follows the overall score
                value = scores[c] if own else scores["_overall"]
                if value > best_score[c]:
                    best_score[c], class_score[c] = value, scores[c]
                    best[c] = {key: settings[key][c] for key in default}
            bar.update(1)
    bar.close()
    tuned = PostProcessing(**{key: {c: best[c][key] for c in classes} for key in default})
    final = score({k: getattr(tuned, k) for k in default}, "final")["_overall"]
    if own_thresholds and final < shared_overall:  # own thresholds lowered the overall score
        tuned = PostProcessing(
            **{key: {c: shared_best[c][key] for c in classes} for key in default}
        )
        final = shared_overall
    chosen, chosen_score = (tuned, final) if final > start_score else (start, start_score)
    sign = 1.0 if higher else -1.0
    return TuningResult(
        chosen, criterion, sign * chosen_score, sign * start_score, pd.DataFrame(rows)
    )


def _scalar(value: Any, name: str) -> float:
    """The start's setting as one number (the search starts from uniform defaults)."""
    if isinstance(value, Mapping) or np.ndim(value) != 0:
        raise SearchError(
            f"postprocess.{name} must be one value when tuning (the search sets it per class), "
            f"got {value!r}"
        )
    return float(value)


def _start_median(start: PostProcessing, hop_seconds: float) -> float:
    """The start's median window in seconds (a window in frames is converted; none is 0 s)."""
    if start.median_seconds is not None:
        return _scalar(start.median_seconds, "median_seconds")
    if start.median_frames is not None:
        return _scalar(start.median_frames, "median_frames") * hop_seconds
    return 0.0


def _orient(value: float, higher: bool) -> float:
    """Score to maximise; undefined values (no reference events) never win."""
    value = float(value)
    if math.isnan(value):
        return -math.inf
    return value if higher else -value


def _show(value: Any) -> Any:
    """A uniform per-class dict shown as its one value in the trials table."""
    if isinstance(value, Mapping):
        distinct = set(value.values())
        return next(iter(distinct)) if len(distinct) == 1 else str(value)
    return value
