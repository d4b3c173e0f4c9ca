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
        tmp_path, "test", seconds={"a.wav": 2.0, "b.wav": 1.5, "sub/c.wav": 0.5, "q.wav": 3}
    )
    (tmp_path / "metadata" / "test_durations.tsv").write_text(
        "filename\tduration\na.wav\t2.01\nq.wav\t3.0\n"
    )
    data = load_split(tmp_path, "test")
    assert data.filenames == ["a.wav", "b.wav", "sub/c.wav", "q.wav"]
    # a.wav and q.wav from the TSV (within the tolerance of their audio), the rest from audio.
    assert data.durations == {"a.wav": 2.01, "b.wav": 1.5, "sub/c.wav": 0.5, "q.wav": 3.0}


def test_durations_that_contradict_the_audio_name_file_and_line(tmp_path):
    make_dataset(tmp_path, "test")
    (tmp_path / "metadata" / "test_durations.tsv").write_text(
        "filename\tduration\na.wav\t2.0\nb.wav\t400\n"
    )
    message = r"test_durations\.tsv, line 3: duration 400 s contradicts the audio of b\.wav \(1\.5"
    with pytest.raises(AnnotationError, match=message):
        load_split(tmp_path, "test")
    # Without the audio check, the durations file is the only source and is believed.
    assert load_split(tmp_path, "test", check_audio=False).durations["b.wav"] == 400


def test_event_offsets_past_the_audio_are_clipped_or_refused(tmp_path, caplog):
    # a.wav lasts 2.0 s: 2.02 s is rounding (clipped silently), 2.5 s is clipped with a warning
    # naming the line, 99 s is an error naming the line.
    make_dataset(tmp_path, tsv="a.wav\t0.1\t2.02\tdog\na.wav\t1.0\t2.5\tcat\n")
    with caplog.at_level("WARNING", logger="sed.annotations"):
        data = load_split(tmp_path, "train")
    assert data.events["offset"].tolist() == [2.0, 2.0]
    assert "train.tsv: 1 event(s) end after their audio (line 3)" in caplog.text
    make_dataset(tmp_path, tsv="a.wav\t0.1\t1.0\tdog\nb.wav\t0.5\t99\tdog\n")
    with pytest.raises(
        AnnotationError, match=r"train\.tsv, line 3: offset 99 s lies beyond .*b\.wav"
    ):
        load_split(tmp_path, "train")


def test_durations_file_bounds_the_events_without_audio(tmp_path):
    make_dataset(tmp_path, tsv="gone.wav\t1\t9\tdog\n")
    (tmp_path / "metadata" / "train_durations.tsv").write_text("filename\tduration\ngone.wav\t4\n")
    with pytest.raises(AnnotationError, match=r"train\.tsv, line 2: offset 9 s lies beyond"):
        load_split(tmp_path, "train", check_audio=False)


def test_a_path_out_of_the_split_folder_is_refused(tmp_path):
    # The test split's audio is right there, but the train split may not reach it.
    make_dataset(tmp_path, "test")
    make_dataset(tmp_path, tsv="a.wav\t0\t1\tdog\n../test/b.wav\t0\t1\tdog\n")
    with pytest.raises(
        AnnotationError, match=r"train\.tsv, line 3: filename '\.\./test/b\.wav' leaves"
    ):
        load_split(tmp_path, "train")


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
