"""Augmentation keeps frame labels exact, mixes in the power domain, and is reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sed.data.augment import Augment, AugmentedDataset
from sed.data.datasets import SequenceDataset

MEAN = np.linspace(-60, -20, 6).astype(np.float32)
STD = np.linspace(5, 10, 6).astype(np.float32)


def _base(n_files: int = 4, frames: int = 30) -> SequenceDataset:
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((frames, 6)).astype(np.float32) for _ in range(n_files)]
    targets = []
    for i in range(n_files):
        t = np.zeros((frames, 3), np.float32)
        t[3 * i : 3 * i + 8, i % 3] = 1  # each file its own active run
        targets.append(t)
    return SequenceDataset(feats, targets, [f"f{i}" for i in range(n_files)], seq_len=frames)


def test_shift_rolls_features_and_targets_together() -> None:
    base = _base()
    data = AugmentedDataset(base, Augment(shift=True), seed=1, mean=MEAN, std=STD)
    item, orig = data[2], base[2]
    k = next(
        k for k in range(30) if torch.equal(torch.roll(orig["features"], k, 0), item["features"])
    )
    assert torch.equal(torch.roll(orig["targets"], k, 0), item["targets"])


def test_mixing_sums_powers_and_takes_the_union_of_labels() -> None:
    base = _base()
    data = AugmentedDataset(
        base, Augment(mix_prob=1.0, mix_gain_db=0.0), seed=3, mean=MEAN, std=STD
    )
    item = data[0]
    partners = [base[j] for j in range(1, 4)]
    db = lambda x: x * torch.as_tensor(STD) + torch.as_tensor(MEAN)  # noqa: E731
    matched = []
    for other in partners:
        power = 10 ** (db(base[0]["features"]) / 10) + 10 ** (db(other["features"]) / 10)
        expected = (10 * torch.log10(power) - torch.as_tensor(MEAN)) / torch.as_tensor(STD)
        if torch.allclose(item["features"], expected, atol=1e-4):
            matched.append(other)
    assert len(matched) == 1  # exactly one partner explains the mixture
    assert torch.equal(item["targets"], torch.maximum(base[0]["targets"], matched[0]["targets"]))


def test_frequency_masks_leave_targets_alone() -> None:
    base = _base()
    data = AugmentedDataset(
        base, Augment(freq_masks=2, freq_mask_bands=3), seed=0, mean=MEAN, std=STD
    )
    for i in range(len(base)):
        item = data[i]
        assert torch.equal(item["targets"], base[i]["targets"])
        changed = (item["features"] != base[i]["features"]).any(0)
        assert changed.sum() <= 6 and (item["features"][:, changed] == 0).all()


def test_same_seed_epoch_item_same_draw_and_epochs_differ() -> None:
    aug = Augment(shift=True, mix_prob=0.5, freq_masks=2)
    a = AugmentedDataset(_base(), aug, seed=7, mean=MEAN, std=STD)
    b = AugmentedDataset(_base(), aug, seed=7, mean=MEAN, std=STD)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert all(torch.equal(a[i]["features"], b[i]["features"]) for i in range(4))
    a.set_epoch(0)
    first = [a[i]["features"] for i in range(4)]
    a.set_epoch(1)
    assert any(not torch.equal(f, a[i]["features"]) for i, f in enumerate(first))


def _db(x: torch.Tensor) -> torch.Tensor:
    return x * torch.as_tensor(STD) + torch.as_tensor(MEAN)


def test_gain_moves_every_band_by_one_number_of_db() -> None:
    base = _base()
    data = AugmentedDataset(base, Augment(gain_db=6.0), seed=2, mean=MEAN, std=STD)
    gains = []
    for i in range(len(base)):
        item = data[i]
        delta = _db(item["features"]) - _db(base[i]["features"])
        assert torch.allclose(delta, delta[0, 0].expand_as(delta), atol=1e-4)
        assert torch.equal(item["targets"], base[i]["targets"])
        gains.append(float(delta[0, 0]))
    assert all(abs(g) <= 6.0 + 1e-4 for g in gains) and len(set(np.round(gains, 3))) > 1


def test_frequency_shift_moves_bands_and_repeats_the_edge() -> None:
    base = _base()
    data = AugmentedDataset(base, Augment(freq_shift_bands=2), seed=5, mean=MEAN, std=STD)
    seen = set()
    for i in range(len(base)):
        got, orig = _db(data[i]["features"]), _db(base[i]["features"])
        k = next(k for k in range(-2, 3) if torch.allclose(
            got[:, max(k, 0) : 6 + min(k, 0)], orig[:, max(-k, 0) : 6 - max(k, 0)], atol=1e-4
        ))  # fmt: skip
        edge = got[:, :k] if k > 0 else got[:, 6 + k :]
        source = orig[:, :1] if k > 0 else orig[:, -1:]
        assert torch.allclose(edge, source.expand_as(edge), atol=1e-4)
        assert torch.equal(data[i]["targets"], base[i]["targets"])
        seen.add(k)
    assert len(seen) > 1


def test_time_masks_are_short_and_leave_targets_alone() -> None:
    base = _base()
    data = AugmentedDataset(
        base, Augment(time_masks=2, time_mask_frames=3), seed=0, mean=MEAN, std=STD
    )
    masked = 0
    for i in range(len(base)):
        item = data[i]
        assert torch.equal(item["targets"], base[i]["targets"])
        changed = (item["features"] != base[i]["features"]).any(1)
        assert changed.sum() <= 6 and (item["features"][changed] == 0).all()
        masked += int(changed.sum())
    assert masked > 0


def _base_wide(n_files: int = 4, frames: int = 20, bands: int = 12) -> SequenceDataset:
    rng = np.random.default_rng(1)
    feats = [rng.standard_normal((frames, bands)).astype(np.float32) for _ in range(n_files)]
    targets = [np.eye(3, dtype=np.float32)[np.arange(frames) % 3] for _ in range(n_files)]
    return SequenceDataset(feats, targets, [f"f{i}" for i in range(n_files)], seq_len=frames)


def test_filter_is_one_piecewise_linear_curve_over_bands_within_its_range() -> None:
    base, bands = _base_wide(), 12
    mean, std = np.linspace(-60, -20, bands), np.linspace(5, 10, bands)
    data = AugmentedDataset(base, Augment(filter_db=6.0), seed=4, mean=mean, std=std)
    scale, offset = torch.as_tensor(std).float(), torch.as_tensor(mean).float()

    def as_db(x: torch.Tensor) -> torch.Tensor:
        return x * scale + offset

    curves = []
    for i in range(len(base)):
        item = data[i]
        delta = as_db(item["features"]) - as_db(base[i]["features"])
        assert torch.allclose(delta, delta[:1].expand_as(delta), atol=1e-4)  # same every frame
        curve = delta[0].numpy()
        assert np.abs(curve).max() <= 6.0 + 1e-4 and np.ptp(curve) > 0.1
        # piecewise linear with at most 6 segments: the second difference is zero but at knots
        bends = np.abs(np.diff(curve, 2)) > 1e-3
        assert 1 <= bends.sum() + 1 <= 6
        assert torch.equal(item["targets"], base[i]["targets"])
        curves.append(curve)
    assert not np.allclose(curves[0], curves[1])


def test_filter_leaves_the_other_transforms_draws_as_they_were() -> None:
    base = _base()
    plain = AugmentedDataset(base, Augment(shift=True, time_masks=2), seed=3, mean=MEAN, std=STD)
    filtered = AugmentedDataset(
        base, Augment(shift=True, time_masks=2, filter_db=3.0), seed=3, mean=MEAN, std=STD
    )
    for i in range(len(base)):
        a, b = plain[i], filtered[i]
        assert torch.equal(a["targets"], b["targets"])  # the same shift
        assert torch.equal(a["features"] == 0, b["features"] == 0)  # the same masks


@pytest.mark.parametrize(
    "kwargs",
    [{"mix_prob": 1.5}, {"freq_masks": -1}, {"gain_db": -3}, {"freq_shift_bands": -1},
     {"time_masks": -2}, {"time_mask_frames": -1}, {"filter_db": -1.0}, {"filter_bands": 0}],
)  # fmt: skip
def test_bad_settings_name_the_key(kwargs) -> None:
    with pytest.raises(ValueError, match=f"augment.{next(iter(kwargs))}"):
        Augment(**kwargs)
