"""Is it better? Bootstrap confidence intervals over test files, and paired comparisons.

sed_eval's overall (micro) event and segment metrics are ratios of counts summed over files, so a
split's metric is a function of per-file counts. Resampling files with replacement (each drawn
file brings all its counts) and recomputing the ratios from the summed counts gives a bootstrap
interval (scipy.stats.bootstrap, BCa); resampling the same files for two systems gives the
interval of their difference (a paired comparison: same test files, same folds and seeds).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats
from scipy.stats import DegenerateDataWarning

from sed.evaluation import sed_eval_metrics

__all__ = [
    "COUNT_COLUMNS",
    "METRICS",
    "bootstrap",
    "metric_from_counts",
    "paired_bootstrap",
    "per_file_counts",
]

COUNT_COLUMNS = (
    "event_nref", "event_nsys", "event_ntp", "event_nsubs", "event_nfn", "event_nfp",
    "segment_nref", "segment_nsys", "segment_ntp", "segment_s", "segment_d", "segment_i",
)  # fmt: skip
METRICS = ("event_f1", "event_er", "segment_f1", "segment_er")


def per_file_counts(
    reference: pd.DataFrame,
    estimated: pd.DataFrame,
    classes: Sequence[str],
    durations: Mapping[str, float],
    **params,
) -> pd.DataFrame:
    """One row of sed_eval counts (COUNT_COLUMNS) per file of `durations`, indexed by filename."""
    ref_by = dict(tuple(reference.groupby("filename", sort=False)))
    est_by = dict(tuple(estimated.groupby("filename", sort=False)))
    rows = []
    for name in sorted(durations):
        ref = ref_by.get(name, reference.iloc[:0])
        est = est_by.get(name, estimated.iloc[:0])
        ev, seg = sed_eval_metrics(ref, est, classes, {name: durations[name]}, **params)
        e, s = ev.overall, seg.overall
        rows.append(
            (
                name,
                e["Nref"],
                e["Nsys"],
                e["Ntp"],
                e["Nsubs"],
                e["Nfn"],
                e["Nfp"],
                s["Nref"],
                s["Nsys"],
                s["Ntp"],
                s["S"],
                s["D"],
                s["I"],
            )  # fmt: skip
        )
    return pd.DataFrame(rows, columns=["filename", *COUNT_COLUMNS]).set_index("filename")


def metric_from_counts(totals: np.ndarray | pd.Series, name: str) -> np.ndarray:
    """A micro metric from summed counts ([..., len(COUNT_COLUMNS)] in COUNT_COLUMNS order)."""
    t = np.asarray(totals, dtype=np.float64)
    col = {c: t[..., i] for i, c in enumerate(COUNT_COLUMNS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        if name == "event_f1":
            return np.where(col["event_nref"] + col["event_nsys"] > 0,
                            2 * col["event_ntp"] / (col["event_nref"] + col["event_nsys"]), 0.0)  # fmt: skip
        if name == "event_er":
            errors = col["event_nsubs"] + col["event_nfn"] + col["event_nfp"]
            return errors / col["event_nref"]
        if name == "segment_f1":
            return np.where(col["segment_nref"] + col["segment_nsys"] > 0,
                            2 * col["segment_ntp"] / (col["segment_nref"] + col["segment_nsys"]), 0.0)  # fmt: skip
        if name == "segment_er":
            return (col["segment_s"] + col["segment_d"] + col["segment_i"]) / col["segment_nref"]
    raise ValueError(f"unknown metric {name!r}; expected one of {METRICS}")


def bootstrap(
    counts: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """{metric: (value on all files, low, high)}: BCa bootstrap interval over files."""
    if not metrics:
        return {}
    c = counts[list(COUNT_COLUMNS)].to_numpy(np.float64)

    def statistic(totals: list[np.ndarray]) -> np.ndarray:
        return np.stack([metric_from_counts(totals[0], name) for name in metrics])

    intervals = _file_bootstrap([c], statistic, n_resamples, confidence, seed)
    return dict(zip(metrics, intervals, strict=True))


def paired_bootstrap(
    counts_a: pd.DataFrame,
    counts_b: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """{metric: (A - B on all files, low, high)} resampling the same files for both systems."""
    if set(counts_a.index) != set(counts_b.index):
        only = sorted(set(counts_a.index) ^ set(counts_b.index))[:5]
        raise ValueError(f"paired comparison needs the same files in both runs; differ: {only}")
    if not metrics:
        return {}
    a = counts_a.loc[sorted(counts_a.index), list(COUNT_COLUMNS)].to_numpy(np.float64)
    b = counts_b.loc[sorted(counts_b.index), list(COUNT_COLUMNS)].to_numpy(np.float64)

    def statistic(totals: list[np.ndarray]) -> np.ndarray:
        return np.stack(
            [metric_from_counts(totals[0], n) - metric_from_counts(totals[1], n) for n in metrics]
        )

    intervals = _file_bootstrap([a, b], statistic, n_resamples, confidence, seed)
    return dict(zip(metrics, intervals, strict=True))


# Resampled values held at once (files x count columns x resamples per batch): bounds memory.
_BATCH_VALUES = 2**22


def _file_bootstrap(
    systems: list[np.ndarray],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    n_resamples: int,
    confidence: float,
    seed: int,
) -> list[tuple[float, float, float]]:
    """(point, low, high) of each row of `statistic` by scipy's paired BCa bootstrap over files.

    `systems` are [files, COUNT_COLUMNS] counts of the same files; every count column of every
    system is one paired sample, so a resample draws files and each drawn file brings all its
    counts (in every system); `statistic` maps the summed counts ([..., COUNT_COLUMNS] per
    system) to [metrics, ...]. Where BCa is undefined, the interval falls back cleanly: a
    bootstrap distribution without spread (e.g. a system compared with itself, or one file)
    gives (point, value, value); one that holds NaN (a resample without reference events, for
    an error rate) or where BCa is not finite (a degenerate jackknife: its acceleration is
    0 / 0) gives the percentile interval of the resampled values, NaN ignored.
    """
    points = statistic([s.sum(0) for s in systems])
    if len(systems[0]) < 2:  # every resample is the one file
        return [(float(p), float(p), float(p)) for p in points]
    width = systems[0].shape[1]
    samples = [s[:, j] for s in systems for j in range(width)]

    def resampled(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        sums = np.stack([column.sum(axis=axis) for column in columns], axis=-1)
        return statistic([sums[..., i * width : (i + 1) * width] for i in range(len(systems))])

    with warnings.catch_warnings():  # degenerate cases are handled below
        warnings.simplefilter("ignore", DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy.stats.bootstrap(
            samples,
            resampled,
            n_resamples=n_resamples,
            batch=max(1, _BATCH_VALUES // (len(samples) * len(samples[0]))),
            vectorized=True,
            paired=True,
            confidence_level=confidence,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    lows = np.atleast_1d(result.confidence_interval.low)
    highs = np.atleast_1d(result.confidence_interval.high)
    distributions = np.atleast_2d(result.bootstrap_distribution)
    intervals = []
    for point, low, high, values in zip(points, lows, highs, distributions, strict=True):
        present = values[~np.isnan(values)]
        if present.size and present.min() == present.max():
            low = high = present[0]
        elif present.size < values.size or not (np.isfinite(low) and np.isfinite(high)):
            low, high = _percentile_interval(values, confidence)
        intervals.append((float(point), float(low), float(high)))
    return intervals


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` percentile interval of `values`, NaN ignored (NaN if all are)."""
    if np.isnan(values).all():
        return math.nan, math.nan
    low, high = np.nanpercentile(values, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(low), float(high)
