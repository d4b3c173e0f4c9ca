"""The event roll of one file: spectrogram, reference spans, probabilities, predicted events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from sed.errors import PlotError
from sed.plots import DPI, require_columns, save_figure

__all__ = ["ESTIMATED_GID", "REFERENCE_GID", "plot_event_roll"]

REFERENCE_GID = "reference"  # gid of the reference-event spans in an event roll (for tests/tools)
ESTIMATED_GID = "estimated"  # gid of the predicted-event bars in an event roll
_REFERENCE_COLOR = "tab:green"
_ESTIMATED_COLOR = "tab:red"
_PROB_COLOR = "tab:blue"


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
    require_columns(table, ["onset", "offset", "event_label"], what)
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
