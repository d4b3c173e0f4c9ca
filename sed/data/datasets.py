"""Torch datasets over per-file features and frame targets, and the collate that pads batches.

Training uses fixed-length sequences (SequenceDataset), evaluation whole files (FileDataset).
Padding is always marked in a boolean mask so it never counts in losses or metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sed.errors import DatasetError

__all__ = ["DatasetError", "FileDataset", "SequenceDataset", "collate", "window_starts"]


def _tensors(
    features: Sequence[np.ndarray],
    targets: Sequence[np.ndarray] | None,
    filenames: Sequence[str],
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
    """Check shapes and wrap each file's arrays as float32 tensors (no copy when already float32)."""
    filenames = [str(f) for f in filenames]
    if len(features) != len(filenames) or (targets is not None and len(targets) != len(filenames)):
        n_targets = "no" if targets is None else len(targets)
        raise DatasetError(
            f"got {len(features)} feature arrays, {n_targets} target arrays and {len(filenames)} filenames"
        )
    feats, targs = [], []
    n_bands = n_classes = None
    for i, name in enumerate(filenames):
        x = torch.as_tensor(np.asarray(features[i]), dtype=torch.float32)
        y = (
            torch.zeros(x.shape[0] if x.ndim else 0, 0)
            if targets is None
            else torch.as_tensor(np.asarray(targets[i]), dtype=torch.float32)
        )
        if x.ndim != 2 or y.ndim != 2:
            raise DatasetError(
                f"{name}: features {tuple(x.shape)} and targets {tuple(y.shape)} must both be 2-D [T, ...]"
            )
        if x.shape[0] != y.shape[0]:
            raise DatasetError(
                f"{name}: {x.shape[0]} feature frames but {y.shape[0]} target frames"
            )
        if x.shape[0] == 0:
            raise DatasetError(f"{name}: no frames")
        n_bands = x.shape[1] if n_bands is None else n_bands
        n_classes = y.shape[1] if n_classes is None else n_classes
        if x.shape[1] != n_bands or y.shape[1] != n_classes:
            raise DatasetError(
                f"{name}: features {tuple(x.shape)} / targets {tuple(y.shape)} do not match the first "
                f"file's {n_bands} bands / {n_classes} classes"
            )
        feats.append(x)
        targs.append(y)
    return feats, targs, filenames


def _positive(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise DatasetError(f"{key} must be a positive integer, got {value!r}")
    return int(value)


def window_starts(length: int, seq_len: int, hop: int) -> list[int]:
    """First frames of the training windows of a file: every hop frames, the last one ending at
    the file's end (overlapping its neighbour); one window at 0 when length <= seq_len."""
    last = max(length - seq_len, 0)
    starts = list(range(0, last, hop))
    return [*starts, last]


class SequenceDataset(Dataset):
    """Fixed-length training sequences: each file cut into windows of seq_len frames.

    Windows start every hop frames (default seq_len: consecutive) and the last one ends at the
    file's end, overlapping its neighbour rather than being padded, so only files shorter than
    the window hold padding. The window is min(seq_len, longest file) frames: a set of equally
    long short clips has none either. Padding is zeros with mask False; it never counts in the
    loss, but BatchNorm in training mode takes its statistics over every frame of the batch, so
    the remaining padded frames (`padding_share`, 0 whenever every file has at least seq_len
    frames or all files have one length) do enter them. The windows depend on the lengths only.
    """

    def __init__(
        self,
        features: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        filenames: Sequence[str],
        seq_len: int = 1024,
        hop: int | None = None,
    ) -> None:
        seq_len = _positive("seq_len", seq_len)
        self.hop = seq_len if hop is None else _positive("hop", hop)
        self.features, self.targets, self.filenames = _tensors(features, targets, filenames)
        if not self.features:
            raise DatasetError("SequenceDataset got no files to cut into training windows")
        self.seq_len = min(seq_len, max(x.shape[0] for x in self.features))
        # (file index, first frame, valid frames) of every window, computed once.
        self.index: list[tuple[int, int, int]] = [
            (i, start, min(self.seq_len, x.shape[0]))
            for i, x in enumerate(self.features)
            for start in window_starts(x.shape[0], self.seq_len, self.hop)
        ]

    @property
    def padding_share(self) -> float:
        """Fraction of all window frames that are padding (mask False)."""
        valid = sum(v for _, _, v in self.index)
        return 1.0 - valid / (len(self.index) * self.seq_len)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, Any]:
        i, start, valid = self.index[item]
        x = self.features[i][start : start + valid]
        y = self.targets[i][start : start + valid]
        mask = torch.ones(self.seq_len, dtype=torch.bool)
        if valid < self.seq_len:
            x = torch.cat([x, x.new_zeros(self.seq_len - valid, x.shape[1])])
            y = torch.cat([y, y.new_zeros(self.seq_len - valid, y.shape[1])])
            mask[valid:] = False
        return {
            "features": x,
            "targets": y,
            "mask": mask,
            "filename": self.filenames[i],
            "start": start,
        }


class FileDataset(Dataset):
    """Whole files, one item each (evaluation and prediction); targets=None gives [T, 0] targets."""

    def __init__(
        self,
        features: Sequence[np.ndarray],
        targets: Sequence[np.ndarray] | None,
        filenames: Sequence[str],
    ) -> None:
        self.features, self.targets, self.filenames = _tensors(features, targets, filenames)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, item: int) -> dict[str, Any]:
        x = self.features[item]
        mask = torch.ones(x.shape[0], dtype=torch.bool)
        return {
            "features": x,
            "targets": self.targets[item],
            "mask": mask,
            "filename": self.filenames[item],
            "start": 0,
        }


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into features [B,T,F], targets [B,T,C], mask [B,T] (False on padding), filenames.

    Items are padded with zeros to the longest in the batch.
    """
    if not batch:
        raise DatasetError("collate got an empty batch")
    lengths = [item["features"].shape[0] for item in batch]
    filenames = [item["filename"] for item in batch]
    if all(n == lengths[0] for n in lengths):
        return {
            "features": torch.stack([item["features"] for item in batch]),
            "targets": torch.stack([item["targets"] for item in batch]),
            "mask": torch.stack([item["mask"] for item in batch]),
            "filenames": filenames,
        }
    longest, first = max(lengths), batch[0]
    features = first["features"].new_zeros(len(batch), longest, first["features"].shape[1])
    targets = first["targets"].new_zeros(len(batch), longest, first["targets"].shape[1])
    mask = torch.zeros(len(batch), longest, dtype=torch.bool)
    for b, (item, n) in enumerate(zip(batch, lengths, strict=True)):
        features[b, :n] = item["features"]
        targets[b, :n] = item["targets"]
        mask[b, :n] = item["mask"]
    return {"features": features, "targets": targets, "mask": mask, "filenames": filenames}
