"""sed.annotations: DESED TSV and TUT .ann parsing, row validation, and frame targets."""

import numpy as np
import pandas as pd
import pytest

from sed.annotations import (
    COLUMNS,
    AnnotationError,
    events_to_frames,
    read_ann,
    read_durations,
    read_tsv,
    targets_to_events,
    write_tsv,
)

HEADER = "filename\tonset\toffset\tevent_label\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_tsv_well_formed(tmp_path):
    path = write(
        tmp_path / "train.tsv",
        HEADER
        + "b.wav\t2.5\t3.0\tdog \n"  # trailing whitespace is ignored
        + "a.wav\t1.0\t2.0\tcat\n"
        + "c.wav\t\t\t\n"  # a file with no events
        + "a.wav\t0.25\t0.75\tdog\n"
        + "d.wav\n"  # no-event row whose trailing tabs an editor stripped
        + "\n",
    )
    events, filenames = read_tsv(path, classes=["cat", "dog"], return_filenames=True)
    assert list(events.columns) == COLUMNS
    assert events.values.tolist() == [
        ["a.wav", 0.25, 0.75, "dog"],
        ["a.wav", 1.0, 2.0, "cat"],
        ["b.wav", 2.5, 3.0, "dog"],
    ]
    assert filenames == ["b.wav", "a.wav", "c.wav", "d.wav"]
    assert events["onset"].dtype == float and events["offset"].dtype == float
    pd.testing.assert_frame_equal(read_tsv(path), events)


def test_file_with_only_empty_rows(tmp_path):
    path = write(tmp_path / "test.tsv", HEADER + "quiet.wav\t\t\t\n")
    events, filenames = read_tsv(path, return_filenames=True)
    assert events.empty and list(events.columns) == COLUMNS
    assert filenames == ["quiet.wav"]
    assert not events_to_frames(events, 10, 0.1, ["dog"]).any()


MALFORMED_ROWS = {
    "text onset": ("a.wav\tsoon\t2.0\tdog", "onset 'soon' is not a finite number"),
    "nan offset": ("a.wav\t1.0\tnan\tdog", "offset 'nan' is not a finite number"),
    "negative onset": ("a.wav\t-0.5\t2.0\tdog", "onset -0.5 is negative"),
    "offset == onset": ("a.wav\t2.0\t2.0\tdog", "must be greater than onset"),
    "offset < onset": ("a.wav\t3.0\t2.0\tdog", "must be greater than onset"),
    "no label": ("a.wav\t1.0\t2.0\t", "expected 4 tab-separated columns, got 3"),
    "too many columns": ("a.wav\t1.0\t2.0\tdog\textra", "expected 4 tab-separated columns, got 5"),
    "empty filename": ("\t1.0\t2.0\tdog", "filename is empty"),
    "half-empty row": ("a.wav\t\t\tdog", "onset '' is not a finite number"),
    "unknown label": ("a.wav\t1.0\t2.0\twolf", "unknown event_label 'wolf'"),
    "label in another case": ("a.wav\t1.0\t2.0\tDog", r"unknown .*'Dog'.*did you mean 'dog'\?"),
    "spaces for tabs": ("a.wav 1.0 2.0 dog", "columns are separated by spaces; use tabs"),
    "spaces for tabs, spaced label": ("a.wav  1  2  dog barking", "separated by spaces"),
    "parent folder": ("../leak.wav\t1.0\t2.0\tdog", "'../leak.wav' leaves the split's audio"),
    "parent folder inside": ("x/../../leak.wav\t\t\t", "leaves the split's audio folder"),
    "absolute path": ("/etc/leak.wav\t1.0\t2.0\tdog", "leaves the split's audio folder"),
    "windows path": ("..\\leak.wav\t1.0\t2.0\tdog", "leaves the split's audio folder"),
    "windows drive": ("C:/leak.wav\t1.0\t2.0\tdog", "leaves the split's audio folder"),
}


@pytest.mark.parametrize("case", list(MALFORMED_ROWS))
def test_malformed_tsv_row_names_file_and_line(tmp_path, case):
    row, message = MALFORMED_ROWS[case]
    path = write(tmp_path / "bad.tsv", HEADER + "a.wav\t0.0\t1.0\tdog\n" + row + "\n")
    with pytest.raises(AnnotationError, match=message) as caught:
        read_tsv(path, classes=["cat", "dog"])
    assert f"{path}, line 3:" in str(caught.value)


def test_no_event_rows_may_have_spaces_in_their_filename(tmp_path):
    path = write(tmp_path / "x.tsv", HEADER + "my clip 2.wav\na.wav\t0\t1\tdog\n")
    events, names = read_tsv(path, return_filenames=True)
    assert names == ["my clip 2.wav", "a.wav"] and len(events) == 1


@pytest.mark.parametrize("other", ["CAR passing", "Car passing", "car  passing"])
def test_labels_differing_in_case_or_spacing_are_refused(tmp_path, other):
    rows = f"a.wav\t0\t1\tcar passing\nb.wav\t0\t1\tdog\nb.wav\t1\t2\t{other}\n"
    path = write(tmp_path / "x.tsv", HEADER + rows)
    with pytest.raises(
        AnnotationError, match=r"x\.tsv, line 4: .* differs from 'car passing' \(line 2\)"
    ):
        read_tsv(path)


def test_surrounding_spaces_of_a_label_are_ignored(tmp_path):
    path = write(tmp_path / "x.tsv", HEADER + "a.wav\t0\t1\tcar\nb.wav\t1\t2\t car \n")
    assert read_tsv(path)["event_label"].tolist() == ["car", "car"]


def test_duplicate_rows_are_dropped_with_a_warning_naming_lines(tmp_path, caplog):
    rows = "a.wav\t0.5\t1\tdog\nb.wav\t0\t1\tcat\na.wav\t0.50\t1.0\tdog\na.wav\t0.5\t1\tcat\n"
    with caplog.at_level("WARNING", logger="sed.annotations"):
        events = read_tsv(write(tmp_path / "x.tsv", HEADER + rows))
    assert len(events) == 3
    assert "x.tsv: duplicate event rows ignored (line 4 repeats line 2)" in caplog.text


def test_offsets_are_checked_against_durations(tmp_path, caplog):
    rows = "a.wav\t0\t4.01\tdog\na.wav\t3.5\t4.5\tcat\nb.wav\t4.02\t4.03\tdog\n"
    path = write(tmp_path / "x.tsv", HEADER + rows)
    with caplog.at_level("WARNING", logger="sed.annotations"):
        events = read_tsv(path, duration=lambda name: 4.0)
    # 4.01 is rounding; 4.5 is clipped with a warning; b.wav's event lies wholly past the end.
    assert events.values.tolist() == [["a.wav", 0.0, 4.0, "dog"], ["a.wav", 3.5, 4.0, "cat"]]
    assert "1 event(s) end after their audio (line 3)" in caplog.text
    path = write(tmp_path / "y.tsv", HEADER + "a.wav\t0\t1\tdog\na.wav\t0.5\t99\tdog\n")
    with pytest.raises(AnnotationError, match=r"y\.tsv, line 3: offset 99 s lies beyond the end"):
        read_tsv(path, duration=lambda name: 4.0)


def test_missing_audio_names_file_and_line(tmp_path):
    (tmp_path / "a.wav").touch()
    path = write(tmp_path / "x.tsv", HEADER + "a.wav\t0\t1\tdog\nb.wav\t\t\t\n")
    with pytest.raises(AnnotationError, match=r"x\.tsv, line 3: audio file .*b\.wav not found"):
        read_tsv(path, audio_dir=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("filename\tonset\toffset\n", "line 1: expected the tab-separated header"),
        ("filename,onset,offset,event_label\n", "line 1: expected the tab-separated header"),
        ("filename onset offset event_label\n", "separated by spaces; use tabs"),
    ],
)
def test_bad_header(tmp_path, text, message):
    with pytest.raises(AnnotationError, match=message):
        read_tsv(write(tmp_path / "h.tsv", text))


def test_missing_annotation_file(tmp_path):
    with pytest.raises(AnnotationError, match="not found: .*nothing.tsv"):
        read_tsv(tmp_path / "nothing.tsv")


def test_write_tsv_round_trip_and_atomic(tmp_path):
    events = pd.DataFrame(
        [["b.wav", 0.5, 1.25, "dog"], ["a.wav", 1e-5, 2.123456, "cat"]], columns=COLUMNS
    )
    path = tmp_path / "out" / "predictions.tsv"
    write_tsv(events, path, filenames=["a.wav", "silent.wav", "b.wav"])
    text = path.read_text()
    assert text.splitlines()[0] == HEADER.strip()
    assert "e-" not in text and "silent.wav\t\t\t" in text
    back, filenames = read_tsv(path, return_filenames=True)
    assert sorted(filenames) == ["a.wav", "b.wav", "silent.wav"]
    expected = events.sort_values("filename", ignore_index=True)
    pd.testing.assert_frame_equal(back, expected, atol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["predictions.tsv"]  # no temp files left

    with pytest.raises(ValueError, match="lacks columns"):
        write_tsv(events.drop(columns="onset"), path)
    assert path.read_text() == text  # a failed write leaves the old file whole


# The TUT Sound Events 2017 development set's a001 annotation: the per-file form (also TUT-SED
# 2016 and the non-verified 2017 files) and the meta/*.ann list form of the same events.
TUT_PER_FILE = "1.589213\t2.383820\tpeople walking\n3.500767\t4.156693\tpeople walking \r\n"
TUT_2017_META = (
    "audio/street/a001.wav\tstreet\t1.589213\t2.38382\tpeople walking\tmixture\ta001\n"
    "audio/street/a001.wav\tstreet\t4.156693\t14.00307\tcar\tmixture\ta001\n"
)


def test_read_ann_per_file_form(tmp_path):
    events = read_ann(write(tmp_path / "a001.ann", TUT_PER_FILE))
    assert events.values.tolist() == [
        ["a001.wav", 1.589213, 2.38382, "people walking"],
        ["a001.wav", 3.500767, 4.156693, "people walking"],
    ]
    named = read_ann(tmp_path / "a001.ann", filename="audio/street/a001.wav")
    assert set(named["filename"]) == {"audio/street/a001.wav"}


def test_read_ann_list_forms(tmp_path):
    events = read_ann(
        write(tmp_path / "meta.ann", TUT_2017_META), classes=["car", "people walking"]
    )
    assert events.values.tolist() == [
        ["audio/street/a001.wav", 1.589213, 2.38382, "people walking"],
        ["audio/street/a001.wav", 4.156693, 14.00307, "car"],
    ]
    five = "audio/home/a001.wav\thome\t0.5\t1.5\tcupboard\n"  # 2016 evaluation_setup lists
    four = "a002.wav\t2\t3\tdrawer\n"
    both = read_ann(write(tmp_path / "list.txt", five + four))
    assert both.values.tolist() == [
        ["a002.wav", 2.0, 3.0, "drawer"],
        ["audio/home/a001.wav", 0.5, 1.5, "cupboard"],
    ]


@pytest.mark.parametrize(
    "text",
    [
        "0,5\t1,25\tglass jingling\n",  # decimal commas (TUT Sound Events 2016 evaluation)
        "0.5,1.25,glass jingling\n",  # comma-separated
        "0.5 1.25 glass jingling  \n",  # whitespace-separated, label with a space
    ],
)
def test_read_ann_separators(tmp_path, text):
    events = read_ann(write(tmp_path / "x.ann", text), filename="x.wav")
    assert events.values.tolist() == [["x.wav", 0.5, 1.25, "glass jingling"]]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1.0\t0.5\tcar", "must be greater than onset"),
        ("1.0\tcar", "got 2 column"),
        ("x\t2.0\tcar", "onset 'x' is not a finite number"),
        ("1.0\t2.0\tbus", "unknown event_label 'bus'"),
        ("f.wav\tstreet\t1.0\t2.0\t\tmixture\tf", "event_label is empty"),
    ],
)
def test_read_ann_malformed_row_names_line(tmp_path, row, message):
    path = write(tmp_path / "b.ann", "0.0\t1.0\tcar\n\n" + row + "\n")
    with pytest.raises(AnnotationError, match=message) as caught:
        read_ann(path, classes=["car"])
    assert f"{path}, line 3:" in str(caught.value)


def test_read_durations(tmp_path):
    path = write(tmp_path / "d.tsv", "filename\tduration\na.wav\t10.0\nb.wav\t9.5 \n")
    assert read_durations(path) == {"a.wav": 10.0, "b.wav": 9.5}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("b.wav\tlong", "duration 'long' is not a finite number"),
        ("b.wav\t0", "must be positive"),
        ("a.wav\t3.0", "a.wav is listed twice"),
        ("b.wav\t1\t2", "expected 2 tab-separated columns"),
        ("b.wav 9.5", "separated by spaces; use tabs"),
        ("../b.wav\t9.5", "leaves the split's audio folder"),
    ],
)
def test_read_durations_malformed_row_names_line(tmp_path, row, message):
    path = write(tmp_path / "d.tsv", "filename\tduration\na.wav\t10.0\n" + row + "\n")
    with pytest.raises(AnnotationError, match=message) as caught:
        read_durations(path)
    assert f"{path}, line 3:" in str(caught.value)


def one_file(*events):
    return pd.DataFrame([("f.wav", *event) for event in events], columns=COLUMNS)


def test_events_to_frames_uses_frame_centres():
    hop = 0.125  # frame i covers [i/8, (i+1)/8), centre (i + 0.5)/8
    events = one_file(
        (0.2, 0.55, "a"),  # centres 0.3125, 0.4375 -> frames 2, 3 (not 1 at 0.1875, 4 at 0.5625)
        (0.51, 0.55, "b"),  # contains no centre -> the frame holding its onset, 4
        (0.9, 99.0, "b"),  # clipped at the last frame
    )
    frames = events_to_frames(events, 10, hop, ["a", "b"])
    assert frames.dtype == np.float32 and frames.shape == (10, 2)
    assert np.flatnonzero(frames[:, 0]).tolist() == [2, 3]
    assert np.flatnonzero(frames[:, 1]).tolist() == [4, 7, 8, 9]


def test_events_to_frames_rejects_unknown_label():
    with pytest.raises(AnnotationError, match="'c' is not one of the classes"):
        events_to_frames(one_file((0.0, 1.0, "c")), 10, 0.1, ["a", "b"])


def test_targets_to_events_runs():
    active = np.array([[0, 1], [1, 1], [1, 0], [0, 0], [1, 0]], dtype=bool)
    events = targets_to_events(active, 0.5, ["a", "b"], filename="f.wav")
    assert events.values.tolist() == [
        ["f.wav", 0.0, 1.0, "b"],
        ["f.wav", 0.5, 1.5, "a"],
        ["f.wav", 2.0, 2.5, "a"],
    ]
    empty = targets_to_events(np.zeros((4, 2)), 0.5, ["a", "b"])
    assert empty.empty and list(empty.columns) == COLUMNS
    with pytest.raises(ValueError, match="shape"):
        targets_to_events(np.zeros((4, 3)), 0.5, ["a", "b"])


def random_events(rng, classes, hop, seconds):
    """Events per class with gaps of at least two hops, lasting 0.2 to 40 hops."""
    rows = []
    for label in classes:
        t = rng.uniform(0, 3 * hop)
        while True:
            duration = hop * rng.uniform(0.2, 40)
            if t + duration > seconds:
                break
            rows.append((t, t + duration, label))
            t += duration + hop * rng.uniform(2.0, 30)
    return one_file(*rows)


@pytest.mark.parametrize("seed", range(5))
def test_events_frames_events_round_trip_within_one_hop(seed):
    rng = np.random.default_rng(seed)
    classes, hop, seconds = ["a", "b", "c"], 0.02 + 0.01 * seed, 30.0
    events = random_events(rng, classes, hop, seconds)
    num_frames = int(np.ceil(seconds / hop))
    back = targets_to_events(events_to_frames(events, num_frames, hop, classes), hop, classes)
    assert len(events) > 20
    for label in classes:
        want = events[events.event_label == label].sort_values("onset")
        got = back[back.event_label == label]
        assert len(got) == len(want)
        assert np.abs(got["onset"].to_numpy() - want["onset"].to_numpy()).max() <= hop + 1e-9
        assert np.abs(got["offset"].to_numpy() - want["offset"].to_numpy()).max() <= hop + 1e-9
