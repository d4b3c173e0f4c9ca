"""Post-processing search on validation: finds per-class settings that a known signal calls for,
never does worse than its start, and depends only on what it is given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sed.evaluation import evaluate_events
from sed.postprocess import PostProcessing, probs_to_events
from sed.postprocess_search import SearchError, SearchSpace, tune_postprocessing

HOP = 0.02
CLASSES = ["bell", "hum"]


def _split(seed: int, n_files: int = 6, frames: int = 500):
    """Files with a few events per class. `bell` is detected at 0.8 with 2-frame dropouts every
    10 frames (a median filter fixes it); `hum` only reaches 0.35 (a low threshold finds it)."""
    rng = np.random.default_rng(seed)
    probs, rows, durations = {}, [], {}
    for i in range(n_files):
        name = f"f{i}.wav"
        p = rng.uniform(0.0, 0.1, size=(frames, 2)).astype(np.float32)
        for c, label in enumerate(CLASSES):
            for start in rng.choice(np.arange(10, frames - 100, 120), size=2, replace=False):
                length = int(rng.integers(40, 90))
                if label == "bell":
                    seg = np.full(length, 0.8, np.float32)
                    seg[np.arange(length) % 10 < 2] = 0.2
                else:
                    seg = np.full(length, 0.35, np.float32)
                p[start : start + length, c] = seg
                rows.append((name, start * HOP, (start + length) * HOP, label))
        probs[name] = p
        durations[name] = frames * HOP
    events = pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])
    return probs, events, durations


SPACE = SearchSpace(
    thresholds=(0.3, 0.5), median_seconds=(0.02, 0.1), min_duration=(0.0,), min_gap=(0.0,)
)


def test_finds_per_class_settings_and_beats_start() -> None:
    probs, events, durations = _split(0)
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    result = tune_postprocessing(
        probs, events, CLASSES, HOP, durations, start, SPACE, progress=False, per_class=True
    )
    pp = result.postprocessing
    assert pp.threshold["hum"] == pytest.approx(0.3)  # 0.35 activity needs a threshold below it
    assert pp.median_seconds["bell"] == pytest.approx(0.1)  # 2-frame dropouts need a window
    assert result.score > result.start_score
    # The reported score is what the chosen settings really give on that split.
    again = evaluate_events(events, probs_to_events(probs, HOP, CLASSES, pp), CLASSES, durations)
    assert again["event_f1"] == pytest.approx(result.score)
    assert {"start", "threshold+median", "final"} <= set(result.trials["stage"])


def test_shared_scope_picks_the_best_common_setting() -> None:
    """per_class=False gives every class the same values: the candidate with the best overall
    score (checked by scoring every combination of a small space by brute force)."""
    probs, events, durations = _split(5)
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    space = SearchSpace(thresholds=(0.3, 0.5), median_seconds=(0.02, 0.1), min_duration=(0.0,),
                        min_gap=(0.0, 0.2))  # fmt: skip
    result = tune_postprocessing(
        probs, events, CLASSES, HOP, durations, start, space, progress=False
    )
    pp = result.postprocessing
    for key in ("threshold", "median_seconds", "min_gap"):
        assert len(set(getattr(pp, key).values())) == 1, key
    best = max(
        evaluate_events(
            events,
            probs_to_events(
                probs, HOP, CLASSES, PostProcessing(threshold=t, median_seconds=m, min_gap=g)
            ),
            CLASSES,
            durations,
        )["event_f1"]
        for t in space.thresholds
        for m in space.median_seconds
        for g in space.min_gap
    )
    assert result.score == pytest.approx(best)
    # the per-class search can only do as well or better on the split it is fitted to
    own = tune_postprocessing(
        probs, events, CLASSES, HOP, durations, start, space, progress=False, per_class=True
    )
    assert own.score >= result.score - 1e-12


def test_class_thresholds_give_each_class_its_own_threshold() -> None:
    """class_thresholds: after the shared search (one median window for both classes, which the
    dropouts of `bell` call for), `hum` gets the low threshold its 0.35 activity needs and
    `bell`, given spurious 0.45 activity that no threshold shared with `hum` can skip, a high
    one; the overall score beats the shared search's and equals a scoring of the chosen
    settings."""
    probs, events, durations = _split(4)
    for p in probs.values():  # after every event (events end before frame 460)
        p[470:495, CLASSES.index("bell")] = 0.45
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    space = SearchSpace(thresholds=(0.3, 0.5, 0.7), median_seconds=(0.02, 0.1),
                        min_duration=(0.0,), min_gap=(0.0,))  # fmt: skip
    shared = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, space,
                                 progress=False)  # fmt: skip
    own = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, space,
                              progress=False, class_thresholds=True)  # fmt: skip
    pp = own.postprocessing
    assert pp.threshold["hum"] == pytest.approx(0.3)
    assert pp.threshold["bell"] >= 0.5
    for key in ("median_seconds", "min_gap", "onset_shift"):  # everything else stays shared
        assert len(set(getattr(pp, key).values())) == 1, key
        assert getattr(pp, key) == getattr(shared.postprocessing, key), key
    assert own.score > shared.score
    again = evaluate_events(events, probs_to_events(probs, HOP, CLASSES, pp), CLASSES, durations)
    assert again["event_f1"] == pytest.approx(own.score)
    assert "class thresholds" in set(own.trials["stage"])
    # With the per-class scope the flag changes nothing: every setting is per class already.
    a = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, space,
                            progress=False, per_class=True)  # fmt: skip
    b = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, space,
                            progress=False, per_class=True, class_thresholds=True)  # fmt: skip
    assert a.postprocessing.to_dict() == b.postprocessing.to_dict()


def test_class_thresholds_never_lower_the_overall_score() -> None:
    """A class's own best can lower the micro score: `hum` has one true event and three spurious
    ones at the same level, so its own F1 is best at a threshold that finds all four (0.4 > 0),
    while the overall F1 is best without them. The stage is then dropped: the shared
    thresholds are kept."""
    frames, probs, rows, durations = 500, {}, [], {}
    for i in range(6):
        name = f"f{i}.wav"
        p = np.full((frames, 2), 0.05, np.float32)
        for start in (50, 300):  # with dropouts, so that the search beats its start
            p[start : start + 80, 0] = np.where(np.arange(80) % 10 < 2, 0.2, 0.8)
            rows.append((name, start * HOP, (start + 80) * HOP, "bell"))
        if i < 4:  # hum at 0.35: a real event in f0, spurious activity in f1-f3
            p[200:260, 1] = 0.35
            if i == 0:
                rows.append((name, 200 * HOP, 260 * HOP, "hum"))
        probs[name], durations[name] = p, frames * HOP
    events = pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    shared = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, SPACE,
                                 progress=False)  # fmt: skip
    own = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, SPACE,
                              progress=False, class_thresholds=True)  # fmt: skip
    assert shared.score > max(shared.start_score, 0.95)  # every bell, not hum's one event
    trials = own.trials[own.trials.stage == "class thresholds"]
    assert trials["event_f1/hum"].max() > trials["event_f1/hum"].iloc[0]  # hum alone wants 0.3
    assert own.postprocessing.to_dict() == shared.postprocessing.to_dict()
    assert own.score == pytest.approx(shared.score)


def test_keeps_start_when_nothing_helps() -> None:
    probs, events, durations = _split(1)
    # Perfect probabilities: the start already scores 1.0, and ties keep the defaults.
    perfect = {}
    for name, p in probs.items():
        q = np.zeros_like(p)
        for _, row in events[events.filename == name].iterrows():
            c = CLASSES.index(row.event_label)
            q[round(row.onset / HOP) : round(row.offset / HOP), c] = 1.0
        perfect[name] = q
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    result = tune_postprocessing(
        perfect, events, CLASSES, HOP, durations, start, SPACE, progress=False
    )
    assert result.start_score == pytest.approx(1.0)
    assert result.postprocessing is start  # no strict gain: the start is kept


def test_depends_only_on_the_split_it_is_given() -> None:
    """Tuning on validation twice, with any other data around, gives the same choice: the
    function has no other input (the rule that test data never influences a tuned value)."""
    probs, events, durations = _split(2)
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    a = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, SPACE, progress=False)
    b = tune_postprocessing(probs, events, CLASSES, HOP, durations, start, SPACE, progress=False)
    assert a.postprocessing.to_dict() == b.postprocessing.to_dict()


def test_er_criterion_minimises() -> None:
    probs, events, durations = _split(3)
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    result = tune_postprocessing(
        probs, events, CLASSES, HOP, durations, start, SPACE, criterion="event_er", progress=False
    )
    assert result.score <= result.start_score


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"criterion": "accuracy"}, "tuning.criterion"),
        ({"space": "bad-thresholds"}, "tuning.space.thresholds"),
        ({"start": PostProcessing(threshold=[0.4, 0.5])}, "postprocess.threshold"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key) -> None:
    probs, events, durations = _split(4, n_files=1)
    args = {"start": PostProcessing(), "space": SPACE, "progress": False, **kwargs}
    with pytest.raises(SearchError, match=key):
        if args["space"] == "bad-thresholds":
            SearchSpace(thresholds=(0.0, 0.5))
        tune_postprocessing(probs, events, CLASSES, HOP, durations, **args)


def test_shift_stage_finds_a_constant_latency() -> None:
    """Detections that start 0.3 s late (beyond the 0.2 s onset collar) and end 0.3 s late score
    0 events; the shift stage finds the lag, within the grid, and the score becomes perfect."""
    rng = np.random.default_rng(3)
    probs, rows, durations = {}, [], {}
    lag = 15  # frames of 0.02 s
    for i in range(4):
        name = f"f{i}.wav"
        p = np.full((500, 2), 0.05, np.float32)
        for c, label in enumerate(CLASSES):
            start = int(rng.integers(20, 300))
            length = int(rng.integers(60, 120))
            p[start + lag : start + length + lag, c] = 0.9
            rows.append((name, start * HOP, (start + length) * HOP, label))
        probs[name], durations[name] = p, 500 * HOP
    events = pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])
    space = SearchSpace(thresholds=(0.5,), median_seconds=(0.02,), min_duration=(0.0,),
                        min_gap=(0.0,), onset_shift=(0.0, -0.1, -0.3), offset_shift=(0.0, -0.3))  # fmt: skip
    start = PostProcessing(threshold=0.5, median_seconds=0.02)
    result = tune_postprocessing(
        probs, events, CLASSES, HOP, durations, start, space, progress=False
    )
    assert result.start_score == 0.0 and result.score == pytest.approx(1.0)
    pp = result.postprocessing
    assert set(pp.onset_shift.values()) == {-0.3} and set(pp.offset_shift.values()) == {-0.3}
    assert "onset+offset shift" in set(result.trials["stage"])
    # without the shift grid the search cannot fix it
    none = SearchSpace(thresholds=(0.5,), median_seconds=(0.02,), min_duration=(0.0,),
                       min_gap=(0.0,), onset_shift=(0.0,), offset_shift=(0.0,))  # fmt: skip
    assert (
        tune_postprocessing(
            probs, events, CLASSES, HOP, durations, start, none, progress=False
        ).score
        == 0.0
    )


def test_shift_grid_may_be_negative_but_not_empty_or_infinite() -> None:
    assert SearchSpace(onset_shift=(-0.1, 0.1)).onset_shift == (-0.1, 0.1)
    with pytest.raises(SearchError, match=r"tuning\.space\.offset_shift must list"):
        SearchSpace(offset_shift=())
    with pytest.raises(SearchError, match=r"tuning\.space\.onset_shift must be finite"):
        SearchSpace(onset_shift=(float("inf"),))
    with pytest.raises(SearchError, match=r"tuning\.space\.min_gap must be >= 0"):
        SearchSpace(min_gap=(-0.1,))


def _fragments_and_blips(seed: int, n_files: int = 6, frames: int = 1000):
    """`bell`: 2 s events whose detection drops out for 4 frames in every 10 (only a long median
    window joins them); `blip`: 4-frame events that such a window erases."""
    rng = np.random.default_rng(seed)
    probs, rows, durations = {}, [], {}
    for i in range(n_files):
        name = f"f{i}.wav"
        p = rng.uniform(0.0, 0.1, size=(frames, 2)).astype(np.float32)
        for start in range(20, frames - 120, 160):
            seg = np.full(100, 0.8, np.float32)
            seg[np.arange(100) % 10 < 4] = 0.2
            p[start : start + 100, 0] = seg
            rows.append((name, start * HOP, (start + 100) * HOP, "bell"))
        for start in rng.choice(np.arange(10, frames - 10, 100), size=3, replace=False):
            p[start : start + 4, 1] = 0.9
            rows.append((name, start * HOP, (start + 4) * HOP, "blip"))
        probs[name], durations[name] = p, frames * HOP
    events = pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])
    return probs, events, durations


@pytest.mark.parametrize("class_thresholds", [False, True])
def test_segment_f1_guard_keeps_short_events(class_thresholds: bool) -> None:
    """The event-F1 search picks the long window that joins `bell` but erases every `blip`,
    costing segment F1; with max_segment_f1_drop=0.01 it may not."""
    probs, events, durations = _fragments_and_blips(0)
    classes = ["bell", "blip"]
    space = SearchSpace(thresholds=(0.5, 0.7), median_seconds=(0.02, 0.2), min_duration=(0.0,),
                        min_gap=(0.0,), onset_shift=(0.0,), offset_shift=(0.0,))  # fmt: skip
    start = PostProcessing(threshold=0.5, median_seconds=0.02)

    def segment_f1(pp: PostProcessing) -> float:
        estimated = probs_to_events(probs, HOP, classes, pp)
        return evaluate_events(events, estimated, classes, durations)["segment_f1"]

    kwargs = dict(progress=False, class_thresholds=class_thresholds)
    free = tune_postprocessing(probs, events, classes, HOP, durations, start, space, **kwargs)
    assert segment_f1(free.postprocessing) < segment_f1(start) - 0.05  # the trade the guard stops
    guarded = tune_postprocessing(
        probs, events, classes, HOP, durations, start, space, max_segment_f1_drop=0.01, **kwargs
    )
    assert segment_f1(guarded.postprocessing) >= segment_f1(start) - 0.01
    median = guarded.postprocessing.median_seconds
    assert (median["blip"] if isinstance(median, dict) else median) == pytest.approx(0.02)
    assert "segment_f1" in guarded.trials.columns


@pytest.mark.parametrize("drop", [-0.1, 1.5, "a lot", True])
def test_segment_f1_guard_must_be_a_fraction(drop) -> None:
    from sed.postprocess_search import Tuning

    with pytest.raises(SearchError, match="tuning.max_segment_f1_drop"):
        Tuning(max_segment_f1_drop=drop)
