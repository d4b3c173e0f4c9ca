"""Tests for sed.data.datasets: chunking, masks, whole files and collate padding."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sed.data.datasets import FileDataset, SequenceDataset, collate


def make(lengths, n_bands=4, n_classes=3, seed=0):
    """Features and targets whose values encode (file, frame), so slices can be checked exactly."""
    rng = np.random.default_rng(seed)
    feats, targs = [], []
    for i, n in enumerate(lengths):
        frame = np.arange(n, dtype=np.float32)[:, None]
        feats.append(np.repeat(1000 * i + frame + 1, n_bands, axis=1))
        targs.append((rng.random((n, n_classes)) > 0.5).astype(np.float32))
    return feats, targs, [f"f{i}.wav" for i in range(len(lengths))]


def test_long_file_is_chunked_with_masked_padding():
    feats, targs, names = make([2500])
    ds = SequenceDataset(feats, targs, names, seq_len=1024)
    assert len(ds) == 3
    items = [ds[i] for i in range(3)]
    assert [int(it["mask"].sum()) for it in items] == [1024, 1024, 452]
    assert [it["start"] for it in items] == [0, 1024, 2048]
    for it in items:
        assert it["features"].shape == (1024, 4) and it["targets"].shape == (1024, 3)
        assert it["features"].dtype == torch.float32 and it["mask"].dtype == torch.bool
        assert it["filename"] == "f0.wav"
        valid = it["mask"]
        frames = np.arange(it["start"], it["start"] + int(valid.sum()))
        np.testing.assert_array_equal(it["features"][valid].numpy(), feats[0][frames])
        np.testing.assert_array_equal(it["targets"][valid].numpy(), targs[0][frames])
        assert not it["features"][~valid].any() and not it["targets"][~valid].any()
    assert items[2]["mask"][:452].all() and not items[2]["mask"][452:].any()


def test_short_file_padded_and_exact_multiple_has_no_empty_chunk():
    feats, targs, names = make([100, 2048])
    ds = SequenceDataset(feats, targs, names, seq_len=1024)
    assert len(ds) == 3
    assert [int(ds[i]["mask"].sum()) for i in range(3)] == [100, 1024, 1024]
    assert ds[0]["features"].shape == (1024, 4)
    assert [ds[i]["filename"] for i in range(3)] == ["f0.wav", "f1.wav", "f1.wav"]


def test_overlapping_windows_cover_the_file():
    feats, targs, names = make([2500])
    ds = SequenceDataset(feats, targs, names, seq_len=1024, hop=512)
    assert [ds[i]["start"] for i in range(len(ds))] == [0, 512, 1024, 1536]
    assert int(ds[3]["mask"].sum()) == 2500 - 1536


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
    assert int(sum(b["mask"].sum() for b in batches)) == 2500 + 300 + 1024
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
