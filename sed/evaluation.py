"""DCASE-style metrics of a split: event- and segment-based (sed_eval), and evaluate_all.

evaluate_all gives every metric of a split at once: these, frame-based (sed.frame_metrics) and
PSDS / collar F1 (sed.psds, whose names are importable from here too); the input checks are
sed.evaluation_checks'.

Event tables are DataFrames with columns ``filename, onset, offset, event_label`` (seconds).
sed_eval is run file by file with its own ``evaluate`` methods, so the numbers are sed_eval's;
only the per-file split is done here (one pandas groupby instead of sed_eval's linear
``filter`` per file, which makes a naive loop quadratic in the number of events).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sed.annotations import events_to_frames
from sed.environment import import_sed_eval
from sed.errors import EvaluationError
from sed.evaluation_checks import (
    check_classes,
    check_durations,
    check_events,
    scored_durations,
    to_numpy,
)
from sed.frame_metrics import frame_metrics
from sed.postprocess import PostProcessing, binarize, probs_to_events
from sed.psds import (
    COLLAR_PARAMS,
    PSDS1,
    PSDS2,
    ground_truth_dict,
    psds_from_scores,
    score_dataframes,
)

# Imported through the check, so setuptools >= 81 or pandas 3 is named with its fix instead of
# a ModuleNotFoundError deep inside dcase_util.
sed_eval = import_sed_eval()
from dcase_util.containers import MetaDataContainer, MetaDataItem  # noqa: E402

__all__ = [
    "COLLAR_PARAMS",
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

_FLOAT_PARAMS = ("t_collar", "percentage_of_length", "time_resolution")


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
    classes = check_classes(classes)
    reference, ref_files = check_events(reference, classes, "reference")
    estimated, est_files = check_events(estimated, classes, "estimated")
    durations = check_durations(durations, {"reference": ref_files, "estimated": est_files})
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
    classes = check_classes(classes)
    if postprocessing is None:
        postprocessing = PostProcessing()
    elif isinstance(postprocessing, Mapping):
        postprocessing = PostProcessing.from_dict(postprocessing)
    probs = {str(f): p for f, p in probs.items()}
    reference, _ = check_events(reference, classes, "reference")
    unscored = sorted(set(reference["filename"]) - probs.keys())
    if unscored:
        raise EvaluationError(f"reference file(s) {unscored[:5]} have no predictions")
    durations = scored_durations(probs, durations, hop_seconds)
    if estimated is None:
        estimated = probs_to_events(probs, hop_seconds, classes, postprocessing)

    out = evaluate_events(reference, estimated, classes, durations, classwise=classwise, **params)

    rows_of = reference.groupby("filename", sort=False).indices
    ref_frames, est_frames = [], []
    for f, p in probs.items():
        p = to_numpy(p)
        if targets is not None:
            if f not in targets:
                raise EvaluationError(f"no targets for file {f!r}")
            t = to_numpy(targets[f])
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
