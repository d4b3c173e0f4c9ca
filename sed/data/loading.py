"""A dataset folder -> cached log-mel features and frame targets for every split, normalised."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sed.annotations import events_to_frames
from sed.data.folder import SPLITS, infer_classes, load_split
from sed.features import FeatureCache, LogMel, Normalizer


@dataclass
class SplitFeatures:
    """One split ready for a model: per-file features [T, F], targets [T, C], and references."""

    split: str
    audio_dir: Path
    filenames: list[str]
    features: list[np.ndarray]
    targets: list[np.ndarray]
    events: pd.DataFrame
    durations: dict[str, float] = field(default_factory=dict)


def split_features(
    root: str | Path,
    split: str,
    classes: list[str],
    cache: FeatureCache,
    hop_seconds: float,
) -> SplitFeatures:
    """Load one split's annotations, extract (or reuse cached) features and build frame targets."""
    data = load_split(root, split, classes)
    features = cache.extract([data.audio_dir / name for name in data.filenames], desc=split)
    by_file = dict(tuple(data.events.groupby("filename", sort=False)))
    empty = data.events.iloc[:0]
    targets = [
        events_to_frames(by_file.get(name, empty), len(feat), hop_seconds, classes)
        for name, feat in zip(data.filenames, features, strict=True)
    ]
    return SplitFeatures(
        split, data.audio_dir, list(data.filenames), features, targets, data.events, data.durations
    )


def load_corpus(
    root: str | Path,
    logmel: LogMel,
    cache_dir: str | Path,
    classes: list[str] | None = None,
    splits: tuple[str, ...] = SPLITS,
    device: str = "cpu",
    normalizer: Normalizer | None = None,
) -> tuple[list[str], dict[str, SplitFeatures], Normalizer]:
    """Features and targets of every split, normalised with the first split's mean/std (or with
    `normalizer`, e.g. a trained model's). Classes are the sorted training labels unless given.
    Returns (classes, splits, normalizer)."""
    classes = list(classes) if classes else infer_classes(root)
    cache = FeatureCache(cache_dir, logmel, device=device)
    data = {s: split_features(root, s, classes, cache, logmel.hop_seconds) for s in splits}
    if normalizer is None:
        normalizer = Normalizer().fit(data[splits[0]].features)
    for split in data.values():
        split.features = [normalizer(f).astype(np.float32) for f in split.features]
    return classes, data, normalizer
