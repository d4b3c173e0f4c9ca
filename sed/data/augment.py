"""Training-time augmentation that keeps frame labels exact.

Three transforms of a training window, all on normalised log-mel features [T, n_mels] with
their frame targets [T, C]:

- time shift: features and targets rolled together by a random number of frames;
- mixing: another random training window is added in the power domain (the z-scored log-mel is
  un-normalised, the two energies summed, and the sum normalised again), at a random gain, and
  the targets become the union of both windows' labels;
- frequency masks (SpecAugment): random bands set to their mean (0 after normalisation).

Time masking is left out on purpose: it would hide frames whose labels still say "active".
Randomness is derived from (seed, epoch, item), so an epoch's augmentation is the same however
the run was interrupted and resumed, and the same for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["Augment", "AugmentedDataset"]


@dataclass
class Augment:
    """Augmentation settings (configs/augment/*.yaml); each transform is off at 0."""

    shift: bool = False  # roll each window by a random number of frames
    mix_prob: float = 0.0  # probability of mixing in a second window
    mix_gain_db: float = 6.0  # the second window's gain is drawn from [-mix_gain_db, 0] dB
    freq_masks: int = 0  # number of frequency masks per window
    freq_mask_bands: int = 4  # each mask covers up to this many mel bands

    def __post_init__(self) -> None:
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ValueError(f"augment.mix_prob must be in [0, 1], got {self.mix_prob!r}")
        for key in ("mix_gain_db", "freq_masks", "freq_mask_bands"):
            if getattr(self, key) < 0:
                raise ValueError(f"augment.{key} must be >= 0, got {getattr(self, key)!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.shift or self.mix_prob > 0 or self.freq_masks > 0)


class AugmentedDataset(Dataset):
    """A training dataset (items with features, targets, mask) with `Augment` applied.

    `mean` / `std` ([n_mels]) are the normaliser's statistics in dB, needed to mix in the power
    domain. Call `set_epoch` before each epoch (the Trainer does) to draw new augmentations.
    """

    def __init__(
        self, base: Dataset, augment: Augment, seed: int, mean: np.ndarray, std: np.ndarray
    ) -> None:
        self.base, self.augment, self.seed, self.epoch = base, augment, int(seed), 0
        self.mean = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        self.std = torch.as_tensor(np.asarray(std, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, item: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, item])
        out = dict(self.base[item])
        x, y, valid = out["features"].clone(), out["targets"].clone(), out["mask"]
        a = self.augment
        if a.mix_prob > 0 and rng.random() < a.mix_prob and len(self.base) > 1:
            other = self.base[int((item + rng.integers(1, len(self.base))) % len(self.base))]
            n = int(min(valid.sum(), other["mask"].sum()))
            gain_db = -a.mix_gain_db * rng.random()
            x[:n] = self._mix(x[:n], other["features"][:n], gain_db)
            y[:n] = torch.maximum(y[:n], other["targets"][:n])
        n = int(valid.sum())
        if a.shift and n > 1:
            k = int(rng.integers(0, n))
            x[:n], y[:n] = torch.roll(x[:n], k, 0), torch.roll(y[:n], k, 0)
        bands = x.shape[1]
        for _ in range(a.freq_masks):
            width = int(rng.integers(0, min(a.freq_mask_bands, bands) + 1))
            start = int(rng.integers(0, bands - width + 1))
            x[:n, start : start + width] = 0.0
        out["features"], out["targets"] = x, y
        return out

    def _mix(self, x: torch.Tensor, other: torch.Tensor, gain_db: float) -> torch.Tensor:
        """Sum of two normalised log-mel windows' powers (10 log10 domain), normalised again."""
        db = x * self.std + self.mean
        db_other = other * self.std + self.mean + gain_db
        mixed = 10.0 * torch.logaddexp(db * _LN10_10, db_other * _LN10_10) / np.log(10.0)
        return (mixed - self.mean) / self.std


_LN10_10 = float(np.log(10.0) / 10.0)  # 10**(db / 10) = exp(db * ln(10) / 10)
