"""Tests for sed.postprocess: thresholds, median filter, gaps, durations, event tables."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage

from sed.annotations import COLUMNS
from sed.postprocess import (
    PostProcessError,
    PostProcessing,
    frames_to_events,
    logits_to_probs,
    median_filter,
    probs_to_events,
    seconds_to_frames,
    shift_boundaries,
)

CLASSES = ["alarm", "dog"]
HOP = 0.02


def probs_with(runs: dict[str, list[tuple[int, int]]], num_frames: int = 50, high: float = 0.9):
    """Probabilities [T, C]: `high` on the given frame runs [s, e) per class, 0.1 elsewhere."""
    probs = np.full((num_frames, len(CLASSES)), 0.1, dtype=np.float32)
    for label, spans in runs.items():
        for s, e in spans:
            probs[s:e, CLASSES.index(label)] = high
    return probs


def as_tuples(events: pd.DataFrame) -> list[tuple]:
    return [
        (label, onset, offset)
        for label, onset, offset in events[["event_label", "onset", "offset"]].itertuples(
            index=False
        )
    ]


def test_events_on_frame_grid():
    probs = probs_with({"alarm": [(3, 10), (20, 21)], "dog": [(7, 15)]})
    events = frames_to_events(probs, HOP, CLASSES, filename="a.wav")
    assert list(events.columns) == COLUMNS
    assert set(events["filename"]) == {"a.wav"}
    assert sorted(as_tuples(events)) == sorted(
        [("alarm", 3 * HOP, 10 * HOP), ("alarm", 20 * HOP, 21 * HOP), ("dog", 7 * HOP, 15 * HOP)]
    )


def test_events_touching_first_and_last_frame():
    t = 40
    probs = probs_with({"alarm": [(0, 5)], "dog": [(30, t)]}, num_frames=t)
    for k in (1, 3, 5, 9):  # long enough to survive any of these windows
        events = frames_to_events(probs, HOP, CLASSES, median_frames=k)
        assert sorted(as_tuples(events)) == [("alarm", 0.0, 5 * HOP), ("dog", 30 * HOP, t * HOP)], k
    everything = frames_to_events(np.ones((t, 2)), HOP, CLASSES, median_frames=7)
    assert as_tuples(everything) == [("alarm", 0.0, t * HOP), ("dog", 0.0, t * HOP)]


def test_median_filter_removes_one_frame_blips():
    probs = probs_with({"alarm": [(0, 1), (10, 11), (20, 30), (49, 50)], "dog": [(10, 11)]})
    raw = frames_to_events(probs, HOP, CLASSES)
    assert len(raw) == 5
    smoothed = frames_to_events(probs, HOP, CLASSES, median_frames=3)
    assert as_tuples(smoothed) == [("alarm", 20 * HOP, 30 * HOP)]
    # one window per class: the dog blip survives a window of 1
    per_class = frames_to_events(probs, HOP, CLASSES, median_frames={"alarm": 5, "dog": 1})
    assert sorted(as_tuples(per_class)) == [
        ("alarm", 20 * HOP, 30 * HOP),
        ("dog", 10 * HOP, 11 * HOP),
    ]
    # also a one-frame hole inside an event is filled
    hole = probs_with({"alarm": [(5, 10), (11, 16)]})
    assert as_tuples(frames_to_events(hole, HOP, CLASSES, median_frames=3)) == [
        ("alarm", 5 * HOP, 16 * HOP)
    ]


@pytest.mark.parametrize("window", [1, 3, 5, 11, 31])
def test_median_filter_equals_scipy(window):
    rng = np.random.default_rng(window)
    active = rng.random((200, 3)) < 0.4
    ours = median_filter(active, window)
    expected = scipy.ndimage.median_filter(
        active.astype(np.uint8), size=(window, 1), mode="constant", cval=0
    ).astype(bool)
    np.testing.assert_array_equal(ours, expected)


def test_median_filter_per_class_windows_equal_scipy():
    rng = np.random.default_rng(1)
    active = rng.random((100, 3)) < 0.5
    ours = median_filter(active, [1, 5, 9])
    for c, k in enumerate([1, 5, 9]):
        expected = scipy.ndimage.median_filter(
            active[:, c].astype(np.uint8), size=k, mode="constant", cval=0
        ).astype(bool)
        np.testing.assert_array_equal(ours[:, c], expected)


def test_median_seconds_to_odd_frames():
    assert seconds_to_frames(0.0, HOP) == 1
    assert seconds_to_frames(0.1, HOP) == 5
    assert seconds_to_frames(0.08, HOP) == 5  # 4 frames -> next odd
    assert seconds_to_frames(0.45, 0.1) == 5
    probs = probs_with({"alarm": [(10, 11), (20, 30)]})
    by_seconds = frames_to_events(probs, HOP, CLASSES, median_seconds=0.06)
    by_frames = frames_to_events(probs, HOP, CLASSES, median_frames=3)
    pd.testing.assert_frame_equal(by_seconds, by_frames)


def test_per_class_thresholds():
    probs = np.full((10, 2), 0.4, dtype=np.float32)
    probs[:, 1] = 0.6
    assert as_tuples(frames_to_events(probs, HOP, CLASSES)) == [("dog", 0.0, 10 * HOP)]
    both = frames_to_events(probs, HOP, CLASSES, threshold=[0.3, 0.5])
    assert sorted(as_tuples(both)) == [("alarm", 0.0, 10 * HOP), ("dog", 0.0, 10 * HOP)]
    only_alarm = frames_to_events(probs, HOP, CLASSES, threshold={"alarm": 0.3, "dog": 0.7})
    assert as_tuples(only_alarm) == [("alarm", 0.0, 10 * HOP)]
    # strictly greater than the threshold
    assert frames_to_events(probs, HOP, CLASSES, threshold=0.6).empty


def test_min_duration_drops_short_events():
    probs = probs_with({"alarm": [(2, 4), (10, 20)], "dog": [(30, 35)]})
    events = frames_to_events(probs, HOP, CLASSES, min_duration=5 * HOP)
    # exactly 5 frames (0.1 s, up to float rounding) is kept, 2 frames is not
    assert sorted(as_tuples(events)) == [("alarm", 10 * HOP, 20 * HOP), ("dog", 30 * HOP, 35 * HOP)]
    per_class = frames_to_events(probs, HOP, CLASSES, min_duration={"alarm": 0.0, "dog": 0.2})
    assert sorted(as_tuples(per_class)) == [
        ("alarm", 2 * HOP, 4 * HOP),
        ("alarm", 10 * HOP, 20 * HOP),
    ]


def test_min_gap_merges_same_class_events():
    probs = probs_with({"alarm": [(0, 5), (7, 10), (20, 25)], "dog": [(10, 12)]})
    events = frames_to_events(probs, HOP, CLASSES, min_gap=3 * HOP)
    # the 2-frame gap merges, the 10-frame gap does not; the dog event is not touched
    assert sorted(as_tuples(events)) == [
        ("alarm", 0.0, 10 * HOP),
        ("alarm", 20 * HOP, 25 * HOP),
        ("dog", 10 * HOP, 12 * HOP),
    ]
    # a gap of exactly min_gap is not "less than" min_gap
    assert len(frames_to_events(probs, HOP, CLASSES, min_gap=2 * HOP)) == 4


def test_gap_merge_happens_before_min_duration():
    probs = probs_with({"alarm": [(10, 12), (13, 15)]})  # two 2-frame events, 1-frame gap
    events = frames_to_events(probs, HOP, CLASSES, min_gap=2 * HOP, min_duration=4 * HOP)
    assert as_tuples(events) == [("alarm", 10 * HOP, 15 * HOP)]
    assert frames_to_events(probs, HOP, CLASSES, min_duration=4 * HOP).empty


def test_boundary_shift_moves_onsets_and_offsets_by_whole_frames():
    probs = probs_with({"alarm": [(10, 20)], "dog": [(30, 40)]})
    events = frames_to_events(probs, HOP, CLASSES, onset_shift=-3 * HOP, offset_shift=-0.1)
    assert sorted(as_tuples(events)) == [("alarm", 7 * HOP, 15 * HOP), ("dog", 27 * HOP, 35 * HOP)]
    # seconds round to the nearest frame (0.05 s = 2.5 frames -> 3; 0.029 s -> 1)
    later = frames_to_events(probs, HOP, CLASSES, onset_shift=0.029, offset_shift=0.05)
    assert sorted(as_tuples(later)) == [("alarm", 11 * HOP, 23 * HOP), ("dog", 31 * HOP, 43 * HOP)]
    # one value per class; a class with no shift is untouched
    per_class = frames_to_events(probs, HOP, CLASSES, onset_shift={"alarm": -0.04, "dog": 0.0})
    assert sorted(as_tuples(per_class)) == [
        ("alarm", 8 * HOP, 20 * HOP),
        ("dog", 30 * HOP, 40 * HOP),
    ]


def test_boundary_shift_clips_to_the_file_keeps_a_frame_and_merges():
    active = np.zeros((50, 2), dtype=bool)
    active[1:4, 0] = True  # near the start
    active[45:50, 0] = True  # up to the end
    active[20:23, 1] = True  # two close events of one class
    active[25:30, 1] = True
    out = shift_boundaries(active, -0.1, 0.1, HOP, CLASSES)  # 5 frames earlier / later
    assert np.flatnonzero(out[:, 0]).tolist() == list(range(0, 9)) + list(range(40, 50))
    assert np.flatnonzero(out[:, 1]).tolist() == list(range(15, 35))  # overlap -> one event
    # an offset moved before its onset keeps the event's first frame
    short = shift_boundaries(active, 0.0, -0.2, HOP, CLASSES)
    assert np.flatnonzero(short[:, 1]).tolist() == [20, 25]
    assert np.flatnonzero(short[:, 0]).tolist() == [1, 45]
    # no shift is the identity; an empty file stays empty
    assert np.array_equal(shift_boundaries(active, 0.0, 0.0, HOP, CLASSES), active)
    assert shift_boundaries(np.zeros((0, 2), bool), -0.1, 0.1, HOP, CLASSES).shape == (0, 2)


def test_shift_settings_may_be_negative_but_must_be_finite():
    pp = PostProcessing(onset_shift=-0.12, offset_shift={"alarm": -0.2, "dog": 0.1})
    assert PostProcessing.from_dict(json.loads(json.dumps(pp.to_dict()))) == pp
    with pytest.raises(PostProcessError, match=r"postprocess\.onset_shift must be finite"):
        PostProcessing(onset_shift=float("nan"))
    with pytest.raises(PostProcessError, match=r"postprocess\.min_gap must be >= 0"):
        PostProcessing(min_gap=-0.1)
    # a setting stored before the shifts existed reads as no shift
    old = PostProcessing.from_dict({"threshold": 0.5, "median_seconds": 0.3, "min_gap": 0.1})
    assert old.onset_shift == 0.0 and old.offset_shift == 0.0


def test_logits_to_probs_is_a_stable_sigmoid():
    logits = np.array([[-1000.0, -2.0, 0.0, 3.0, 1000.0]])
    with np.errstate(all="raise"):
        probs = logits_to_probs(logits)
    expected = [[0.0, 1 / (1 + np.exp(2.0)), 0.5, 1 / (1 + np.exp(-3.0)), 1.0]]
    np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-12)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(logits_to_probs(torch.tensor(logits)), probs)


def test_user_errors_are_clear():
    probs = probs_with({})
    with pytest.raises(PostProcessError, match="odd"):
        frames_to_events(probs, HOP, CLASSES, median_frames=4)
    with pytest.raises(PostProcessError, match="dog"):
        frames_to_events(probs, HOP, CLASSES, median_frames={"alarm": 3, "dog": 2})
    with pytest.raises(PostProcessError, match=r"\[T, 2\]"):
        frames_to_events(probs[:, :1], HOP, CLASSES)
    with pytest.raises(PostProcessError, match="logits_to_probs"):
        frames_to_events(probs * 10 - 5, HOP, CLASSES, filename="x.wav")
    with pytest.raises(PostProcessError, match="cat"):
        frames_to_events(probs, HOP, CLASSES, threshold={"alarm": 0.5, "dog": 0.5, "cat": 0.5})
    with pytest.raises(PostProcessError, match="3 values"):
        frames_to_events(probs, HOP, CLASSES, threshold=[0.5, 0.5, 0.5])
    with pytest.raises(PostProcessError, match="not both"):
        PostProcessing(median_seconds=0.1, median_frames=3)
    with pytest.raises(PostProcessError, match="min_gap"):
        PostProcessing(min_gap=-1.0)


def test_postprocessing_round_trip_and_call():
    post = PostProcessing(
        threshold={"alarm": 0.3, "dog": 0.6}, median_seconds=[0.06, 0.1], min_duration=0.04
    )
    data = post.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain types only, checkpoint-safe
    again = PostProcessing.from_dict(data)
    assert again == post
    np.testing.assert_array_equal(again.windows(HOP, CLASSES), [3, 5])
    probs = probs_with({"alarm": [(0, 1), (5, 9)], "dog": [(20, 30)]}, high=0.5)
    events = post(probs, HOP, CLASSES, filename="f.wav")
    assert as_tuples(events) == [("alarm", 5 * HOP, 9 * HOP)]
    with pytest.raises(PostProcessError, match="median_window"):
        PostProcessing.from_dict({**data, "median_window": 3})


def test_probs_to_events_over_files():
    probs = {
        "b.wav": probs_with({"dog": [(5, 10)]}),
        "a.wav": probs_with({"alarm": [(20, 30), (1, 4)]}),
        "silent.wav": probs_with({}),
    }
    events = probs_to_events(probs, HOP, CLASSES, PostProcessing(median_frames=3))
    assert list(events.columns) == COLUMNS
    assert list(events["filename"]) == ["a.wav", "a.wav", "b.wav"]
    assert list(events["onset"]) == [1 * HOP, 20 * HOP, 5 * HOP]
    as_dict = probs_to_events(probs, HOP, CLASSES, {"median_frames": 3})
    pd.testing.assert_frame_equal(events, as_dict)
    empty = probs_to_events({"silent.wav": probs_with({})}, HOP, CLASSES)
    assert empty.empty and list(empty.columns) == COLUMNS


def test_overrides_replace_only_what_is_given():
    base = PostProcessing(threshold={"alarm": 0.3, "dog": 0.6}, median_frames=5, min_gap=0.1)
    same = base.with_overrides(
        {"threshold": None, "median_seconds": None, "min_duration": None, "min_gap": None}
    )
    assert same == base and same is not base
    seconds = base.with_overrides({"threshold": 0.4, "median_seconds": 0.2})
    assert (seconds.threshold, seconds.median_seconds, seconds.median_frames) == (0.4, 0.2, None)
    assert seconds.min_gap == 0.1 and base.threshold == {"alarm": 0.3, "dog": 0.6}
    frames = seconds.with_overrides({"median_frames": 3})
    assert (frames.median_seconds, frames.median_frames) == (None, 3)
    assert PostProcessing().with_overrides(None) == PostProcessing()


def test_bad_overrides_name_the_key():
    with pytest.raises(PostProcessError, match="unknown key.*'window'"):
        PostProcessing().with_overrides({"window": 3})
    with pytest.raises(PostProcessError, match="min_duration must be >= 0"):
        PostProcessing().with_overrides({"min_duration": -1.0})
    with pytest.raises(PostProcessError, match="not both"):
        PostProcessing().with_overrides({"median_seconds": 0.2, "median_frames": 3})


@pytest.mark.parametrize(
    "threshold", [0.0, 1.0, 1.5, -0.1, [0.5, 1.0], {"alarm": 0.5, "dog": 0.0}, float("nan")]
)
def test_threshold_outside_zero_one_is_refused(threshold):
    # 0 or 1 makes every frame active or none: every metric would silently be 0.
    with pytest.raises(PostProcessError, match=r"postprocess\.threshold must lie in \(0, 1\)"):
        PostProcessing(threshold=threshold)
    with pytest.raises(PostProcessError, match=r"postprocess\.threshold must lie in \(0, 1\)"):
        PostProcessing().with_overrides({"threshold": threshold})


def test_non_numeric_settings_name_the_key():
    with pytest.raises(PostProcessError, match=r"postprocess\.min_gap must be numbers"):
        PostProcessing(min_gap="wide")


def test_offsets_are_clipped_to_the_file_duration():
    # The last frame of the grid, [99 hop, 100 hop), reaches past a file of 99.5 hops.
    probs = {
        "a.wav": probs_with({"dog": [(90, 100)]}, num_frames=100),
        "b.wav": probs_with({"dog": [(0, 5)]}),
    }
    events = probs_to_events(probs, HOP, CLASSES, durations={"a.wav": 99.5 * HOP})
    assert events["offset"].tolist() == [pytest.approx(99.5 * HOP), 5 * HOP]
    assert probs_to_events(probs, HOP, CLASSES)["offset"].max() == pytest.approx(100 * HOP)
    # an event wholly past the end is dropped
    gone = probs_to_events(probs, HOP, CLASSES, durations={"a.wav": 90 * HOP, "b.wav": 1.0})
    assert gone["filename"].tolist() == ["b.wav"]
