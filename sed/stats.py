"""Is it better? Bootstrap confidence intervals over test files, and paired comparisons.

sed_eval's overall (micro) event and segment metrics are ratios of counts summed over files, so a
split's metric is a function of per-file counts. Resampling files with replacement and recomputing
the ratios gives a percentile bootstrap interval; resampling the same files for two systems gives
the interval of their difference (a paired comparison: same test files, same folds and seeds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

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


def _weights(n_files: int, n_resamples: int, seed: int) -> np.ndarray:
    """[R, F] multiplicities of each file in R bootstrap resamples (files drawn with replacement)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_files, size=(n_resamples, n_files))
    return np.stack([np.bincount(row, minlength=n_files) for row in idx]).astype(np.float64)


def bootstrap(
    counts: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float, float]]:
    """{metric: (value on all files, low, high)}: percentile bootstrap over files."""
    c = counts[list(COUNT_COLUMNS)].to_numpy(np.float64)
    sums = _weights(len(c), n_resamples, seed) @ c
    return {
        name: _interval(
            metric_from_counts(c.sum(0), name), metric_from_counts(sums, name), confidence
        )
        for name in metrics
    }


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
    a = counts_a.loc[sorted(counts_a.index), list(COUNT_COLUMNS)].to_numpy(np.float64)
    b = counts_b.loc[sorted(counts_b.index), list(COUNT_COLUMNS)].to_numpy(np.float64)
    w = _weights(len(a), n_resamples, seed)

    def delta(sums_a: np.ndarray, sums_b: np.ndarray, name: str) -> np.ndarray:
        return metric_from_counts(sums_a, name) - metric_from_counts(sums_b, name)

    return {
        name: _interval(delta(a.sum(0), b.sum(0), name), delta(w @ a, w @ b, name), confidence)
        for name in metrics
    }


def _interval(
    point: np.ndarray, samples: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """(point, low, high): the central `confidence` percentile interval of `samples`."""
    low, high = np.nanpercentile(samples, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(point), float(low), float(high)
