"""DCASE-style metrics: event- and segment-based (sed_eval), frame-based, PSDS (sed_scores_eval).

Event tables are DataFrames with columns ``filename, onset, offset, event_label`` (seconds).
sed_eval is run file by file with its own ``evaluate`` methods, so the numbers are sed_eval's;
only the per-file split is done here (one pandas groupby instead of sed_eval's linear
``filter`` per file, which makes a naive loop quadratic in the number of events).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from sed.annotations import COLUMNS, events_to_frames
from sed.environment import import_sed_eval
from sed.postprocess import PostProcessing, binarize, probs_to_events
from sed.score_stats import collar_statistics, intersection_statistics, score_deltas

# Imported through the check, so setuptools >= 81 or pandas 3 is named with its fix instead of
# a ModuleNotFoundError deep inside dcase_util.
sed_eval = import_sed_eval()
from dcase_util.containers import MetaDataContainer, MetaDataItem  # noqa: E402

__all__ = [
    "EVENT_PARAMS",
    "PSDS1",
    "PSDS2",
    "SEGMENT_PARAMS",
    "EvaluationError",
    "classwise_table",
    "evaluate_all",
    "evaluate_events",
    "frame_metrics",
    "ground_truth_dict",
    "psds_from_scores",
    "score_dataframes",
    "sed_eval_metrics",
]

# DCASE settings (sed_eval's own default percentage_of_length is 0.5).
EVENT_PARAMS: dict[str, Any] = {
    "t_collar": 0.2,
    "percentage_of_length": 0.2,
    "evaluate_onset": True,
    "evaluate_offset": True,
    "event_matching_type": "optimal",
}
SEGMENT_PARAMS: dict[str, Any] = {"time_resolution": 1.0}
# sed_eval reports precision (hence F1) as NaN when a system outputs nothing; "zero_score"
# (a sed_eval option) makes that 0 so that early stopping and metrics.json stay numeric.
COMMON_PARAMS: dict[str, Any] = {"empty_system_output_handling": "zero_score"}

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

_FLOAT_PARAMS = ("t_collar", "percentage_of_length", "time_resolution")


class EvaluationError(ValueError):
    """Inputs to an evaluation that cannot be evaluated (unknown label, file, bad row)."""


# ----------------------------------------------------------------------------- validation


def _check_classes(classes: Sequence[str]) -> list[str]:
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


def _check_events(
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


def _check_durations(
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


def _split_params(params: Mapping[str, Any]) -> tuple[dict, dict, Any]:
    """DCASE defaults updated by params, split into event, segment and common settings."""
    event, segment, common = dict(EVENT_PARAMS), dict(SEGMENT_PARAMS), dict(COMMON_PARAMS)
    for key, value in params.items():
        if key in _FLOAT_PARAMS:
            value = float(value)
        if key in event:
            event[key] = value
        elif key in segment:
            segment[key] = value
        elif key in common:
            common[key] = value
        else:
            known = sorted([*EVENT_PARAMS, *SEGMENT_PARAMS, *COMMON_PARAMS])
            raise EvaluationError(f"unknown evaluation parameter {key!r}; known: {known}")
    return event, segment, common["empty_system_output_handling"]


# ----------------------------------------------------------------------------- sed_eval


def _containers(events: pd.DataFrame) -> dict[str, MetaDataContainer]:
    """One sed_eval event list per file, rows in table order (as MetaDataContainer.filter gives)."""
    out: dict[str, MetaDataContainer] = {}
    if events.empty:
        return out
    onsets = events["onset"].to_numpy(dtype=float).tolist()
    offsets = events["offset"].to_numpy(dtype=float).tolist()
    labels = events["event_label"].astype(str).tolist()
    for filename, rows in events.groupby("filename", sort=False).indices.items():
        out[filename] = MetaDataContainer(
            [
                MetaDataItem(
                    {
                        "filename": filename,
                        "onset": onsets[i],
                        "offset": offsets[i],
                        "event_label": labels[i],
                    }
                )
                for i in rows
            ]
        )
    return out


def sed_eval_metrics(
    reference: pd.DataFrame | None,
    estimated: pd.DataFrame | None,
    classes: Sequence[str],
    durations: Mapping[str, float] | None = None,
    **params: Any,
) -> tuple[sed_eval.sound_event.EventBasedMetrics, sed_eval.sound_event.SegmentBasedMetrics]:
    """sed_eval's accumulated EventBasedMetrics and SegmentBasedMetrics (for its text reports).

    Files: every key of durations if given (files absent from both tables have no events),
    else every file named in either table. Each file's segment metrics cover its duration
    (sed_eval's ``evaluated_length_seconds``; without durations, the last event offset).
    """
    classes = _check_classes(classes)
    reference, ref_files = _check_events(reference, classes, "reference")
    estimated, est_files = _check_events(estimated, classes, "estimated")
    durations = _check_durations(durations, {"reference": ref_files, "estimated": est_files})
    event_params, segment_params, empty_handling = _split_params(params)

    event_metrics = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(classes),
        empty_system_output_handling=empty_handling,
        **event_params,
    )
    segment_metrics = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=list(classes), **segment_params
    )
    # SegmentBasedMetrics.__init__ does not take this option, but its metrics read it.
    segment_metrics.empty_system_output_handling = empty_handling

    files = sorted(durations) if durations is not None else sorted(ref_files | est_files)
    ref_lists, est_lists = _containers(reference), _containers(estimated)
    for filename in files:
        ref = ref_lists.get(filename) or MetaDataContainer()
        est = est_lists.get(filename) or MetaDataContainer()
        event_metrics.evaluate(reference_event_list=ref, estimated_event_list=est)
        segment_metrics.evaluate(
            reference_event_list=ref,
            estimated_event_list=est,
            evaluated_length_seconds=None if durations is None else durations[filename],
        )
    return event_metrics, segment_metrics


def _flatten(metrics: Any, prefix: str, classes: Sequence[str], classwise: bool) -> dict:
    """sed_eval results -> flat {prefix_name: float} (overall, macro, and NAME/CLASS)."""
    with warnings.catch_warnings():
        # numpy's "Mean of empty slice" when every class-wise value is NaN (no output at all)
        warnings.simplefilter("ignore", RuntimeWarning)
        overall = metrics.results_overall_metrics()
        macro = metrics.results_class_wise_average_metrics()
        per_class = metrics.results_class_wise_metrics()
    f, er = overall["f_measure"], overall["error_rate"]
    out = {
        f"{prefix}_f1": f["f_measure"],
        f"{prefix}_precision": f["precision"],
        f"{prefix}_recall": f["recall"],
        f"{prefix}_er": er["error_rate"],
        f"{prefix}_substitution_rate": er["substitution_rate"],
        f"{prefix}_deletion_rate": er["deletion_rate"],
        f"{prefix}_insertion_rate": er["insertion_rate"],
        f"{prefix}_nref": metrics.overall["Nref"],
        f"{prefix}_nsys": metrics.overall["Nsys"],
    }
    out[f"{prefix}_f1_macro"] = macro["f_measure"]["f_measure"]
    # sed_eval divides by eps for a class without reference events (ER ~ 1e16): such rates
    # are undefined, so they are NaN here and the macro ER averages the classes that have some.
    has_ref = [c for c in classes if metrics.class_wise[c]["Nref"] > 0]
    out[f"{prefix}_er_macro"] = (
        float(np.mean([per_class[c]["error_rate"]["error_rate"] for c in has_ref]))
        if has_ref
        else math.nan
    )
    if classwise:
        for c in classes:
            r = per_class[c]
            defined = c in has_ref
            out[f"{prefix}_f1/{c}"] = r["f_measure"]["f_measure"]
            out[f"{prefix}_precision/{c}"] = r["f_measure"]["precision"]
            out[f"{prefix}_recall/{c}"] = r["f_measure"]["recall"]
            for name in ("error_rate", "deletion_rate", "insertion_rate"):
                key = "er" if name == "error_rate" else name
                out[f"{prefix}_{key}/{c}"] = r["error_rate"][name] if defined else math.nan
            out[f"{prefix}_nref/{c}"] = r["count"]["Nref"]
            out[f"{prefix}_nsys/{c}"] = r["count"]["Nsys"]
    return {k: float(v) for k, v in out.items()}


def evaluate_events(
    reference: pd.DataFrame | None,
    estimated: pd.DataFrame | None,
    classes: Sequence[str],
    durations: Mapping[str, float] | None = None,
    *,
    classwise: bool = True,
    **params: Any,
) -> dict[str, float]:
    """Event-based and segment-based sed_eval metrics as one flat dict (DESIGN contract).

    Keys: ``event_f1, event_precision, event_recall, event_er, event_substitution_rate,
    event_deletion_rate, event_insertion_rate, event_nref, event_nsys, event_f1_macro,
    event_er_macro``, the same with ``segment_``, and per class ``event_f1/CLASS`` etc.
    (sed_eval has no class-wise substitutions). params override the DCASE defaults:
    t_collar=0.2, percentage_of_length=0.2, evaluate_onset/offset=True,
    event_matching_type="optimal", time_resolution=1.0, empty_system_output_handling=
    "zero_score" (None gives sed_eval's NaN precision for an empty system output).
    """
    event_metrics, segment_metrics = sed_eval_metrics(
        reference, estimated, classes, durations, **params
    )
    classes = [str(c) for c in classes]
    return {
        **_flatten(event_metrics, "event", classes, classwise),
        **_flatten(segment_metrics, "segment", classes, classwise),
    }


def classwise_table(
    metrics: Mapping[str, float], classes: Sequence[str] | None = None
) -> pd.DataFrame:
    """Class-wise metrics (keys ``[SPLIT/]NAME/CLASS``) as a DataFrame: one row per class."""
    rows: dict[str, dict[str, float]] = {}
    known = None if classes is None else [str(c) for c in classes]
    for key, value in metrics.items():
        parts = str(key).split("/")
        if len(parts) < 2:
            continue
        name, label = parts[-2], parts[-1]
        if known is not None and label not in known:
            continue
        if known is None and not (name.startswith(("event_", "segment_", "psds"))):
            continue
        rows.setdefault(label, {})[name] = value
    order = known if known is not None else sorted(rows)
    table = pd.DataFrame.from_dict({c: rows.get(c, {}) for c in order}, orient="index")
    table.index.name = "event_label"
    return table


def _numpy(x: Any) -> np.ndarray:
    """numpy array from an array-like or a (CPU/GPU, any dtype) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach()
        if x.is_floating_point():
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


# ----------------------------------------------------------------------------- frame-based


def _as_list(x: Any, name: str) -> list[np.ndarray]:
    """[T, C] array, [B, T, C] array/tensor or a sequence of [T, C] arrays -> list of arrays."""
    if hasattr(x, "detach"):
        x = _numpy(x)
    if isinstance(x, np.ndarray):
        if x.ndim == 2:
            return [x]
        if x.ndim == 3:
            return list(x)
        raise EvaluationError(f"{name} must be [T, C] or [B, T, C], got shape {x.shape}")
    return [_numpy(a) for a in x]


def frame_metrics(
    reference: Any, estimated: Any, masks: Any = None, threshold: float | None = None
) -> dict[str, float]:
    """Frame-based micro F1 and error rate over all frames and classes.

    reference / estimated: [T, C], [B, T, C] or lists of [T, C] (0/1; estimated may be
    probabilities when ``threshold`` is given, active where ``> threshold``). masks: [T],
    [B, T] or a list of [T] bools marking valid (unpadded) frames. Per frame,
    S = min(FN, FP), D = max(0, FN - FP), I = max(0, FP - FN); ER = (S + D + I) / N with N the
    active reference labels (Drossos et al. / sed_eval's segment-style counting).
    """
    refs, ests = _as_list(reference, "reference"), _as_list(estimated, "estimated")
    if len(refs) != len(ests):
        raise EvaluationError(f"{len(refs)} reference but {len(ests)} estimated arrays")
    if masks is None:
        mask_list: list[np.ndarray | None] = [None] * len(refs)
    else:
        mask_list = [np.asarray(m, dtype=bool) for m in _mask_list(masks)]
        if len(mask_list) != len(refs):
            raise EvaluationError(f"{len(refs)} arrays but {len(mask_list)} masks")
    tp = n_ref = n_sys = s = d = i = 0
    for k, (ref, est, mask) in enumerate(zip(refs, ests, mask_list, strict=True)):
        if ref.shape != est.shape or ref.ndim != 2:
            raise EvaluationError(
                f"item {k}: reference {ref.shape} and estimated {est.shape} must both be [T, C]"
            )
        ref = ref > 0.5
        if threshold is not None:
            est = est > threshold
        elif est.dtype != bool:
            if not np.isin(est, (0, 1)).all():
                raise EvaluationError(
                    f"item {k}: estimated frames are not 0/1; pass threshold= for probabilities"
                )
            est = est > 0.5
        if mask is not None:
            if mask.shape != (ref.shape[0],):
                raise EvaluationError(
                    f"item {k}: mask {mask.shape} does not match T={ref.shape[0]}"
                )
            ref, est = ref[mask], est[mask]
        tp_f = (ref & est).sum(axis=1)
        fn_f = (ref & ~est).sum(axis=1)
        fp_f = (~ref & est).sum(axis=1)
        tp += int(tp_f.sum())
        n_ref += int(ref.sum())
        n_sys += int(est.sum())
        s += int(np.minimum(fn_f, fp_f).sum())
        d += int(np.maximum(0, fn_f - fp_f).sum())
        i += int(np.maximum(0, fp_f - fn_f).sum())
    precision = tp / n_sys if n_sys else 0.0
    recall = tp / n_ref if n_ref else math.nan
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    rate = (lambda x: x / n_ref) if n_ref else (lambda x: math.nan)
    return {
        "frame_f1": float(f1),
        "frame_precision": float(precision),
        "frame_recall": float(recall),
        "frame_er": float(rate(s + d + i)),
        "frame_substitution_rate": float(rate(s)),
        "frame_deletion_rate": float(rate(d)),
        "frame_insertion_rate": float(rate(i)),
    }


def _mask_list(masks: Any) -> list[Any]:
    masks = _numpy(masks) if hasattr(masks, "detach") else masks
    if isinstance(masks, np.ndarray):
        return [masks] if masks.ndim == 1 else list(masks)
    return list(masks)


# ----------------------------------------------------------------------------- PSDS


def score_dataframes(
    probs: Mapping[str, Any], hop_seconds: float, classes: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """sed_scores_eval score DataFrames (frame onset, offset, one column per class) per file."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    out = {}
    for filename, p in probs.items():
        p = np.asarray(_numpy(p), dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[0] == 0:
            raise EvaluationError(
                f"scores for file {filename!r} must have shape [T > 0, {len(classes)}], got {p.shape}"
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
    classes = _check_classes(classes)
    reference, _ = _check_events(reference, classes, "reference")
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


def _scored_durations(
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

    classes = _check_classes(classes)
    probs = {str(f): p for f, p in probs.items()}
    if not probs:
        raise EvaluationError("no scores given")
    durations = _scored_durations(probs, durations, hop_seconds)
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
        p = _numpy(p)
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


# ----------------------------------------------------------------------------- all at once


def evaluate_all(
    reference: pd.DataFrame | None,
    probs: Mapping[str, Any],
    hop_seconds: float,
    classes: Sequence[str],
    durations: Mapping[str, float] | None = None,
    postprocessing: PostProcessing | Mapping[str, Any] | None = None,
    *,
    estimated: pd.DataFrame | None = None,
    targets: Mapping[str, Any] | None = None,
    psds: bool = True,
    classwise: bool = True,
    num_jobs: int = 1,
    **params: Any,
) -> dict[str, float]:
    """Every metric for one split as one flat dict (event_*, segment_*, frame_*, psds1, psds2).

    probs: {filename: [T, C] probabilities} for every file of the split. Events come from
    ``postprocessing`` (or ``estimated`` if given); frame metrics use the thresholds only (no
    median filter) against ``targets`` ({filename: [T, C]}, default: reference events on the
    frame grid). durations default to T * hop per file. Training prefixes keys with SPLIT/.
    PSDS (`sed.score_stats`, ``num_jobs`` processes) takes about a second per 10 minutes of
    audio; pass ``psds=False`` for cheap per-epoch validation.
    """
    classes = _check_classes(classes)
    if postprocessing is None:
        postprocessing = PostProcessing()
    elif isinstance(postprocessing, Mapping):
        postprocessing = PostProcessing.from_dict(postprocessing)
    probs = {str(f): p for f, p in probs.items()}
    reference, _ = _check_events(reference, classes, "reference")
    unscored = sorted(set(reference["filename"]) - probs.keys())
    if unscored:
        raise EvaluationError(f"reference file(s) {unscored[:5]} have no predictions")
    durations = _scored_durations(probs, durations, hop_seconds)
    if estimated is None:
        estimated = probs_to_events(probs, hop_seconds, classes, postprocessing)

    out = evaluate_events(reference, estimated, classes, durations, classwise=classwise, **params)

    rows_of = reference.groupby("filename", sort=False).indices
    ref_frames, est_frames = [], []
    for f, p in probs.items():
        p = _numpy(p)
        if targets is not None:
            if f not in targets:
                raise EvaluationError(f"no targets for file {f!r}")
            t = _numpy(targets[f])
        else:
            events = reference.iloc[rows_of.get(f, [])]
            t = events_to_frames(events, p.shape[0], hop_seconds, classes)
        ref_frames.append(t)
        est_frames.append(binarize(p, postprocessing.threshold, classes))
    out.update(frame_metrics(ref_frames, est_frames))

    if psds:
        out.update(
            psds_from_scores(
                probs,
                hop_seconds,
                reference,
                durations,
                classes,
                classwise=classwise,
                num_jobs=num_jobs,
            )
        )
    return out
