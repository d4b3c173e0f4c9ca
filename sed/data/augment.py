"""Training-time augmentation that keeps frame labels exact.

Transforms of a training window, all on normalised log-mel features [T, n_mels] with their
frame targets [T, C]:

- time shift: features and targets rolled together by a random number of frames;
- mixing: another random training window is added in the power domain (the z-scored log-mel is
  un-normalised, the two energies summed, and the sum normalised again), at a random gain, and
  the targets become the union of both windows' labels;
- gain: the whole window louder or quieter by a random number of dB (a recording's level);
- frequency shift: the mel bands moved up or down by a few bands, a cheap stand-in for a
  source of another pitch or size (the edge band is repeated into the vacated bands);
- filter: a random smooth gain over frequency, piecewise linear in dB across a few bands
  (FilterAugment, Nam et al., ICASSP 2022): another microphone, room or source colours the
  spectrum differently;
- frequency masks (SpecAugment): random bands set to their mean (0 after normalisation);
- time masks (SpecAugment): short runs of frames set to their mean. The labels stay as they are,
  so keep the masks shorter than the events (a few frames): a listener still marks a sound as
  present through a brief dropout, and the 1 s merge of the labels does the same.

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
    gain_db: float = 0.0  # the window's level moves by a gain drawn from [-gain_db, gain_db] dB
    freq_shift_bands: int = 0  # the mel bands move by up to this many bands, up or down
    time_masks: int = 0  # number of time masks per window
    time_mask_frames: int = 5  # each time mask covers up to this many frames
    filter_db: float = 0.0  # a random filter moves each band by up to +- this many dB
    filter_bands: int = 6  # the filter is linear over 3 to this many bands of random widths

    def __post_init__(self) -> None:
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ValueError(f"augment.mix_prob must be in [0, 1], got {self.mix_prob!r}")
        for key in (
            "mix_gain_db", "freq_masks", "freq_mask_bands", "gain_db", "freq_shift_bands",
            "time_masks", "time_mask_frames", "filter_db",
        ):  # fmt: skip
            if getattr(self, key) < 0:
                raise ValueError(f"augment.{key} must be >= 0, got {getattr(self, key)!r}")
        if self.filter_bands < 1:
            raise ValueError(f"augment.filter_bands must be >= 1, got {self.filter_bands!r}")

    @property
    def enabled(self) -> bool:
        return bool(
            self.shift
            or self.mix_prob > 0
            or self.freq_masks > 0
            or self.gain_db > 0
            or self.freq_shift_bands > 0
            or self.time_masks > 0
            or self.filter_db > 0
        )


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
        # The transforms added later draw after the earlier ones, so that switching them on
        # leaves the earlier transforms' draws as they were.
        shift_bands = (
            int(rng.integers(-a.freq_shift_bands, a.freq_shift_bands + 1))
            if a.freq_shift_bands
            else 0
        )
        gain_db = float(rng.uniform(-a.gain_db, a.gain_db)) if a.gain_db > 0 else 0.0
        # The filter draws from a stream of its own, so the other transforms' draws stay the
        # same with it on or off.
        tilt = self._filter(item, bands) if a.filter_db > 0 else None
        if shift_bands or gain_db or tilt is not None:
            db = x[:n] * self.std + self.mean
            if shift_bands > 0:  # up: band b takes band b - k; the lowest bands repeat band 0
                db = torch.cat([db[:, :1].expand(-1, shift_bands), db[:, :-shift_bands]], 1)
            elif shift_bands < 0:
                k = -shift_bands
                db = torch.cat([db[:, k:], db[:, -1:].expand(-1, k)], 1)
            if tilt is not None:
                db = db + tilt
            x[:n] = (db + gain_db - self.mean) / self.std
        for _ in range(a.freq_masks):
            width = int(rng.integers(0, min(a.freq_mask_bands, bands) + 1))
            start = int(rng.integers(0, bands - width + 1))
            x[:n, start : start + width] = 0.0
        for _ in range(a.time_masks if n > 1 else 0):
            width = int(rng.integers(0, min(a.time_mask_frames, n) + 1))
            start = int(rng.integers(0, n - width + 1))
            x[start : start + width] = 0.0
        out["features"], out["targets"] = x, y
        return out

    def _filter(self, item: int, bands: int) -> torch.Tensor:
        """A random filter [bands] in dB: knots at the first and last band and at random
        interior bands (3 to `filter_bands` segments), each a gain in [-filter_db, filter_db],
        linearly interpolated between them (FilterAugment's "linear" type)."""
        a = self.augment
        rng = np.random.default_rng([self.seed, self.epoch, item, _FILTER_STREAM])
        segments = int(rng.integers(min(3, a.filter_bands), a.filter_bands + 1))
        segments = max(1, min(segments, bands - 1))
        inner = np.sort(rng.choice(np.arange(1, bands - 1), segments - 1, replace=False))
        knots = np.concatenate([[0], inner, [bands - 1]]) if bands > 1 else np.zeros(1)
        gains = rng.uniform(-a.filter_db, a.filter_db, len(knots))
        curve = np.interp(np.arange(bands), knots, gains) if bands > 1 else gains[:1]
        return torch.as_tensor(curve, dtype=torch.float32)

    def _mix(self, x: torch.Tensor, other: torch.Tensor, gain_db: float) -> torch.Tensor:
        """Sum of two normalised log-mel windows' powers (10 log10 domain), normalised again."""
        db = x * self.std + self.mean
        db_other = other * self.std + self.mean + gain_db
        mixed = 10.0 * torch.logaddexp(db * _LN10_10, db_other * _LN10_10) / np.log(10.0)
        return (mixed - self.mean) / self.std


_FILTER_STREAM = 1  # the filter's random stream: (seed, epoch, item, 1)
_LN10_10 = float(np.log(10.0) / 10.0)  # 10**(db / 10) = exp(db * ln(10) / 10)
