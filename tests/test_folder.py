"""sed.data.folder: the DESIGN dataset folder format, its durations and its errors."""

import numpy as np
import pytest
import soundfile as sf

from sed.annotations import AnnotationError
from sed.audio import AudioError
from sed.data.folder import SPLITS, infer_classes, load_split

HEADER = "filename\tonset\toffset\tevent_label\n"


def make_dataset(root, split="train", tsv=None, seconds=None):
    """Write ROOT/audio/{split}/*.wav (16 kHz, the given lengths) and ROOT/metadata/{split}.tsv."""
    seconds = seconds or {"a.wav": 2.0, "b.wav": 1.5, "sub/c.wav": 0.5}
    for name, length in seconds.items():
        path = root / "audio" / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(int(16000 * length), np.float32), 16000)
    if tsv is None:
        tsv = "a.wav\t0.1\t0.9\tdog\nb.wav\t\t\t\na.wav\t0.5\t1.5\tcat\nsub/c.wav\t0\t0.5\tdog\n"
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    (root / "metadata" / f"{split}.tsv").write_text(HEADER + tsv)
    return root


def test_load_split_with_durations_from_audio(tmp_path):
    data = load_split(make_dataset(tmp_path), "train")
    assert data.split == "train" and data.audio_dir == tmp_path / "audio" / "train"
    assert data.filenames == ["a.wav", "b.wav", "sub/c.wav"]
    assert data.durations == {"a.wav": 2.0, "b.wav": 1.5, "sub/c.wav": 0.5}
    assert data.events.values.tolist() == [
        ["a.wav", 0.1, 0.9, "dog"],
        ["a.wav", 0.5, 1.5, "cat"],
        ["sub/c.wav", 0.0, 0.5, "dog"],
    ]


def test_durations_tsv_is_used_and_adds_files_without_events(tmp_path):
    make_dataset(
        tmp_path, "test", seconds={"a.wav": 2.0, "b.wav": 1.5, "sub/c.wav": 0.5, "q.wav": 1}
    )
    (tmp_path / "metadata" / "test_durations.tsv").write_text(
        "filename\tduration\na.wav\t10.0\nq.wav\t3.0\n"
    )
    data = load_split(tmp_path, "test")
    assert data.filenames == ["a.wav", "b.wav", "sub/c.wav", "q.wav"]
    # a.wav and q.wav from the TSV (deliberately not their audio length), the rest from audio.
    assert data.durations == {"a.wav": 10.0, "b.wav": 1.5, "sub/c.wav": 0.5, "q.wav": 3.0}


def test_infer_classes_sorts_train_labels(tmp_path):
    assert infer_classes(make_dataset(tmp_path)) == ["cat", "dog"]


def test_classes_are_validated(tmp_path):
    with pytest.raises(AnnotationError, match=r"train\.tsv, line 4: unknown event_label 'cat'"):
        load_split(make_dataset(tmp_path), "train", classes=["dog"])


def test_missing_metadata_names_the_path(tmp_path):
    make_dataset(tmp_path)
    expected = tmp_path / "metadata" / "validation.tsv"
    with pytest.raises(AnnotationError, match=f"not found: {expected}"):
        load_split(tmp_path, "validation")
    with pytest.raises(AnnotationError, match="dataset root .*nowhere does not exist"):
        infer_classes(tmp_path / "nowhere")


def test_missing_audio_names_tsv_and_row(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "audio" / "train" / "b.wav").unlink()
    with pytest.raises(AnnotationError, match=r"train\.tsv, line 3: audio file .*b\.wav not found"):
        load_split(tmp_path, "train")


def test_check_audio_off_skips_the_existence_check_but_needs_durations(tmp_path):
    make_dataset(tmp_path, tsv="gone.wav\t0\t1\tdog\n")
    with pytest.raises(AudioError, match="not found: .*gone.wav"):
        load_split(tmp_path, "train", check_audio=False)
    (tmp_path / "metadata" / "train_durations.tsv").write_text("filename\tduration\ngone.wav\t4\n")
    data = load_split(tmp_path, "train", check_audio=False)
    assert data.durations == {"gone.wav": 4.0} and len(data.events) == 1


def test_empty_train_split_cannot_give_classes(tmp_path):
    make_dataset(tmp_path, tsv="a.wav\t\t\t\n")
    with pytest.raises(AnnotationError, match="has no events, so the classes cannot be inferred"):
        infer_classes(tmp_path)
    assert load_split(tmp_path, "train").events.empty


def test_unknown_split(tmp_path):
    assert SPLITS == ("train", "validation", "test")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_split(make_dataset(tmp_path), "dev")
