"""Sweep figures: a metric (mean +/- std over seeds or folds) against the swept params."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sed.errors import PlotError
from sed.plots import DPI, require_columns, save_figure

__all__ = ["plot_metric_vs_params"]


def _axis_values(values: pd.Series) -> tuple[np.ndarray, list[Any] | None]:
    """Numeric x positions of param values, plus the category labels when they are not numbers."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(float), None
    categories = sorted(values.astype(str).unique())
    return values.astype(str).map(categories.index).to_numpy(float), categories


def plot_metric_vs_params(
    table: pd.DataFrame,
    metric: str,
    params: Sequence[str],
    path: str | Path,
    by: Sequence[str] = (),
    dpi: int = DPI,
) -> Figure:
    """A panel per param: `metric` mean (+/- std error bars) against that param, one line per
    combination of the other params (and of the `by` columns) that vary in the table.

    `table` is either a summary with `{metric}_mean` / `{metric}_std` columns (as written by
    sed.report) or a per-run table with a `metric` column, which is averaged here (std ddof=1)
    over the rows that share all of `params` and `by`.
    """
    params, by = list(params), [b for b in by if b not in params]
    if not params:
        raise PlotError("plot_metric_vs_params: no params to plot against")
    require_columns(table, params + by, "metric table")
    mean_col, std_col = f"{metric}_mean", f"{metric}_std"
    if mean_col in table.columns:
        data = table.copy()
        if std_col not in data.columns:
            data[std_col] = np.nan
    elif metric in table.columns:
        grouped = table.groupby(params + by, dropna=False)[metric]
        data = pd.concat(
            [grouped.mean().rename(mean_col), grouped.std(ddof=1).rename(std_col)], axis=1
        ).reset_index()
    else:
        raise PlotError(
            f"metric table: neither {mean_col!r} nor {metric!r} is a column; "
            f"it has {list(table.columns)}"
        )
    data = data[data[mean_col].notna()].reset_index(drop=True)
    if data.empty:
        raise PlotError(f"metric table: no values of {metric!r} to plot")

    def others_of(param: str) -> list[str]:
        return [q for q in params + by if q != param and data[q].nunique(dropna=False) > 1]

    most_lines = max(
        len(data.groupby(others_of(p), dropna=False)) if others_of(p) else 0 for p in params
    )
    fig = Figure(figsize=(4.8 * len(params) + 0.6, 3.8 + 0.2 * most_lines), layout="constrained")
    axes = fig.subplots(1, len(params), squeeze=False)[0]
    for ax, param in zip(axes, params, strict=True):
        others = others_of(param)
        groups = list(data.groupby(others, dropna=False, sort=True)) if others else [((), data)]
        x_all, categories = _axis_values(data[param])
        positions = pd.Series(x_all, index=data.index)
        for key, rows in groups:
            x = positions.loc[rows.index].to_numpy()
            order = np.argsort(x, kind="stable")
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{q}={v}" for q, v in zip(others, key, strict=True)) or metric
            ax.errorbar(
                x[order],
                rows[mean_col].to_numpy(float)[order],
                yerr=np.nan_to_num(rows[std_col].to_numpy(float)[order]),
                marker="o",
                capsize=3,
                linewidth=1.4,
                label=label,
            )
        if categories is not None:
            ax.set_xticks(range(len(categories)), labels=categories)
        elif (x_all > 0).all() and x_all.max() / x_all.min() >= 50:
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel(f"{metric} (mean ± std)")
        ax.set_title(f"{metric} vs {param}")
        ax.grid(alpha=0.3)
        if others:
            # Below the panel, where it hides no data; constrained layout makes room for it.
            ax.legend(
                fontsize=7,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.16),
                ncol=1 if len(groups) <= 8 else 2,
                frameon=False,
            )
    fig.suptitle(f"{metric} across the sweep (error bars: std over seeds/folds)")
    save_figure(fig, path, dpi)
    return fig
