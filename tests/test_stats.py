"""Bootstrap intervals over files and paired comparisons, built on sed_eval's per-file counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sed.evaluation import evaluate_events
from sed.stats import (
    COUNT_COLUMNS,
    METRICS,
    bootstrap,
    metric_from_counts,
    paired_bootstrap,
    per_file_counts,
)

CLASSES = ["a", "b", "c"]


def _tables(seed: int, n_files: int = 30, jitter: float = 0.1, miss: float = 0.2):
    """Reference events and a system that shifts them by up to `jitter` s, drops a share `miss`
    and adds a few insertions."""
    rng = np.random.default_rng(seed)
    ref, est, durations = [], [], {}
    for i in range(n_files):
        name = f"file{i:02d}.wav"
        durations[name] = 10.0
        for _ in range(int(rng.integers(1, 5))):
            onset = float(rng.uniform(0, 8))
            offset = onset + float(rng.uniform(0.3, 2))
            label = str(rng.choice(CLASSES))
            ref.append((name, onset, offset, label))
            if rng.random() > miss:
                d = rng.uniform(-jitter, jitter, 2)
                on = max(0.0, onset + d[0])
                est.append((name, on, max(on + 0.1, offset + d[1]), label))
        if rng.random() < 0.3:
            onset = float(rng.uniform(0, 8))
            est.append((name, onset, onset + 1, str(rng.choice(CLASSES))))
    cols = ["filename", "onset", "offset", "event_label"]
    return pd.DataFrame(ref, columns=cols), pd.DataFrame(est, columns=cols), durations


def test_summed_counts_equal_sed_eval_overall() -> None:
    ref, est, durations = _tables(0)
    counts = per_file_counts(ref, est, CLASSES, durations)
    assert list(counts.index) == sorted(durations)
    overall = evaluate_events(ref, est, CLASSES, durations)
    for name in METRICS:
        assert metric_from_counts(counts.sum(0), name) == pytest.approx(overall[name], abs=1e-9)


def test_interval_contains_point_and_narrows_with_more_files() -> None:
    ref, est, durations = _tables(1, n_files=20)
    few = bootstrap(per_file_counts(ref, est, CLASSES, durations), seed=3)
    ref, est, durations = _tables(1, n_files=200)
    many = bootstrap(per_file_counts(ref, est, CLASSES, durations), seed=3)
    for name, (point, low, high) in few.items():
        assert low <= point <= high, name
        assert many[name][2] - many[name][1] < high - low, name


def test_paired_comparison() -> None:
    ref, est, durations = _tables(2, n_files=60, jitter=0.05, miss=0.1)
    _, worse, _ = _tables(2, n_files=60, jitter=0.6, miss=0.5)  # same references, worse system
    good = per_file_counts(ref, est, CLASSES, durations)
    bad = per_file_counts(ref, worse, CLASSES, durations)
    same = paired_bootstrap(good, good)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())
    diff = paired_bootstrap(good, bad)
    assert diff["event_f1"][1] > 0  # the whole interval favours the better system
    assert diff["event_er"][2] < 0
    with pytest.raises(ValueError, match="same files"):
        paired_bootstrap(good, bad.iloc[1:])


def _percentile_bootstrap(counts: pd.DataFrame, n_resamples: int, seed: int) -> dict:
    """The implementation before scipy's BCa, kept as the reference: files drawn with
    replacement as [R, F] multiplicities, the metric recomputed from the weighted count sums, the
    central 95 % percentile interval (NaN resamples ignored)."""
    c = counts[list(COUNT_COLUMNS)].to_numpy(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(c), size=(n_resamples, len(c)))
    weights = np.stack([np.bincount(row, minlength=len(c)) for row in idx]).astype(np.float64)
    sums = weights @ c
    return {
        name: tuple(np.nanpercentile(metric_from_counts(sums, name), [2.5, 97.5]))
        for name in METRICS
    }


def test_bca_intervals_agree_with_the_percentile_bootstrap_within_monte_carlo_error() -> None:
    """scipy's BCa over files against the former percentile bootstrap on a fixed example: each
    interval end of one draw differs by less than 4 standard deviations of the difference of
    two draws, the standard deviations measured across bootstrap seeds of each method. (BCa's
    skew correction shifts the ends by about 0.002-0.004 here, a fraction of that Monte-Carlo
    error at 4000 resamples; an interval over the wrong unit or of a wrong statistic is off by
    far more.)"""
    ref, est, durations = _tables(1, n_files=60)
    counts = per_file_counts(ref, est, CLASSES, durations)
    n, seeds = 4000, range(8)
    new = {s: bootstrap(counts, n_resamples=n, seed=s) for s in seeds}
    old = {s: _percentile_bootstrap(counts, n, 100 + s) for s in seeds}
    for name in METRICS:
        ends_new = np.array([new[s][name][1:] for s in seeds])
        ends_old = np.array([old[s][name] for s in seeds])
        spread = np.sqrt(ends_new.std(0, ddof=1) ** 2 + ends_old.std(0, ddof=1) ** 2)
        assert (spread > 0).all() and (spread < 0.01).all(), (name, spread)
        difference = np.abs(ends_new[0] - ends_old[0])
        assert (difference < 4 * spread).all(), (name, difference, spread)


def test_degenerate_bootstraps_fall_back() -> None:
    ref, est, durations = _tables(3, n_files=12)
    counts = per_file_counts(ref, est, CLASSES, durations)
    # One file: every resample is that file, so the interval is the point.
    (point, low, high) = bootstrap(counts.iloc[:1], ["event_f1"])["event_f1"]
    assert point == low == high
    # Reference events in one file only: resamples without it have no event ER (0 / 0), and the
    # interval falls back to the percentiles of the resamples that have one.
    sparse = counts.copy()
    sparse.iloc[1:, :] = 0
    result = bootstrap(sparse, n_resamples=500)
    for name, (point, low, high) in result.items():
        assert np.isfinite([point, low, high]).all(), name
        assert low <= point <= high, name
