"""A dataset folder -> cached log-mel features and frame targets for every split, normalised."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sed.annotations import AnnotationError, events_to_frames
from sed.data.folder import SPLITS, SplitData, infer_classes, load_split
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


def load_annotations(root: str | Path, split: str, classes: list[str]) -> SplitData:
    """One split's files and events (sed.data.folder.load_split); a split without files is an
    error naming its annotation files."""
    data = load_split(root, split, classes)
    if not data.filenames:
        metadata = Path(root) / "metadata"
        tsv, durations = metadata / f"{split}.tsv", metadata / f"{split}_durations.tsv"
        listed = f"{tsv} and {durations} list" if durations.is_file() else f"{tsv} lists"
        raise AnnotationError(f"{listed} no files: the {split} split is empty")
    return data


def split_features(
    data: SplitData, classes: list[str], cache: FeatureCache, hop_seconds: float
) -> SplitFeatures:
    """Extract (or reuse cached) features of one split's files and build their frame targets."""
    features = cache.extract([data.audio_dir / name for name in data.filenames], desc=data.split)
    by_file = dict(tuple(data.events.groupby("filename", sort=False)))
    empty = data.events.iloc[:0]
    targets = [
        events_to_frames(by_file.get(name, empty), len(feat), hop_seconds, classes)
        for name, feat in zip(data.filenames, features, strict=True)
    ]
    return SplitFeatures(
        data.split,
        data.audio_dir,
        list(data.filenames),
        features,
        targets,
        data.events,
        data.durations,
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
    # Every split's annotations are checked before any feature is computed.
    tables = {s: load_annotations(root, s, classes) for s in splits}
    cache = FeatureCache(cache_dir, logmel, device=device)
    data = {s: split_features(t, classes, cache, logmel.hop_seconds) for s, t in tables.items()}
    if normalizer is None:
        normalizer = Normalizer().fit(data[splits[0]].features)
    for split in data.values():
        split.features = [normalizer(f).astype(np.float32) for f in split.features]
    return classes, data, normalizer
