"""Tests for sed.evaluation: equality with sed_eval, frame metrics, PSDS, user errors."""

import math
from functools import partial

import dcase_util
import numpy as np
import pandas as pd
import pytest
import sed_eval

from sed import evaluation, psds
from sed.annotations import COLUMNS, events_to_frames
from sed.evaluation import EvaluationError, classwise_table, evaluate_all, evaluate_events
from sed.frame_metrics import frame_metrics
from sed.postprocess import PostProcessing
from sed.psds import ground_truth_dict, psds_from_scores

CLASSES = ["alarm", "blender", "cat", "dishes", "dog"]


def random_tables(seed: int, n_files: int = 60, clip: float = 10.0):
    """Seeded reference events and an imperfect estimate of them (jittered, dropped, relabelled,
    inserted), with files that have no events on either side, rows in shuffled order."""
    rng = np.random.default_rng(seed)
    ref, est = [], []
    files = [f"clip_{i:03d}.wav" for i in range(n_files)]
    for i, f in enumerate(files):
        kind = i % 6  # 0: no events anywhere, 1: no reference, 2: no estimate, else both
        n_ref = 0 if kind in (0, 1) else int(rng.integers(1, 8))
        for _ in range(n_ref):
            onset = float(rng.uniform(0, clip - 0.2))
            offset = float(min(clip, onset + rng.uniform(0.1, 4.0)))
            label = CLASSES[int(rng.integers(len(CLASSES)))]
            ref.append((f, onset, offset, label))
            if kind == 2 or rng.random() < 0.2:
                continue
            jitter = rng.normal(0, 0.2, size=2)
            e_on = max(0.0, onset + jitter[0])
            e_off = max(e_on + 0.02, offset + jitter[1])
            if rng.random() < 0.15:
                label = CLASSES[int(rng.integers(len(CLASSES)))]
            est.append((f, e_on, e_off, label))
        if kind != 0 and kind != 2:
            for _ in range(int(rng.integers(0, 3))):
                onset = float(rng.uniform(0, clip - 0.5))
                est.append((f, onset, onset + rng.uniform(0.1, 2.0), CLASSES[int(rng.integers(5))]))
    ref = pd.DataFrame(ref, columns=COLUMNS).sample(frac=1, random_state=seed)
    est = pd.DataFrame(est, columns=COLUMNS).sample(frac=1, random_state=seed + 1)
    durations = {f: clip for f in files}
    return ref.reset_index(drop=True), est.reset_index(drop=True), durations


def direct_sed_eval(ref, est, classes, durations=None, empty="zero_score", **event_params):
    """sed_eval used as in its tutorial: one container, filter by file, evaluate file by file."""
    params = {"t_collar": 0.2, "percentage_of_length": 0.2, **event_params}
    reference = dcase_util.containers.MetaDataContainer(ref.to_dict("records"))
    estimated = dcase_util.containers.MetaDataContainer(est.to_dict("records"))
    event_based = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=classes,
        evaluate_onset=True,
        evaluate_offset=True,
        empty_system_output_handling=empty,
        **params,
    )
    segment_based = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=classes, time_resolution=1.0
    )
    segment_based.empty_system_output_handling = empty
    if durations is None:
        files = sorted(set(reference.unique_files) | set(estimated.unique_files))
    else:
        files = sorted(durations)
    for f in files:
        r, e = reference.filter(filename=f), estimated.filter(filename=f)
        event_based.evaluate(reference_event_list=r, estimated_event_list=e)
        segment_based.evaluate(
            reference_event_list=r,
            estimated_event_list=e,
            evaluated_length_seconds=None if durations is None else durations[f],
        )
    return event_based.results(), segment_based.results()


def assert_same(ours: dict, results: dict, prefix: str, classes):
    """Our flat dict equals sed_eval's nested results (overall and class-wise) to 1e-12."""
    overall = results["overall"]
    pairs = {
        "f1": overall["f_measure"]["f_measure"],
        "precision": overall["f_measure"]["precision"],
        "recall": overall["f_measure"]["recall"],
        "er": overall["error_rate"]["error_rate"],
        "substitution_rate": overall["error_rate"]["substitution_rate"],
        "deletion_rate": overall["error_rate"]["deletion_rate"],
        "insertion_rate": overall["error_rate"]["insertion_rate"],
        "f1_macro": results["class_wise_average"]["f_measure"]["f_measure"],
        "er_macro": results["class_wise_average"]["error_rate"]["error_rate"],
    }
    for c in classes:
        cw = results["class_wise"][c]
        pairs[f"f1/{c}"] = cw["f_measure"]["f_measure"]
        pairs[f"precision/{c}"] = cw["f_measure"]["precision"]
        pairs[f"recall/{c}"] = cw["f_measure"]["recall"]
        pairs[f"er/{c}"] = cw["error_rate"]["error_rate"]
        pairs[f"deletion_rate/{c}"] = cw["error_rate"]["deletion_rate"]
        pairs[f"insertion_rate/{c}"] = cw["error_rate"]["insertion_rate"]
        pairs[f"nref/{c}"] = cw["count"]["Nref"]
        pairs[f"nsys/{c}"] = cw["count"]["Nsys"]
    for name, expected in pairs.items():
        got = ours[f"{prefix}_{name}"]
        if math.isnan(expected):
            assert math.isnan(got), (prefix, name, got)
        else:
            assert got == pytest.approx(expected, abs=1e-12, rel=0), (prefix, name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_events_equals_sed_eval_with_durations(seed):
    ref, est, durations = random_tables(seed)
    durations["never_mentioned.wav"] = 7.5  # absent from both tables: a file with no events
    ours = evaluate_events(ref, est, CLASSES, durations)
    event_results, segment_results = direct_sed_eval(ref, est, CLASSES, durations)
    assert_same(ours, event_results, "event", CLASSES)
    assert_same(ours, segment_results, "segment", CLASSES)
    assert 0 < ours["event_f1"] < 1 and 0 < ours["segment_f1"] < 1
    assert ours["event_nref"] == len(ref) and ours["event_nsys"] == len(est)


def test_durations_bound_segment_evaluation():
    ref, est, durations = random_tables(3)
    assert est["offset"].max() > 10.0  # some estimates run past the clips' end
    with_durations = evaluate_events(ref, est, CLASSES, durations)
    # segments end at each file's duration: estimates past it are not counted
    clipped = est.assign(offset=est["offset"].clip(upper=10.0))
    same = evaluate_events(ref, clipped, CLASSES, durations)
    for key in ("segment_f1", "segment_er", "segment_nsys", "segment_insertion_rate"):
        assert same[key] == with_durations[key], key
    longer = {f: 20.0 for f in durations}
    evaluated_longer = evaluate_events(ref, est, CLASSES, longer)
    assert evaluated_longer["segment_nsys"] > with_durations["segment_nsys"]
    _, segment_results = direct_sed_eval(ref, est, CLASSES, longer)
    assert_same(evaluated_longer, segment_results, "segment", CLASSES)
    # a file only in durations adds true negatives only
    extra = evaluate_events(ref, est, CLASSES, {**durations, "quiet.wav": 10.0})
    assert extra["segment_er"] == with_durations["segment_er"]
    assert extra["segment_f1"] == with_durations["segment_f1"]


def test_evaluate_events_equals_sed_eval_without_durations_and_other_params():
    ref, est, _ = random_tables(4)
    ours = evaluate_events(
        ref, est, CLASSES, t_collar=0.5, percentage_of_length=0.5, empty_system_output_handling=None
    )
    event_results, segment_results = direct_sed_eval(
        ref, est, CLASSES, None, empty=None, t_collar=0.5, percentage_of_length=0.5
    )
    assert_same(ours, event_results, "event", CLASSES)
    assert_same(ours, segment_results, "segment", CLASSES)
    dcase = evaluate_events(ref, est, CLASSES)
    assert ours["event_f1"] > dcase["event_f1"]  # wider collars can only match more


def test_empty_system_output():
    ref, _, durations = random_tables(5, n_files=12)
    ours = evaluate_events(ref, None, CLASSES, durations)
    assert ours["event_f1"] == 0.0 and ours["segment_f1"] == 0.0
    assert ours["event_er"] == 1.0 and ours["event_deletion_rate"] == 1.0
    raw = evaluate_events(ref, None, CLASSES, durations, empty_system_output_handling=None)
    assert math.isnan(raw["event_precision"])  # sed_eval's own convention


def test_no_quadratic_filtering(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("MetaDataContainer.filter is linear per call; group once instead")

    ref, est, durations = random_tables(6)
    expected = evaluate_events(ref, est, CLASSES, durations)
    monkeypatch.setattr(dcase_util.containers.MetaDataContainer, "filter", forbidden)
    with pytest.raises(AssertionError, match="linear"):
        direct_sed_eval(ref, est, CLASSES, durations)
    # sed_eval itself filters a file's events by label; only that small call is allowed
    monkeypatch.undo()
    calls = []
    original = dcase_util.containers.MetaDataContainer.filter

    def counting(self, *args, **kwargs):
        calls.append(len(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(dcase_util.containers.MetaDataContainer, "filter", counting)
    assert evaluate_events(ref, est, CLASSES, durations) == expected
    per_file_max = max(ref.groupby("filename").size().max(), est.groupby("filename").size().max())
    assert calls and max(calls) <= per_file_max


def test_classwise_table():
    ref, est, durations = random_tables(7)
    metrics = evaluate_events(ref, est, CLASSES, durations)
    table = classwise_table(metrics, CLASSES)
    assert list(table.index) == CLASSES
    assert table.loc["dog", "event_f1"] == metrics["event_f1/dog"]
    assert table.loc["cat", "segment_er"] == metrics["segment_er/cat"]
    prefixed = classwise_table({f"test/{k}": v for k, v in metrics.items()})
    pd.testing.assert_frame_equal(prefixed, table)


def test_user_errors_name_label_and_file():
    ref, est, durations = random_tables(8, n_files=12)
    bad_label = pd.concat(
        [est, pd.DataFrame([("clip_003.wav", 1.0, 2.0, "helicopter")], columns=COLUMNS)]
    )
    with pytest.raises(EvaluationError, match="helicopter"):
        evaluate_events(ref, bad_label, CLASSES, durations)
    bad_file = pd.concat([est, pd.DataFrame([("ghost.wav", 1.0, 2.0, "dog")], columns=COLUMNS)])
    with pytest.raises(EvaluationError, match=r"estimated.*ghost\.wav.*not in durations"):
        evaluate_events(ref, bad_file, CLASSES, durations)
    backwards = est.copy()
    backwards.loc[0, "offset"] = backwards.loc[0, "onset"] - 1
    with pytest.raises(EvaluationError, match=backwards.loc[0, "filename"]):
        evaluate_events(ref, backwards, CLASSES, durations)
    with pytest.raises(EvaluationError, match="event_label"):
        evaluate_events(ref, est.drop(columns="event_label"), CLASSES, durations)
    with pytest.raises(EvaluationError, match="t_colar"):
        evaluate_events(ref, est, CLASSES, durations, t_colar=0.2)


def test_frame_metrics_hand_computed():
    reference = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]])
    estimated = np.array([[1, 0, 0], [0, 0, 1], [1, 1, 0], [0, 1, 0]])
    # per frame (TP, FN, FP): (1,0,0) (0,2,1) (0,0,2) (1,1,0) -> TP=2, Nref=5, Nsys=5
    # S = 0+1+0+0 = 1, D = 0+1+0+1 = 2, I = 0+0+2+0 = 2
    m = frame_metrics(reference, estimated)
    assert m["frame_precision"] == pytest.approx(0.4)
    assert m["frame_recall"] == pytest.approx(0.4)
    assert m["frame_f1"] == pytest.approx(0.4)
    assert m["frame_substitution_rate"] == pytest.approx(0.2)
    assert m["frame_deletion_rate"] == pytest.approx(0.4)
    assert m["frame_insertion_rate"] == pytest.approx(0.4)
    assert m["frame_er"] == pytest.approx(1.0)
    # masking frame 2 removes its two insertions: P = 2/3, R = 2/5, F1 = 0.5, ER = 3/5
    masked = frame_metrics([reference], [estimated], masks=[np.array([1, 1, 0, 1], bool)])
    assert masked["frame_f1"] == pytest.approx(0.5)
    assert masked["frame_er"] == pytest.approx(0.6)
    # probabilities with a threshold, batched [B, T, C]
    probs = np.stack([estimated * 0.8 + 0.1, reference * 0.8 + 0.1])
    batched = frame_metrics(np.stack([reference, reference]), probs, threshold=0.5)
    assert batched["frame_f1"] == pytest.approx(2 * 7 / (2 * 7 + 3 + 3))
    with pytest.raises(EvaluationError, match="threshold"):
        frame_metrics(reference, estimated * 0.7)


def perfect_case(seed: int = 0, hop: float = 0.1, num_frames: int = 100, n_files: int = 12):
    """Reference events on the frame grid and probabilities exactly 1 on their frames."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_files):
        if i % 4 == 0:
            continue  # files without reference events
        for c in CLASSES[:4]:  # "dog" never occurs
            start = int(rng.integers(0, 70))
            stop = start + int(rng.integers(3, 30))
            rows.append((f"f{i}.wav", start * hop, min(stop, num_frames) * hop, c))
    ref = pd.DataFrame(rows, columns=COLUMNS)
    probs = {
        f"f{i}.wav": events_to_frames(ref[ref.filename == f"f{i}.wav"], num_frames, hop, CLASSES)
        for i in range(n_files)
    }
    return ref, probs, hop


def test_psds_perfect_system_is_one_and_worse_is_lower():
    ref, probs, hop = perfect_case()
    classes = CLASSES[:4]
    perfect = psds_from_scores({f: p[:, :4] for f, p in probs.items()}, hop, ref, None, classes)
    assert perfect["psds1"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["psds2"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["collar_f1"] == pytest.approx(1.0)
    # shifting every score by 4 frames (0.4 s) breaks the 0.7 intersection criteria for short
    # events and the collars; random false alarms hurt PSDS2 as well
    rng = np.random.default_rng(1)
    worse = {
        f: np.clip(np.roll(p[:, :4], 4, axis=0) + 0.6 * rng.random(p[:, :4].shape), 0, 1)
        for f, p in probs.items()
    }
    degraded = psds_from_scores(worse, hop, ref, None, classes)
    assert degraded["psds1"] < 0.9 and degraded["psds2"] < 0.95
    assert degraded["collar_f1"] < 0.9


def test_psds_with_one_class_that_has_events():
    """A split (or a data set) where one class alone has reference events: PSDS2's
    cross-trigger term is undefined, so it is left out with a warning instead of crashing
    inside sed_scores_eval."""
    ref, probs, hop = perfect_case()
    label = ref["event_label"].iloc[0]
    only = ref[ref["event_label"] == label]
    column = CLASSES.index(label)
    with pytest.warns(UserWarning, match="cross-trigger"):
        values = psds_from_scores(
            {f: p[:, [column]] for f, p in probs.items()}, hop, only, None, [label]
        )
    assert values["psds1"] == pytest.approx(1.0, abs=1e-12)
    assert values["psds2"] == pytest.approx(1.0, abs=1e-12)


def test_psds_handles_files_and_classes_without_events():
    ref, probs, hop = perfect_case(seed=2)
    durations = {f: len(p) * hop for f, p in probs.items()}
    # "dog" has no reference events: PSDS is undefined for it, so it is left out (with a warning)
    with pytest.warns(UserWarning, match="dog"):
        values = psds_from_scores(probs, hop, ref, durations, CLASSES, classwise=True)
    assert values["psds1"] == pytest.approx(1.0) and values["psds2"] == pytest.approx(1.0)
    assert values["psds1/alarm"] == pytest.approx(1.0)
    assert math.isnan(values["psds1/dog"])
    with pytest.raises(EvaluationError, match="missing.wav"):
        psds_from_scores(probs, hop, ref, {**durations, "missing.wav": 10.0}, CLASSES)
    with pytest.warns(UserWarning, match="no reference events"):
        nothing = psds_from_scores(probs, hop, ref.iloc[:0], durations, CLASSES)
    assert math.isnan(nothing["psds1"])


def test_ground_truth_merges_connected_events():
    ref = pd.DataFrame(
        [("a.wav", 0.0, 1.0, "dog"), ("a.wav", 1.0, 2.0, "dog"), ("a.wav", 1.5, 2.5, "cat")],
        columns=COLUMNS,
    )
    gt = ground_truth_dict(ref, CLASSES, ["a.wav", "b.wav"])
    assert gt == {"a.wav": [(1.5, 2.5, "cat"), (0.0, 2.0, "dog")], "b.wav": []}


def test_evaluate_all_perfect_and_keys():
    ref, probs, hop = perfect_case(seed=3)
    with pytest.warns(UserWarning, match="dog"):
        metrics = evaluate_all(
            ref, probs, hop, CLASSES, postprocessing=PostProcessing(median_frames=3)
        )
    for key in ("event_f1", "segment_f1", "frame_f1", "collar_f1"):
        assert metrics[key] == pytest.approx(1.0), key
    for key in ("event_er", "segment_er", "frame_er"):
        assert metrics[key] == 0.0, key
    assert "psds1" in metrics and "psds2" in metrics and "event_f1/dog" in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    with pytest.raises(EvaluationError, match="f1.wav"):
        evaluate_all(ref, {f: p for f, p in probs.items() if f != "f1.wav"}, hop, CLASSES)


# ------------------------------------------------------- PSDS statistics per detection (fast)


def scored_files(seed: int, hop: float = 0.02):
    """Files of every kind of score curve (random, ties, smooth, near-perfect, quantised) with
    merged reference events of every length (one frame, short ones close together, long)."""
    rng = np.random.default_rng(seed)
    classes = CLASSES[:3]
    probs, gt = {}, {}
    for i, kind in enumerate(["random", "ties", "smooth", "good", "good", "ties", "none"]):
        frames = int(rng.integers(20, 250))
        events = []
        for c in classes:
            t = rng.uniform(0, 1)
            while kind != "none":
                t += rng.uniform(0.05, 2)
                d = rng.choice([hop, 0.1, 0.3, rng.uniform(0.05, 2)])
                if t + d > frames * hop:
                    break
                events.append((f"f{i}", round(t, 3), round(t + d, 3), c))
                t += d + rng.choice([0.0, 0.05, 0.5])  # touching events get merged
        ref = pd.DataFrame(events, columns=COLUMNS)
        noise = rng.random((frames, 3))
        if kind == "smooth":
            p = 1 / (1 + np.exp(-np.cumsum(rng.normal(size=(frames, 3)), 0) / 3))
        elif kind == "good":
            truth = events_to_frames(ref, frames, hop, classes)
            p = np.clip(np.roll(truth, int(rng.integers(-3, 4)), 0) * 0.7 + 0.4 * noise, 0, 1)
        else:
            p = np.round(noise, 1) if kind == "ties" else noise
        probs[f"f{i}"] = p.astype(np.float32)
        gt.update(ground_truth_dict(ref, classes, [f"f{i}"]))
    return probs, gt, classes, hop


@pytest.mark.parametrize("seed", range(4))
def test_statistics_per_detection_equal_sed_scores_eval(seed):
    """The intermediate statistics of every scenario at every threshold are sed_scores_eval's."""
    from sed_scores_eval.base_modules.statistics import (
        accumulated_intermediate_statistics_from_deltas as accumulate,
    )
    from sed_scores_eval.collar_based import intermediate_statistics as collar
    from sed_scores_eval.intersection_based import intermediate_statistics as intersection
    from sed_scores_eval.utils.nested import flatten

    from sed.psds import COLLAR_PARAMS, PSDS1, PSDS2, score_dataframes
    from sed.score_stats import collar_statistics, intersection_statistics, score_deltas

    probs, gt, classes, hop = scored_files(seed)
    scores = score_dataframes(probs, hop, classes)
    criteria = [{k: s[k] for k in ("dtc_threshold", "gtc_threshold", "cttc_threshold")}
                for s in (PSDS1, PSDS2)]  # fmt: skip
    ours = score_deltas(probs, hop, gt, classes, {
        "psds1": partial(intersection_statistics, **criteria[0]),
        "psds2": partial(intersection_statistics, **criteria[1]),
        "collar": partial(collar_statistics, **COLLAR_PARAMS),
    })  # fmt: skip
    theirs = {
        "psds1": intersection.intermediate_statistics_deltas(scores, gt, **criteria[0]),
        "psds2": intersection.intermediate_statistics_deltas(scores, gt, **criteria[1]),
        "collar": collar.intermediate_statistics_deltas(scores, gt, **COLLAR_PARAMS),
    }
    for name in ours:
        a, b = accumulate(ours[name]), accumulate(theirs[name])
        for c in classes:
            (sa, va), (sb, vb) = a[c], b[c]
            thresholds = np.union1d(sa, sb)
            ia, ib = np.searchsorted(sa, thresholds), np.searchsorted(sb, thresholds)
            va, vb = flatten(va, sep="/"), flatten(vb, sep="/")
            assert va.keys() == vb.keys()
            for key in va:
                np.testing.assert_array_equal(va[key][ia], vb[key][ib], err_msg=f"{name} {c} {key}")


def test_psds_from_scores_equals_sed_scores_eval_itself():
    from sed_scores_eval import collar_based, intersection_based

    from sed.psds import COLLAR_PARAMS, PSDS1, PSDS2, score_dataframes

    ref, truth, hop = perfect_case(seed=5)
    rng = np.random.default_rng(5)
    classes = CLASSES[:4]  # "dog" has no reference events
    probs = {f: np.clip(np.roll(p[:, :4], 2, 0) * 0.6 + 0.5 * rng.random((len(p), 4)), 0, 1)
             for f, p in truth.items()}  # fmt: skip
    gt = ground_truth_dict(ref, classes, list(probs))
    durations = {f: len(p) * hop for f, p in probs.items()}
    scores = score_dataframes(probs, hop, classes)
    got = psds_from_scores(probs, hop, ref, durations, classes, classwise=True, num_jobs=2)
    for name, settings in (("psds1", PSDS1), ("psds2", PSDS2)):
        value, per_class, *_ = intersection_based.psds(
            scores=scores, ground_truth=gt, audio_durations=durations, unit_of_time="hour",
            **settings,
        )  # fmt: skip
        assert got[name] == float(value)
        assert all(got[f"{name}/{c}"] == float(per_class[c]) for c in classes)
    assert 0 < got["psds1"] < 1
    f, *_ = collar_based.fscore(scores=scores, ground_truth=gt, threshold=0.5, **COLLAR_PARAMS)
    best, *_ = collar_based.best_fscore(scores=scores, ground_truth=gt, **COLLAR_PARAMS)
    assert got["collar_f1"] == float(f["micro_average"])
    assert got["collar_best_f1"] == float(best["macro_average"])


def test_moved_names_stay_importable_from_sed_evaluation() -> None:
    """sed.evaluation still gives the frame and PSDS names its importers (notebooks) use."""
    for name in ("COLLAR_PARAMS", "PSDS1", "PSDS2", "ground_truth_dict", "psds_from_scores"):
        assert getattr(evaluation, name) is getattr(psds, name), name
        assert name in evaluation.__all__, name
    assert evaluation.frame_metrics is frame_metrics and "score_dataframes" in evaluation.__all__
