"""A run's results on disk: metrics.json, predictions/{split}.tsv, class-wise CSV and plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from sed.annotations import write_tsv
from sed.data.folder import TEST
from sed.data.loading import SplitFeatures
from sed.evaluation import classwise_table, evaluate_all, frame_metrics
from sed.inference import predict_files
from sed.io import write_csv, write_json
from sed.plots import plot_event_roll
from sed.postprocess import PostProcessing, binarize, probs_to_events

__all__ = [
    "HEADLINE",
    "SUMMARY",
    "evaluate_model",
    "evaluate_split",
    "example_files",
    "summary_lines",
    "write_json",
    "write_split_results",
]

# The headline metrics: what history.csv gets per epoch and the threshold sweep reports.
HEADLINE = ("event_f1", "event_er", "segment_f1", "segment_er", "frame_f1", "frame_er")
# What the entry points print per split after an evaluation.
SUMMARY = (*HEADLINE, "psds1", "psds2")


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
    """All metrics of one split (unprefixed) and the estimated event table (offsets clipped to
    each file's duration)."""
    targets = dict(zip(data.filenames, data.targets, strict=True))
    durations = {f: data.durations.get(f, len(targets[f]) * hop_seconds) for f in probs}
    estimated = probs_to_events(probs, hop_seconds, classes, postprocessing, durations)
    if not events:
        names = list(probs)
        metrics = frame_metrics(
            [targets[f] for f in names],
            [binarize(probs[f], postprocessing.threshold, classes) for f in names],
        )
        return metrics, estimated
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
    write_csv(table, run_dir / "classwise" / f"{split}.csv", float_format="%.6f")
    if split == TEST:
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


def evaluate_model(
    model: nn.Module,
    splits: Mapping[str, SplitFeatures],
    out_dir: str | Path,
    classes: list[str],
    hop_seconds: float,
    postprocessing: PostProcessing,
    device: torch.device,
    *,
    batch_size: int,
    amp: bool,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """The one evaluation path of sed.train and sed.evaluate: free-running probabilities of every
    split (`predict_files`), their loss, metrics and result files (`write_split_results`).

    Returns the metrics as `SPLIT/NAME` and the probabilities {split: {filename: [T, C]}}.
    """
    metrics: dict[str, float] = {}
    probs: dict[str, dict[str, np.ndarray]] = {}
    for split, data in splits.items():
        probs[split], metrics[f"{split}/loss"] = predict_files(
            model,
            data.features,
            data.filenames,
            device,
            batch_size=batch_size,
            amp=amp,
            targets=data.targets,
            progress=progress,
            desc=split,
        )
        metrics.update(
            write_split_results(
                out_dir, split, data, probs[split], classes, hop_seconds, postprocessing
            )
        )
    return metrics, probs


def summary_lines(metrics: Mapping[str, float], splits: tuple[str, ...] | list[str]) -> list[str]:
    """`SPLIT/NAME value` lines of the SUMMARY metrics present in `metrics`, split by split."""
    keys = [f"{split}/{name}" for split in splits for name in SUMMARY]
    return [f"{key:24s} {metrics[key]:.4f}" for key in keys if key in metrics]


def example_files(data: SplitFeatures, n: int) -> list[str]:
    """A few files worth looking at: the ones with the most reference events, ties by name."""
    counts = data.events.groupby("filename").size()
    ranked = sorted(data.filenames, key=lambda f: (-int(counts.get(f, 0)), f))
    return ranked[:n]
