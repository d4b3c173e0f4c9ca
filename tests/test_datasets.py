"""Tests for sed.data.datasets: chunking, masks, whole files and collate padding."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sed.data.datasets import FileDataset, SequenceDataset, collate, window_starts


def make(lengths, n_bands=4, n_classes=3, seed=0):
    """Features and targets whose values encode (file, frame), so slices can be checked exactly."""
    rng = np.random.default_rng(seed)
    feats, targs = [], []
    for i, n in enumerate(lengths):
        frame = np.arange(n, dtype=np.float32)[:, None]
        feats.append(np.repeat(1000 * i + frame + 1, n_bands, axis=1))
        targs.append((rng.random((n, n_classes)) > 0.5).astype(np.float32))
    return feats, targs, [f"f{i}.wav" for i in range(len(lengths))]


def check_item(it, feats, targs):
    """The valid frames are the file's frames from `start` on; the padding is zeros."""
    valid = it["mask"]
    frames = np.arange(it["start"], it["start"] + int(valid.sum()))
    i = int(it["filename"][1:-4])
    np.testing.assert_array_equal(it["features"][valid].numpy(), feats[i][frames])
    np.testing.assert_array_equal(it["targets"][valid].numpy(), targs[i][frames])
    assert not it["features"][~valid].any() and not it["targets"][~valid].any()
    assert valid[: int(valid.sum())].all()  # padding only at the end


def test_long_file_last_window_ends_at_file_end():
    feats, targs, names = make([2500])
    ds = SequenceDataset(feats, targs, names, seq_len=1024)
    assert [it[1:] for it in ds.index] == [(0, 1024), (1024, 1024), (2500 - 1024, 1024)]
    for item in range(len(ds)):
        it = ds[item]
        assert it["features"].shape == (1024, 4) and it["targets"].shape == (1024, 3)
        assert it["features"].dtype == torch.float32 and it["mask"].dtype == torch.bool
        assert it["mask"].all() and it["filename"] == "f0.wav"
        check_item(it, feats, targs)
    assert ds.padding_share == 0.0


def test_file_one_frame_longer_than_window_is_not_padded():
    # The old cut gave [0, 1024) and a 1-frame window padded to 1024: half the frames padding.
    feats, targs, names = make([1025, 1024])
    ds = SequenceDataset(feats, targs, names, seq_len=1024)
    assert ds.index == [(0, 0, 1024), (0, 1, 1024), (1, 0, 1024)]
    assert ds.padding_share == 0.0


@pytest.mark.parametrize("hop", [None, 1, 100, 512, 1024, 1500])
@pytest.mark.parametrize("length", [1024, 1025, 1500, 2048, 2049, 5000])
def test_windows_of_files_at_least_seq_len_are_never_padded(length, hop):
    starts = window_starts(length, 1024, hop or 1024)
    assert starts[0] == 0 and starts[-1] == length - 1024
    assert starts == sorted(set(starts))
    if hop is None or hop <= 1024:  # consecutive windows overlap or touch: every frame covered
        assert all(b - a <= 1024 for a, b in zip(starts, starts[1:], strict=False))
    feats, targs, names = make([length])
    ds = SequenceDataset(feats, targs, names, seq_len=1024, hop=hop)
    assert all(ds[i]["mask"].all() for i in range(len(ds)))


def test_short_file_padded_to_longest_and_exact_multiple_has_no_extra_window():
    feats, targs, names = make([100, 2048])
    ds = SequenceDataset(feats, targs, names, seq_len=1024)
    assert len(ds) == 3
    assert [int(ds[i]["mask"].sum()) for i in range(3)] == [100, 1024, 1024]
    assert ds[0]["features"].shape == (1024, 4)
    assert [ds[i]["filename"] for i in range(3)] == ["f0.wav", "f1.wav", "f1.wav"]
    check_item(ds[0], feats, targs)
    assert ds.padding_share == pytest.approx(924 / 3072)


def test_window_shrinks_to_the_longest_file():
    # Clips all shorter than seq_len (the embedded set: 500 frames, seq_len 512): no padding.
    feats, targs, names = make([500, 500, 500])
    ds = SequenceDataset(feats, targs, names, seq_len=512)
    assert ds.seq_len == 500 and len(ds) == 3 and ds.padding_share == 0.0
    assert all(ds[i]["mask"].all() and ds[i]["features"].shape == (500, 4) for i in range(3))
    # Mixed short clips pad only up to the longest one.
    feats, targs, names = make([300, 400])
    ds = SequenceDataset(feats, targs, names, seq_len=512)
    assert ds.seq_len == 400 and [int(ds[i]["mask"].sum()) for i in range(2)] == [300, 400]
    check_item(ds[0], feats, targs)


def test_overlapping_windows_cover_the_file():
    feats, targs, names = make([2500])
    ds = SequenceDataset(feats, targs, names, seq_len=1024, hop=512)
    assert [ds[i]["start"] for i in range(len(ds))] == [0, 512, 1024, 1476]
    assert all(ds[i]["mask"].all() for i in range(len(ds)))
    check_item(ds[3], feats, targs)


def test_windows_are_deterministic():
    lengths = [2500, 300, 1025, 4096]
    first = SequenceDataset(*make(lengths, seed=0), seq_len=1024, hop=700).index
    assert SequenceDataset(*make(lengths, seed=1), seq_len=1024, hop=700).index == first


def test_full_windows_do_not_copy():
    feats, targs, names = make([3000])
    ds = SequenceDataset(feats, targs, names, seq_len=1000)
    assert (
        ds[1]["features"].untyped_storage().data_ptr()
        == ds.features[0].untyped_storage().data_ptr()
    )


def test_dataloader_batches():
    feats, targs, names = make([2500, 300, 1024])
    ds = SequenceDataset(feats, targs, names, seq_len=1024)
    batches = list(DataLoader(ds, batch_size=3, collate_fn=collate))
    assert [b["features"].shape for b in batches] == [(3, 1024, 4), (2, 1024, 4)]
    assert batches[0]["targets"].shape == (3, 1024, 3) and batches[0]["mask"].shape == (3, 1024)
    assert batches[0]["mask"].all()  # full windows of long files: BatchNorm sees no padding
    assert int(sum(b["mask"].sum() for b in batches)) == 3 * 1024 + 300 + 1024
    assert batches[1]["filenames"] == ["f1.wav", "f2.wav"]


def test_file_dataset_and_collate_pad_to_longest():
    feats, targs, names = make([5, 3, 7])
    ds = FileDataset(feats, targs, names)
    assert len(ds) == 3 and ds[1]["features"].shape == (3, 4)
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["features"].shape == (3, 7, 4) and batch["targets"].shape == (3, 7, 3)
    assert batch["mask"].sum(dim=1).tolist() == [5, 3, 7]
    assert batch["filenames"] == names
    np.testing.assert_array_equal(batch["features"][1, :3].numpy(), feats[1])
    np.testing.assert_array_equal(batch["targets"][0, :5].numpy(), targs[0])
    assert not batch["features"][1, 3:].any() and not batch["targets"][1, 3:].any()
    assert not batch["mask"][1, 3:].any()


def test_file_dataset_without_targets():
    feats, _, names = make([5, 3])
    batch = collate([FileDataset(feats, None, names)[i] for i in range(2)])
    assert batch["targets"].shape == (2, 5, 0) and batch["mask"].sum().item() == 8


@pytest.mark.parametrize(
    ("lengths_targets", "message"),
    [
        ({"targets": [np.zeros((9, 3))]}, "f0.wav: 10 feature frames but 9 target frames"),
        ({"targets": [np.zeros((10, 3)), np.zeros((10, 3))]}, "1 feature arrays, 2 target arrays"),
    ],
)
def test_mismatches_are_named(lengths_targets, message):
    feats, _, names = make([10])
    with pytest.raises(ValueError, match=message):
        SequenceDataset(feats, lengths_targets["targets"], names)


def test_inconsistent_bands_and_bad_seq_len():
    feats, targs, names = make([10, 10])
    feats[1] = feats[1][:, :2]
    with pytest.raises(ValueError, match="f1.wav"):
        FileDataset(feats, targs, names)
    feats, targs, names = make([10])
    with pytest.raises(ValueError, match="seq_len"):
        SequenceDataset(feats, targs, names, seq_len=0)
    with pytest.raises(ValueError, match="hop"):
        SequenceDataset(feats, targs, names, hop=-1)
    with pytest.raises(ValueError, match="no files"):
        SequenceDataset([], [], [])
