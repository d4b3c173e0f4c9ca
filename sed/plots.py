"""Figures of a run's training (learning curves, teacher forcing), and what every figure shares.

Every plotting function (here, sed.event_roll and sed.sweep_plots) takes plain data (DataFrames,
arrays), writes one labelled PNG atomically (``save_figure``, through ``sed.io.atomic_write``)
and returns the matplotlib ``Figure`` so that notebooks can show it and tests can inspect it.
Figures are built with ``matplotlib.figure.Figure`` directly, never through pyplot: nothing is
registered with a GUI backend, nothing needs closing and nothing leaks when thousands of plots
are made in a sweep. The event roll and sweep names stay importable from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from sed.errors import PlotError
from sed.io import atomic_write

__all__ = [
    "PlotError",
    "plot_event_roll",  # noqa: F822 - resolved by __getattr__ (below)
    "plot_learning_curves",
    "plot_metric_vs_params",  # noqa: F822 - resolved by __getattr__ (below)
    "plot_teacher_forcing",
    "save_figure",
]

DPI = 120

# Names that moved to the modules of their own figure, importable from here as before (resolved
# on first use: those modules import save_figure from here).
_MOVED = {
    "ESTIMATED_GID": "sed.event_roll",
    "REFERENCE_GID": "sed.event_roll",
    "plot_event_roll": "sed.event_roll",
    "plot_metric_vs_params": "sed.sweep_plots",
}


def __getattr__(name: str) -> Any:
    """`sed.plots.plot_event_roll` etc.: the name from the module it moved to."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write `fig` as PNG to `path` atomically (sed.io), creating folders."""
    return atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
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
    require_columns(history, ["epoch"], "history")
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
    require_columns(batches, ["batch", "epoch", "p_tf", "loss"], "batches")
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
