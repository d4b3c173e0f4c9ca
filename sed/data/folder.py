"""Load a dataset in the DESIGN folder format (DESED convention), for any user's own data.

ROOT/audio/{split}/... holds the audio; ROOT/metadata/{split}.tsv the events (filename relative
to the split's audio folder); ROOT/metadata/{split}_durations.tsv optionally lists durations and
files without events.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import pandas as pd

from sed.annotations import AnnotationError, read_durations, read_tsv
from sed.audio import audio_duration

__all__ = [
    "EVAL_SPLITS",
    "SPLITS",
    "TEST",
    "TRAIN",
    "VALIDATION",
    "SplitData",
    "infer_classes",
    "load_split",
]

# The split names, defined here once.
SPLITS = (TRAIN, VALIDATION, TEST) = ("train", "validation", "test")
EVAL_SPLITS = (VALIDATION, TEST)  # what a run is evaluated on once trained


@dataclass
class SplitData:
    """One split: its files (events or not), their event table and durations in seconds."""

    root: Path
    split: str
    audio_dir: Path
    filenames: list[str]
    events: pd.DataFrame
    durations: dict[str, float]


def load_split(
    root: str | PathLike,
    split: str,
    classes: Sequence[str] | None = None,
    check_audio: bool = True,
) -> SplitData:
    """Load one split, validating every annotation row (and that its audio exists, if check_audio).

    Durations come from {split}_durations.tsv when present (checked against the audio, if
    check_audio), else from each audio file's header; events ending after their audio are
    clipped or refused (sed.annotations.read_tsv).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    root = Path(root)
    audio_dir = root / "audio" / split
    checked_dir = audio_dir if check_audio else None
    durations_tsv = root / "metadata" / f"{split}_durations.tsv"
    listed = read_durations(durations_tsv, checked_dir) if durations_tsv.is_file() else {}
    durations = dict(listed)

    def duration(name: str) -> float:
        if name not in durations:
            durations[name] = audio_duration(audio_dir / name)
        return durations[name]

    events, filenames = read_tsv(
        _metadata(root, split),
        classes,
        audio_dir=checked_dir,
        return_filenames=True,
        duration=duration,
    )
    known = set(filenames)
    filenames += [name for name in listed if name not in known]
    return SplitData(
        root, split, audio_dir, filenames, events, {name: duration(name) for name in filenames}
    )


def infer_classes(root: str | PathLike) -> list[str]:
    """The sorted event labels of the train split (the default class list)."""
    tsv = _metadata(Path(root), TRAIN)
    labels = sorted(set(read_tsv(tsv)["event_label"]))
    if not labels:
        raise AnnotationError(
            f"{tsv} has no events, so the classes cannot be inferred from the train split; "
            "give the class list explicitly"
        )
    return labels


def _metadata(root: Path, split: str) -> Path:
    """ROOT/metadata/{split}.tsv, or an error naming the path (and the root, if that is missing)."""
    tsv = root / "metadata" / f"{split}.tsv"
    if not tsv.is_file():
        where = "" if root.is_dir() else f" (the dataset root {root} does not exist)"
        raise AnnotationError(f"annotation file not found: {tsv}{where}")
    return tsv
