"""A run's results on disk: metrics.json, predictions/{split}.tsv, class-wise CSV and plots."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sed.annotations import write_tsv
from sed.data.loading import SplitFeatures
from sed.evaluation import classwise_table, evaluate_all, frame_metrics
from sed.plots import plot_event_roll
from sed.postprocess import PostProcessing, binarize, probs_to_events

# The headline metrics: what history.csv gets per epoch and what the entry points print.
HEADLINE = ("event_f1", "event_er", "segment_f1", "segment_er", "frame_f1", "frame_er")


def write_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Atomic JSON write; NaN/inf become null so every reader can parse it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(clean, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def evaluate_split(
    data: SplitFeatures,
    probs: Mapping[str, np.ndarray],
    classes: list[str],
    hop_seconds: float,
    postprocessing: PostProcessing,
    psds: bool = True,
    classwise: bool = True,
    events: bool = True,
) -> tuple[dict[str, float], pd.DataFrame]:
    """All metrics of one split (unprefixed) and the estimated event table."""
    targets = dict(zip(data.filenames, data.targets, strict=True))
    estimated = probs_to_events(probs, hop_seconds, classes, postprocessing)
    if not events:
        names = list(probs)
        metrics = frame_metrics(
            [targets[f] for f in names],
            [binarize(probs[f], postprocessing.threshold, classes) for f in names],
        )
        return metrics, estimated
    durations = {f: data.durations.get(f, len(targets[f]) * hop_seconds) for f in probs}
    metrics = evaluate_all(
        data.events,
        probs,
        hop_seconds,
        classes,
        durations,
        postprocessing,
        estimated=estimated,
        targets=targets,
        psds=psds,
        classwise=classwise,
    )
    return metrics, estimated


def write_split_results(
    run_dir: str | Path,
    split: str,
    data: SplitFeatures,
    probs: Mapping[str, np.ndarray],
    classes: list[str],
    hop_seconds: float,
    postprocessing: PostProcessing,
    n_examples: int = 3,
) -> dict[str, float]:
    """Evaluate one split and write predictions/{split}.tsv, classwise/{split}.csv and event-roll
    plots of a few files; returns the metrics prefixed with `split/`."""
    run_dir = Path(run_dir)
    metrics, estimated = evaluate_split(data, probs, classes, hop_seconds, postprocessing)
    write_tsv(estimated, run_dir / "predictions" / f"{split}.tsv", filenames=list(probs))
    table = classwise_table(metrics, classes)
    (run_dir / "classwise").mkdir(parents=True, exist_ok=True)
    table.to_csv(run_dir / "classwise" / f"{split}.csv", float_format="%.6f")
    if split == "test":
        features = dict(zip(data.filenames, data.features, strict=True))
        for name in example_files(data, n_examples):
            plot_event_roll(
                features[name],
                data.events[data.events.filename == name],
                probs[name],
                estimated[estimated.filename == name],
                classes,
                hop_seconds,
                run_dir / "plots" / f"events_{split}_{Path(name).stem}.png",
                threshold=postprocessing.threshold,
                title=f"{split}: {name}",
                feature_label="normalised log-mel (z)",
            )
    scalars = {k: v for k, v in metrics.items() if k.count("/") == 0}
    return {f"{split}/{k}": float(v) for k, v in scalars.items()}


def example_files(data: SplitFeatures, n: int) -> list[str]:
    """A few files worth looking at: the ones with the most reference events, ties by name."""
    counts = data.events.groupby("filename").size()
    ranked = sorted(data.filenames, key=lambda f: (-int(counts.get(f, 0)), f))
    return ranked[:n]
