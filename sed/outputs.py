"""A run's results on disk: metrics.json, predictions/{split}.tsv, class-wise CSV and plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from sed.annotations import write_tsv
from sed.data.folder import TEST, VALIDATION
from sed.data.loading import SplitFeatures
from sed.evaluation import classwise_table, evaluate_all
from sed.event_roll import plot_event_roll
from sed.frame_metrics import frame_metrics
from sed.inference import predict_files
from sed.io import write_csv, write_json
from sed.postprocess import PostProcessing, binarize, probs_to_events
from sed.postprocess_search import Tuning, tune_postprocessing
from sed.stats import per_file_counts

__all__ = [
    "Evaluation",
    "HEADLINE",
    "SUMMARY",
    "evaluate_model",
    "evaluate_split",
    "example_files",
    "split_durations",
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
    durations = {f: d for f, d in split_durations(data, hop_seconds).items() if f in probs}
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
    """Evaluate one split and write predictions/{split}.tsv, classwise/{split}.csv,
    per_file/{split}.csv (sed_eval's counts per file, from which sed.report bootstraps confidence
    intervals) and event-roll plots of a few files; returns the metrics prefixed with `split/`."""
    run_dir = Path(run_dir)
    metrics, estimated = evaluate_split(data, probs, classes, hop_seconds, postprocessing)
    write_tsv(estimated, run_dir / "predictions" / f"{split}.tsv", filenames=list(probs))
    table = classwise_table(metrics, classes)
    write_csv(table, run_dir / "classwise" / f"{split}.csv", float_format="%.6f")
    durations = {f: d for f, d in split_durations(data, hop_seconds).items() if f in probs}
    counts = per_file_counts(data.events, estimated, classes, durations)
    write_csv(counts, run_dir / "per_file" / f"{split}.csv")
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


class Evaluation(NamedTuple):
    """What `evaluate_model` returns: `SPLIT/NAME` metrics, probabilities {split: {file: [T, C]}}
    and the post-processing the result files were made with (tuned on validation, or as given)."""

    metrics: dict[str, float]
    probs: dict[str, dict[str, np.ndarray]]
    postprocessing: PostProcessing


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
    tuning: Tuning | None = None,
    fixed: PostProcessing | None = None,
) -> Evaluation:
    """The one evaluation path of sed.train and sed.evaluate: free-running probabilities of every
    split (`predict_files`), their loss, metrics and result files (`write_split_results`).

    With `tuning` enabled, post-processing is searched on the validation split's probabilities
    alone (`tune_postprocessing`, starting from `postprocessing`); every split is then scored
    with the chosen settings (`SPLIT/NAME`) and, for comparison, with the fixed ones
    (`SPLIT/fixed_NAME`, headline metrics; also reported for `fixed` when given, as
    sed.evaluate does for a tuned run). Writes postprocess.json (the settings used) and,
    when tuned, tuning.json and tuning.csv (every trial) to `out_dir`.
    """
    out_dir = Path(out_dir)
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
    chosen = postprocessing
    tuned = tuning is not None and tuning.enabled
    if tuned:
        if VALIDATION not in splits:
            raise ValueError("tuning post-processing needs the validation split")
        val = splits[VALIDATION]
        result = tune_postprocessing(
            probs[VALIDATION],
            val.events,
            classes,
            hop_seconds,
            split_durations(val, hop_seconds),
            start=postprocessing,
            space=tuning.space,
            criterion=tuning.criterion,
            per_class=tuning.per_class,
            class_thresholds=tuning.class_thresholds,
            max_segment_f1_drop=tuning.max_segment_f1_drop,
            progress=progress,
        )
        chosen, fixed = result.postprocessing, postprocessing
        write_csv(result.trials, out_dir / "tuning.csv", index=False, float_format="%.6f")
        write_json(
            {
                "criterion": result.criterion,
                "per_class": tuning.per_class,
                "class_thresholds": tuning.class_thresholds,
                "max_segment_f1_drop": tuning.max_segment_f1_drop,
                "validation_score": result.score,
                "validation_score_fixed": result.start_score,
                "fixed": postprocessing.to_dict(),
                "chosen": chosen.to_dict(),
            },
            out_dir / "tuning.json",
        )
    for split, data in splits.items():
        metrics.update(
            write_split_results(out_dir, split, data, probs[split], classes, hop_seconds, chosen)
        )
        if fixed is not None:
            other, _ = evaluate_split(
                data, probs[split], classes, hop_seconds, fixed, psds=False, classwise=False
            )
            metrics.update({f"{split}/fixed_{k}": float(other[k]) for k in HEADLINE})
    write_json(chosen.to_dict(), out_dir / "postprocess.json")
    return Evaluation(metrics, probs, chosen)


def split_durations(data: SplitFeatures, hop_seconds: float) -> dict[str, float]:
    """Each file's duration in seconds (known, else its frame count times the hop)."""
    return {
        f: data.durations.get(f, len(t) * hop_seconds)
        for f, t in zip(data.filenames, data.targets, strict=True)
    }


def summary_lines(metrics: Mapping[str, float], splits: tuple[str, ...] | list[str]) -> list[str]:
    """`SPLIT/NAME value` lines of the SUMMARY metrics present in `metrics`, split by split."""
    keys = [f"{split}/{name}" for split in splits for name in SUMMARY]
    return [f"{key:24s} {metrics[key]:.4f}" for key in keys if key in metrics]


def example_files(data: SplitFeatures, n: int) -> list[str]:
    """A few files worth looking at: the ones with the most reference events, ties by name."""
    counts = data.events.groupby("filename").size()
    ranked = sorted(data.filenames, key=lambda f: (-int(counts.get(f, 0)), f))
    return ranked[:n]
