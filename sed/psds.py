"""PSDS1, PSDS2 (DCASE 2021+) and collar-based F1 from frame scores, with sed_scores_eval.

The intermediate statistics are sed_scores_eval's, computed per detection by sed.score_stats;
sed_scores_eval turns them into PSDS and F1. `score_dataframes` and `ground_truth_dict` give
sed_scores_eval's own input formats (for calling it directly).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from sed.errors import EvaluationError
from sed.evaluation_checks import check_classes, check_events, scored_durations, to_numpy
from sed.score_stats import collar_statistics, intersection_statistics, score_deltas

__all__ = [
    "COLLAR_PARAMS",
    "PSDS1",
    "PSDS2",
    "ground_truth_dict",
    "psds_from_scores",
    "score_dataframes",
]

# DCASE 2021+ PSDS scenarios (sed_scores_eval.intersection_based.psds arguments).
PSDS1: dict[str, Any] = {
    "dtc_threshold": 0.7,
    "gtc_threshold": 0.7,
    "cttc_threshold": None,
    "alpha_ct": 0.0,
    "alpha_st": 1.0,
    "max_efpr": 100.0,
}
PSDS2: dict[str, Any] = {
    "dtc_threshold": 0.1,
    "gtc_threshold": 0.1,
    "cttc_threshold": 0.3,
    "alpha_ct": 0.5,
    "alpha_st": 1.0,
    "max_efpr": 100.0,
}
# Collar-based F1 from scores, with the event-based collars above.
COLLAR_PARAMS: dict[str, Any] = {
    "onset_collar": 0.2,
    "offset_collar": 0.2,
    "offset_collar_rate": 0.2,
}


def score_dataframes(
    probs: Mapping[str, Any], hop_seconds: float, classes: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """sed_scores_eval score DataFrames (frame onset, offset, one column per class) per file."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    out = {}
    for filename, p in probs.items():
        p = np.asarray(to_numpy(p), dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[0] == 0:
            raise EvaluationError(
                f"scores for file {filename!r} must have shape [T > 0, {len(classes)}], "
                f"got {p.shape}"
            )
        timestamps = np.arange(p.shape[0] + 1) * float(hop_seconds)
        out[str(filename)] = create_score_dataframe(p, timestamps, list(classes))
    return out


def ground_truth_dict(
    reference: pd.DataFrame | None, classes: Sequence[str], filenames: Sequence[str]
) -> dict[str, list[tuple[float, float, str]]]:
    """sed_scores_eval ground truth {file: [(onset, offset, label), ...]} for every filename.

    Overlapping or touching events of one class in one file are merged, which
    sed_scores_eval requires (it rejects connected events) and which leaves the activity unchanged.
    """
    classes = check_classes(classes)
    reference, _ = check_events(reference, classes, "reference")
    gt: dict[str, list[tuple[float, float, str]]] = {str(f): [] for f in filenames}
    absent = sorted(set(reference["filename"]) - gt.keys())
    if absent:
        raise EvaluationError(f"reference events for file(s) {absent[:5]} that have no scores")
    for (filename, label), group in reference.groupby(["filename", "event_label"], sort=True):
        merged: list[list[float]] = []
        for onset, offset in sorted(zip(group["onset"], group["offset"], strict=True)):
            if merged and onset <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], offset)
            else:
                merged.append([onset, offset])
        gt[filename].extend((float(a), float(b), str(label)) for a, b in merged)
    return gt


def psds_from_scores(
    probs: Mapping[str, Any],
    hop_seconds: float,
    reference: pd.DataFrame | None,
    durations: Mapping[str, float] | None,
    classes: Sequence[str],
    *,
    collar: bool = True,
    collar_threshold: float = 0.5,
    classwise: bool = False,
    num_jobs: int = 1,
    progress: bool | None = None,
) -> dict[str, float]:
    """PSDS1 and PSDS2 (DCASE 2021+) from per-file probabilities {filename: [T, C]}.

    Threshold-independent (sed_scores_eval). With ``collar``, also collar-based F1 from the
    same scores: ``collar_f1`` (micro, at ``collar_threshold``) and ``collar_best_f1``
    (macro over classes, each at its best threshold). Files without reference events count
    as event-free; durations default to T * hop for each file. The intermediate statistics are
    sed_scores_eval's, computed per detection (`sed.score_stats`: the same numbers, in time
    linear in a file's length rather than cubic) in `num_jobs` processes; `progress` shows a
    bar over files (None: for an hour of audio or more).
    """
    from sed_scores_eval import collar_based, intersection_based

    classes = check_classes(classes)
    probs = {str(f): p for f, p in probs.items()}
    if not probs:
        raise EvaluationError("no scores given")
    durations = scored_durations(probs, durations, hop_seconds)
    gt = ground_truth_dict(reference, classes, list(probs))

    # sed_scores_eval refuses classes without reference events (their TPR is undefined):
    # evaluate the classes that have some, and say which were left out.
    present = {label for events in gt.values() for _, _, label in events}
    kept = [c for c in classes if c in present]
    skipped = [c for c in classes if c not in present]
    names = ["psds1", "psds2"] + (["collar_f1", "collar_best_f1"] if collar else [])
    out: dict[str, float] = dict.fromkeys(names, math.nan)
    if classwise:
        out.update({f"{n}/{c}": math.nan for n in ("psds1", "psds2") for c in classes})
    if skipped:
        warnings.warn(
            f"PSDS / collar F1 computed without class(es) {skipped}: no reference events",
            stacklevel=2,
        )
    if not kept:
        return out
    columns = [classes.index(c) for c in kept]
    kept_probs = {}
    for f, p in probs.items():
        p = to_numpy(p)
        if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[0] == 0:
            raise EvaluationError(
                f"scores for file {f!r} must have shape [T > 0, {len(classes)}], got {p.shape}"
            )
        kept_probs[f] = p[:, columns]
    settings_of = {"psds1": PSDS1, "psds2": PSDS2}
    if len(kept) == 1:
        # Cross-triggers need a second class with reference events; with one, the PSDS2
        # cross-trigger term is undefined (sed_scores_eval fails on it), so it is left out.
        settings_of = {
            k: {**v, "cttc_threshold": None, "alpha_ct": 0.0} for k, v in settings_of.items()
        }
        if PSDS2["alpha_ct"]:
            warnings.warn(
                f"PSDS2 computed without its cross-trigger term: only class {kept[0]!r} has "
                "reference events",
                stacklevel=2,
            )
    statistics = {
        name: partial(intersection_statistics, **_criteria(settings))
        for name, settings in settings_of.items()
    }
    if collar:
        statistics["collar"] = partial(collar_statistics, **COLLAR_PARAMS)
    if progress is None:  # a bar only where it takes a while: about an hour of audio or more
        progress = sum(len(p) for p in kept_probs.values()) * hop_seconds > 3600
    deltas = score_deltas(
        kept_probs, hop_seconds, gt, kept, statistics, num_jobs=num_jobs, progress=progress
    )
    for name, settings in settings_of.items():
        value, per_class, *_ = intersection_based.psds(
            scores=None,
            ground_truth=gt,
            audio_durations=durations,
            deltas=deltas[name],
            unit_of_time="hour",
            **settings,
        )
        out[name] = float(value)
        if classwise:
            out.update({f"{name}/{c}": float(per_class[c]) for c in kept})
    if collar:
        f, *_ = collar_based.fscore(
            scores=None,
            ground_truth=gt,
            threshold=collar_threshold,
            deltas=deltas["collar"],
            **COLLAR_PARAMS,
        )
        best, *_ = collar_based.best_fscore(
            scores=None, ground_truth=gt, deltas=deltas["collar"], **COLLAR_PARAMS
        )
        out["collar_f1"] = float(f["micro_average"])
        out["collar_best_f1"] = float(best["macro_average"])
    return out


def _criteria(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The detection criteria of a PSDS scenario (what its intermediate statistics depend on)."""
    return {k: settings[k] for k in ("dtc_threshold", "gtc_threshold", "cttc_threshold")}
