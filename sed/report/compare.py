"""Grouping the runs table: mean ± std per setting over seeds and folds (`summarize`), each run's
bootstrap interval over its test files (`confidence_intervals`) and paired comparisons of two
settings on the same folds, seeds and test files (`paired_comparisons`, sed.stats)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sed.errors import ReportError
from sed.report.collect import is_missing, metric_columns, override_columns
from sed.report.status import FAILED, FINISHED, INTERRUPTED, RUNNING, UNFINISHED
from sed.stats import bootstrap, paired_bootstrap

__all__ = [
    "COUNTS",
    "DEFAULT_OVER",
    "STATUS_COUNTS",
    "confidence_intervals",
    "paired_comparisons",
    "summarize",
]

DEFAULT_OVER = ("seed", "data.fold")
# The count columns of a summary: finished runs, runs per other status, commits, environments.
COUNTS = (
    "n", "n_failed", "n_unfinished", "n_interrupted", "n_running", "n_commits", "n_environments",
)  # fmt: skip
# The summary's count column of each status that is not `finished`.
STATUS_COUNTS = {
    FAILED: "n_failed",
    UNFINISHED: "n_unfinished",
    INTERRUPTED: "n_interrupted",
    RUNNING: "n_running",
}


def _sorted_groups(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows ordered by the group keys (by their text when the values do not compare)."""
    if not keys:
        return table
    try:
        return table.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)
    except TypeError:
        order = table[keys].astype(str).apply(tuple, axis=1).sort_values(kind="stable").index
        return table.loc[order].reset_index(drop=True)


def summarize(
    runs: pd.DataFrame,
    group_by: Sequence[str] | None = None,
    over: Sequence[str] = DEFAULT_OVER,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean and std (ddof=1) of every metric per group of finished runs, over seeds and folds.

    Groups are `group_by`, or by default every override key not in `over`. Columns: the group
    keys, `n` (finished runs), `n_failed`, `n_unfinished`, `n_interrupted`, `n_running` (runs of
    each other status), `n_commits`, `n_environments`, then `{metric}_mean` and `{metric}_std` per
    metric. A group whose runs all failed keeps its row (n = 0, NaN metrics).
    """
    overrides = override_columns(runs)
    if group_by is None:
        keys = [k for k in overrides if k not in over]
    else:
        keys = list(dict.fromkeys(group_by))
        missing = [k for k in keys if k not in runs.columns]
        if missing:
            raise ReportError(
                f"group-by key(s) {missing} are not overrides of any run; overrides: {overrides}"
            )
    metrics = metric_columns(runs) if metrics is None else list(metrics)
    unknown = [m for m in metrics if m not in runs.columns]
    if unknown:
        raise ReportError(
            f"metric(s) {unknown} are in no metrics.json; available: {metric_columns(runs)}"
        )
    groups = runs.groupby(keys, dropna=False, sort=False) if keys else [((), runs)]
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        finished = group[group["status"] == FINISHED]
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n"] = len(finished)
        for status, column in STATUS_COUNTS.items():
            row[column] = int((group["status"] == status).sum())
        row["n_commits"] = finished["commit"].nunique(dropna=True)
        row["n_environments"] = finished["environment"].nunique(dropna=True)
        for metric in metrics:
            values = pd.to_numeric(finished[metric], errors="coerce")
            row[f"{metric}_mean"] = values.mean()
            row[f"{metric}_std"] = values.std(ddof=1)
        rows.append(row)
    columns = [*keys, *COUNTS, *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
    summary = _sorted_groups(pd.DataFrame(rows, columns=columns), keys)
    averaged = [k for k in overrides if k not in keys]  # what each group's runs may differ in
    summary.attrs = {"group_by": keys, "metrics": metrics, "over": averaged}
    return summary


# --------------------------------------------------------------------------- is it better?


def _per_file(run_dir: str | Path, split: str) -> pd.DataFrame | None:
    """The run's per_file/SPLIT.csv (sed_eval counts per file, indexed by filename), or None."""
    path = Path(run_dir) / "per_file" / f"{split}.csv"
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, index_col="filename", keep_default_na=False)
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: cannot read the per-file counts: {error}") from error


def confidence_intervals(
    runs: pd.DataFrame,
    split: str = "test",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per finished run with per_file/SPLIT.csv and bootstrapped metric: `run_dir`,
    `metric` (SPLIT/NAME), `value` (on all files), `low`, `high` (BCa bootstrap over files), `n_files`."""
    rows = []
    for run_dir in runs.loc[runs["status"] == FINISHED, "run_dir"]:
        counts = _per_file(run_dir, split)
        if counts is None or counts.empty:
            continue
        for name, (value, low, high) in bootstrap(
            counts, n_resamples=n_resamples, confidence=confidence, seed=seed
        ).items():
            rows.append(
                {
                    "run_dir": run_dir,
                    "metric": f"{split}/{name}",
                    "value": value,
                    "low": low,
                    "high": high,
                    "n_files": len(counts),
                }
            )
    return pd.DataFrame(rows, columns=["run_dir", "metric", "value", "low", "high", "n_files"])


def paired_comparisons(
    runs: pd.DataFrame,
    compare: str = "method",
    match: Sequence[str] = DEFAULT_OVER,
    split: str = "test",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """A - B for every two values A < B of `compare` among finished runs that agree on every other
    override: runs are paired on the `match` keys (fold, seed), their per-file counts pooled over
    the pairs, and the difference resampled file by file (stats.paired_bootstrap). Columns: the
    shared settings, `a`, `b`, `n_pairs`, `n_files`, `metric`, `difference`, `low`, `high`."""
    if compare not in runs.columns:
        return pd.DataFrame()
    match_keys = [k for k in match if k in runs.columns]
    others = [k for k in override_columns(runs) if k != compare and k not in match_keys]
    done = runs[(runs["status"] == FINISHED) & runs[compare].notna()]
    rows = []
    groups = done.groupby(others, dropna=False, sort=False) if others else [((), done)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        by_value: dict[Any, dict[tuple, str]] = {}
        for _, run in group.iterrows():
            ident = tuple(None if is_missing(run[k]) else run[k] for k in match_keys)
            by_value.setdefault(run[compare], {})[ident] = run["run_dir"]
        values = sorted(by_value, key=str)
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                pairs = sorted(set(by_value[a]) & set(by_value[b]), key=str)
                stacked = _stack_pairs([(by_value[a][p], by_value[b][p]) for p in pairs], split)
                if stacked is None:
                    continue
                counts_a, counts_b, n_pairs = stacked
                try:
                    result = paired_bootstrap(
                        counts_a,
                        counts_b,
                        n_resamples=n_resamples,
                        confidence=confidence,
                        seed=seed,
                    )
                except ValueError as error:
                    raise ReportError(f"{compare}={a} vs {compare}={b}: {error}") from error
                for name, (diff, low, high) in result.items():
                    rows.append(
                        {
                            **dict(zip(others, key, strict=True)),
                            "a": a,
                            "b": b,
                            "n_pairs": n_pairs,
                            "n_files": len(counts_a),
                            "metric": f"{split}/{name}",
                            "difference": diff,
                            "low": low,
                            "high": high,
                        }
                    )
    columns = [*others, "a", "b", "n_pairs", "n_files", "metric", "difference", "low", "high"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["compare"] = compare
    return table


def _stack_pairs(
    pairs: list[tuple[str, str]], split: str
) -> tuple[pd.DataFrame, pd.DataFrame, int] | None:
    """Per-file counts of the paired runs, stacked with index `PAIR:filename`; None when no pair
    has counts on both sides."""
    parts_a, parts_b = [], []
    for number, (dir_a, dir_b) in enumerate(pairs):
        a, b = _per_file(dir_a, split), _per_file(dir_b, split)
        if a is None or b is None or a.empty or b.empty:
            continue
        if set(a.index) != set(b.index):
            only = sorted(set(a.index) ^ set(b.index))[:3]
            raise ReportError(
                f"{dir_a} and {dir_b} are paired (same fold and seed) but were tested on "
                f"different files, e.g. {only}"
            )
        parts_a.append(a.rename(index=lambda f, n=number: f"{n}:{f}"))
        parts_b.append(b.rename(index=lambda f, n=number: f"{n}:{f}"))
    if not parts_a:
        return None
    return pd.concat(parts_a), pd.concat(parts_b), len(parts_a)
