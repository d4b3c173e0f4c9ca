"""Figures of a run and of a sweep: learning curves, teacher forcing, event rolls, metric vs params.

Every function takes plain data (DataFrames, arrays), writes one labelled PNG atomically
(``sed.io.atomic_write``) and returns the matplotlib ``Figure``
so that notebooks can show it and tests can inspect it. Figures are built with
``matplotlib.figure.Figure`` directly, never through pyplot: nothing is registered with a GUI
backend, nothing needs closing and nothing leaks when thousands of plots are made in a sweep.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from sed.io import atomic_write

__all__ = [
    "PlotError",
    "plot_event_roll",
    "plot_learning_curves",
    "plot_metric_vs_params",
    "plot_teacher_forcing",
    "save_figure",
]

DPI = 120
REFERENCE_GID = "reference"  # gid of the reference-event spans in an event roll (for tests/tools)
ESTIMATED_GID = "estimated"  # gid of the predicted-event bars in an event roll
_REFERENCE_COLOR = "tab:green"
_ESTIMATED_COLOR = "tab:red"
_PROB_COLOR = "tab:blue"


class PlotError(ValueError):
    """Input data that cannot be plotted (missing columns, mismatched shapes, unknown labels)."""


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write `fig` as PNG to `path` atomically (sed.io), creating folders."""
    return atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))


def _require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """PlotError naming the columns `what` lacks."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise PlotError(f"{what}: missing column(s) {missing}; it has {list(table.columns)}")


def _lower_is_better(name: str) -> bool:
    """Error rates and losses are minimised; F1, PSDS and the rest are maximised."""
    return bool(re.search(r"(_er|loss)$", name))


# --------------------------------------------------------------------------- learning curves


def plot_learning_curves(
    history: pd.DataFrame,
    path: str | Path,
    monitor: str | None = None,
    best_epoch: int | None = None,
    dpi: int = DPI,
) -> Figure:
    """Losses, validation F1/PSDS and error rates (and p_tf / lr when logged) per epoch.

    `history` is history.csv: one row per epoch with `epoch` and whichever of `train_loss`,
    `validation_loss`, `*/..._f1`, `*/..._er`, `*/psds*`, `p_tf*`, `lr` exist. The `monitor`
    column is drawn thicker; `best_epoch` (inferred from `monitor` when not given: the max, or
    the min for losses and error rates) is marked with a vertical line on every panel.
    """
    _require_columns(history, ["epoch"], "history")
    if history.empty:
        raise PlotError("history: no epochs to plot (the table is empty)")
    history = history.sort_values("epoch")
    epoch = history["epoch"].to_numpy()
    if monitor is not None and monitor not in history.columns:
        raise PlotError(
            f"monitor {monitor!r} is not a history column; it has {list(history.columns)}"
        )
    if best_epoch is None and monitor is not None and history[monitor].notna().any():
        values = history[monitor]
        best = values.idxmin() if _lower_is_better(monitor) else values.idxmax()
        best_epoch = int(history.loc[best, "epoch"])

    # Only overall metrics: per-class columns (`validation/frame_f1/Speech`) would swamp the panel.
    def columns(pattern: str) -> list[str]:
        return [
            c
            for c in history.columns
            if re.search(pattern, c) and c.count("/") <= 1 and history[c].notna().any()
        ]

    loss_cols = columns(r"loss$")
    score_cols = columns(r"(_f1|psds\w*)$")
    error_cols = columns(r"_er$")
    tf_cols = columns(r"^p_tf")
    lr_cols = columns(r"^lr$")
    panels = [
        (cols, kind)
        for cols, kind in [
            (loss_cols, "loss"),
            (score_cols, "score"),
            (error_cols, "error"),
            (tf_cols + lr_cols, "schedule"),
        ]
        if cols
    ]
    if not panels:
        raise PlotError(f"history: nothing to plot besides 'epoch'; it has {list(history.columns)}")

    fig = Figure(figsize=(8.5, 2.6 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    marker = "o" if len(epoch) <= 40 else None
    for ax, (cols, kind) in zip(axes, panels, strict=True):
        lines_ax = ax
        for name in cols:
            if kind == "schedule" and name == "lr":
                continue
            width = 2.6 if name == monitor else 1.4
            label = f"{name} (monitored)" if name == monitor else name
            ax.plot(epoch, history[name], marker=marker, markersize=3, linewidth=width, label=label)
        if kind == "loss":
            ax.set_ylabel("loss (BCE)")
            ax.set_title("Training and validation loss")
        elif kind == "score":
            ax.set_ylabel("score (fraction)")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title("Validation F1 / PSDS (higher is better)")
        elif kind == "error":
            ax.set_ylabel("error rate")
            ax.set_ylim(bottom=0)
            ax.set_title("Validation error rate (lower is better)")
        else:
            ax.set_title("Teacher forcing and learning rate")
            if tf_cols:
                ax.set_ylabel("teacher-forcing probability")
                ax.set_ylim(-0.02, 1.02)
            if lr_cols:
                lines_ax = ax.twinx() if tf_cols else ax
                lines_ax.plot(
                    epoch,
                    history["lr"],
                    color="tab:gray",
                    linestyle=":",
                    marker=marker,
                    markersize=3,
                    label="lr",
                )
                lines_ax.set_ylabel("learning rate")
                if (history["lr"] > 0).all():
                    lines_ax.set_yscale("log")
        if best_epoch is not None:
            ax.axvline(
                best_epoch,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"best epoch ({best_epoch})",
            )
        handles, labels = ax.get_legend_handles_labels()
        if lines_ax is not ax:
            more = lines_ax.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        ax.legend(handles, labels, fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    if len(epoch) <= 20:
        axes[-1].set_xticks(epoch)
    title = "Learning curves"
    if monitor is not None:
        title += f" (monitor: {monitor})"
    fig.suptitle(title)
    save_figure(fig, path, dpi)
    return fig


# --------------------------------------------------------------------------- teacher forcing


def plot_teacher_forcing(batches: pd.DataFrame, path: str | Path, dpi: int = DPI) -> Figure:
    """Teacher-forcing probability per batch with the training loss (raw and smoothed) on a twin
    axis; epochs are shaded alternately and numbered along the top axis.

    `batches` is batches.csv: columns `batch, epoch, p_tf, loss`, one row per training batch.
    """
    _require_columns(batches, ["batch", "epoch", "p_tf", "loss"], "batches")
    if batches.empty:
        raise PlotError("batches: no batches to plot (the table is empty)")
    batches = batches.sort_values("batch")
    x = batches["batch"].to_numpy()
    loss = batches["loss"].to_numpy(dtype=float)
    window = max(1, len(batches) // 50)
    smooth = batches["loss"].rolling(window, min_periods=1, center=True).mean().to_numpy()

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.subplots()
    loss_ax = ax.twinx()
    # Draw the teacher-forcing curve above the loss: ax's artists go on top of loss_ax's.
    ax.set_zorder(loss_ax.get_zorder() + 1)
    ax.patch.set_visible(False)

    epochs = batches.groupby("epoch", sort=True)["batch"].agg(["min", "max"])
    for i, (_, row) in enumerate(epochs.iterrows()):
        if i % 2 == 0:
            loss_ax.axvspan(row["min"] - 0.5, row["max"] + 0.5, color="0.92", zorder=0, linewidth=0)

    loss_ax.plot(x, loss, color="tab:orange", alpha=0.3, linewidth=0.8, label="loss (per batch)")
    loss_ax.plot(
        x,
        smooth,
        color="tab:orange",
        linewidth=1.8,
        label=f"loss (moving mean of {window})" if window > 1 else "loss",
    )
    loss_ax.set_ylabel("training loss (BCE)", color="tab:orange")
    loss_ax.tick_params(axis="y", colors="tab:orange")

    ax.plot(
        x,
        batches["p_tf"],
        color="tab:blue",
        linewidth=2,
        drawstyle="steps-post",
        label="p_tf (teacher forcing)",
    )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(x.min() - 0.5, x.max() + 0.5)
    ax.set_xlabel("training batch")
    ax.set_ylabel("teacher-forcing probability p_tf", color="tab:blue")
    ax.tick_params(axis="y", colors="tab:blue")
    ax.grid(alpha=0.3)

    top = ax.secondary_xaxis("top")
    centres = ((epochs["min"] + epochs["max"]) / 2).to_numpy()
    step = max(1, math.ceil(len(epochs) / 20))
    top.set_xticks(centres[::step], labels=[str(e) for e in epochs.index[::step]])
    top.set_xlabel("epoch (shaded alternately)")

    handles = ax.get_legend_handles_labels()[0] + loss_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.9)
    ax.set_title("Scheduled sampling: teacher-forcing probability and training loss")
    save_figure(fig, path, dpi)
    return fig


# --------------------------------------------------------------------------- event roll


def _thresholds(threshold: Any, classes: Sequence[str]) -> np.ndarray:
    """One threshold per class from a scalar, a sequence in class order or a dict label -> value."""
    if isinstance(threshold, Mapping):
        missing = [c for c in classes if c not in threshold]
        if missing:
            raise PlotError(f"threshold: no value for class(es) {missing}")
        return np.array([float(threshold[c]) for c in classes])
    values = np.atleast_1d(np.asarray(threshold, dtype=float))
    if values.size == 1:
        return np.full(len(classes), float(values[0]))
    if values.shape != (len(classes),):
        raise PlotError(f"threshold: got {values.size} values for {len(classes)} classes")
    return values


def _events_of(table: pd.DataFrame | None, classes: Sequence[str], what: str) -> pd.DataFrame:
    """Validated onset/offset/label rows of a one-file event table (None or empty = no events)."""
    if table is None or len(table) == 0:
        return pd.DataFrame({"onset": [], "offset": [], "event_label": []})
    _require_columns(table, ["onset", "offset", "event_label"], what)
    if "filename" in table.columns and table["filename"].nunique() > 1:
        raise PlotError(
            f"{what}: an event roll shows one file, got "
            f"{table['filename'].nunique()} ({sorted(table['filename'].unique())[:3]}...)"
        )
    unknown = sorted(set(table["event_label"].dropna()) - set(classes))
    if unknown:
        raise PlotError(f"{what}: label(s) {unknown} are not among the classes {list(classes)}")
    return table.dropna(subset=["onset", "offset", "event_label"])


def plot_event_roll(
    features: np.ndarray,
    reference: pd.DataFrame | None,
    probs: np.ndarray,
    estimated: pd.DataFrame | None,
    classes: Sequence[str],
    hop_seconds: float,
    path: str | Path,
    threshold: float | Sequence[float] | Mapping[str, float] = 0.5,
    title: str = "",
    dpi: int = DPI,
    feature_label: str = "log-mel (dB)",
) -> Figure:
    """One file at a glance: log-mel spectrogram on top, then a row per class with the reference
    events (shaded spans), the predicted probability, the threshold and the predicted events (bar).

    features `[T, F]` and probs `[T, C]` share the frame grid of `hop_seconds` (frame i spans
    `[i*hop, (i+1)*hop)`); reference/estimated are event tables of that one file. The reference
    spans carry gid ``"reference"`` and the predicted bars gid ``"estimated"``; class rows are
    labelled with the class name (``ax.get_ylabel()``). The figure grows with the class count.
    """
    features = np.asarray(features)
    probs = np.asarray(probs, dtype=float)
    classes = list(classes)
    if features.ndim != 2:
        raise PlotError(f"features must be [T, F] (log-mel), got shape {features.shape}")
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise PlotError(f"probs must be [T, C] with C = {len(classes)} classes, got {probs.shape}")
    if not hop_seconds > 0:
        raise PlotError(f"hop_seconds must be > 0, got {hop_seconds}")
    thresholds = _thresholds(threshold, classes)
    reference = _events_of(reference, classes, "reference")
    estimated = _events_of(estimated, classes, "estimated")

    num_classes = len(classes)
    duration = max(features.shape[0], probs.shape[0]) * hop_seconds
    if len(reference):
        duration = max(duration, float(reference["offset"].max()))
    row_height = 0.55 if num_classes <= 10 else 0.45
    fig = Figure(figsize=(12, 2.8 + row_height * num_classes + 0.9), layout="constrained")
    grid = fig.add_gridspec(
        num_classes + 1, 1, height_ratios=[2.8 / row_height] + [1] * num_classes
    )
    spec_ax = fig.add_subplot(grid[0])
    image = spec_ax.imshow(
        features.T,
        origin="lower",
        aspect="auto",
        cmap="magma",
        interpolation="nearest",
        extent=(0.0, features.shape[0] * hop_seconds, 0, features.shape[1]),
    )
    spec_ax.set_ylabel("mel band")
    spec_ax.set_title(title or "Event roll")
    fig.colorbar(image, ax=spec_ax, label=feature_label, pad=0.01, aspect=12)

    edges = np.arange(probs.shape[0] + 1) * hop_seconds
    fontsize = 9 if num_classes <= 10 else 8
    for k, name in enumerate(classes):
        ax = fig.add_subplot(grid[k + 1], sharex=spec_ax)
        for onset, offset in reference.loc[
            reference["event_label"] == name, ["onset", "offset"]
        ].to_numpy(float):
            ax.add_patch(
                Rectangle(
                    (onset, 0),
                    offset - onset,
                    1,
                    transform=ax.get_xaxis_transform(),
                    facecolor=_REFERENCE_COLOR,
                    alpha=0.3,
                    linewidth=0,
                    gid=REFERENCE_GID,
                )
            )
        if len(probs):  # repeat the last value so the last frame's step is drawn to its end
            ax.plot(
                edges,
                np.append(probs[:, k], probs[-1, k]),
                drawstyle="steps-post",
                color=_PROB_COLOR,
                linewidth=1,
            )
        ax.axhline(thresholds[k], color="black", linestyle="--", linewidth=0.7)
        for onset, offset in estimated.loc[
            estimated["event_label"] == name, ["onset", "offset"]
        ].to_numpy(float):
            ax.add_patch(
                Rectangle(
                    (onset, -0.32),
                    offset - onset,
                    0.22,
                    facecolor=_ESTIMATED_COLOR,
                    linewidth=0,
                    gid=ESTIMATED_GID,
                )
            )
        ax.set_ylim(-0.38, 1.08)
        ax.set_yticks([0, 1])
        ax.tick_params(axis="y", labelsize=6)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=fontsize)
        ax.grid(axis="x", alpha=0.3)
        if k < num_classes - 1:
            ax.tick_params(axis="x", labelbottom=False)
    spec_ax.tick_params(axis="x", labelbottom=num_classes == 0)
    spec_ax.set_xlim(0, duration)
    fig.axes[-1].set_xlabel("time (s)")
    fig.align_ylabels([a for a in fig.axes if a is not spec_ax and a.get_label() != "<colorbar>"])
    fig.legend(
        handles=[
            Patch(facecolor=_REFERENCE_COLOR, alpha=0.3, label="reference event"),
            _line(_PROB_COLOR, "-", "predicted probability"),
            _line("black", "--", "threshold"),
            Patch(facecolor=_ESTIMATED_COLOR, label="predicted event"),
        ],
        loc="outside lower center",
        ncol=4,
        fontsize=9,
        frameon=False,
    )
    save_figure(fig, path, dpi)
    return fig


def _line(color: str, style: str, label: str) -> Any:
    """A legend handle for a line."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, linestyle=style, label=label)


# --------------------------------------------------------------------------- sweeps


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
    _require_columns(table, params + by, "metric table")
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
