"""Benchmark sed.evaluation.evaluate_events against the naive sed_eval tutorial loop.

Seeded random reference / estimated tables of ten-second files (~10 classes, ~5 events per
file). The naive loop filters one big sed_eval container per file, which is quadratic in the
number of events, so it runs on smaller file counts only (``--naive``); every naive run is
checked to give the same numbers as evaluate_events.

    python scripts/bench_evaluation.py [--files 1000] [--naive 100 200 400] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import time

import dcase_util
import numpy as np
import pandas as pd
import sed_eval

from sed.annotations import COLUMNS
from sed.evaluation import evaluate_events

CLIP = 10.0


def make_tables(n_files: int, n_classes: int = 10, events_per_file: float = 5.0, seed: int = 0):
    """Reference events and a noisy estimate of them for n_files ten-second clips."""
    rng = np.random.default_rng(seed)
    classes = [f"class_{i:02d}" for i in range(n_classes)]
    ref, est = [], []
    for i in range(n_files):
        name = f"clip_{i:05d}.wav"
        for _ in range(rng.poisson(events_per_file)):
            onset = rng.uniform(0, CLIP - 0.5)
            offset = min(CLIP, onset + rng.uniform(0.2, 4.0))
            label = classes[rng.integers(n_classes)]
            ref.append((name, onset, offset, label))
            if rng.random() < 0.8:  # detected, with jitter and sometimes the wrong label
                e_on = max(0.0, onset + rng.normal(0, 0.15))
                e_off = max(e_on + 0.05, offset + rng.normal(0, 0.3))
                if rng.random() < 0.1:
                    label = classes[rng.integers(n_classes)]
                est.append((name, e_on, e_off, label))
        if rng.random() < 0.5:  # a false alarm
            onset = rng.uniform(0, CLIP - 1)
            est.append(
                (name, onset, onset + rng.uniform(0.2, 1.0), classes[rng.integers(n_classes)])
            )
    durations = {f"clip_{i:05d}.wav": CLIP for i in range(n_files)}
    return (
        pd.DataFrame(ref, columns=COLUMNS),
        pd.DataFrame(est, columns=COLUMNS),
        durations,
        classes,
    )


def naive(ref: pd.DataFrame, est: pd.DataFrame, durations: dict, classes: list[str]) -> dict:
    """sed_eval as in its tutorial: one container per table, .filter(filename=...) per file."""
    reference = dcase_util.containers.MetaDataContainer(ref.to_dict("records"))
    estimated = dcase_util.containers.MetaDataContainer(est.to_dict("records"))
    event_based = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=classes,
        t_collar=0.2,
        percentage_of_length=0.2,
        evaluate_onset=True,
        evaluate_offset=True,
        empty_system_output_handling="zero_score",
    )
    segment_based = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=classes, time_resolution=1.0
    )
    segment_based.empty_system_output_handling = "zero_score"
    for name in sorted(durations):
        r, e = reference.filter(filename=name), estimated.filter(filename=name)
        event_based.evaluate(reference_event_list=r, estimated_event_list=e)
        segment_based.evaluate(r, e, evaluated_length_seconds=durations[name])
    ev = event_based.results_overall_metrics()
    seg = segment_based.results_overall_metrics()
    return {
        "event_f1": ev["f_measure"]["f_measure"],
        "event_er": ev["error_rate"]["error_rate"],
        "segment_f1": seg["f_measure"]["f_measure"],
        "segment_er": seg["error_rate"]["error_rate"],
    }


def best_of(fn, repeat: int) -> tuple[float, object]:
    """Fastest wall time of `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="files for evaluate_events")
    parser.add_argument("--naive", type=int, nargs="*", default=[100, 200, 400])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    counts = sorted({*args.naive, args.files})
    rows = []
    for n in counts:
        ref, est, durations, classes = make_tables(n)
        fast_s, fast = best_of(
            lambda ref=ref, est=est, d=durations, c=classes: evaluate_events(ref, est, c, d),
            args.repeat,
        )
        naive_s, same = math.nan, ""
        if n in args.naive:
            naive_s, slow = best_of(
                lambda ref=ref, est=est, d=durations, c=classes: naive(ref, est, d, c), 1
            )
            diff = max(abs(fast[k] - slow[k]) for k in slow)
            same = "yes" if diff <= 1e-12 else f"NO ({diff:.1e})"
        rows.append(
            {
                "files": n,
                "ref events": len(ref),
                "est events": len(est),
                "evaluate_events s": fast_s,
                "naive sed_eval s": naive_s,
                "speed-up": naive_s / fast_s,
                "equal to 1e-12": same,
                "event_f1": fast["event_f1"],
                "segment_f1": fast["segment_f1"],
            }
        )
    table = pd.DataFrame(rows)
    measured = table.dropna(subset=["naive sed_eval s"])
    if len(measured) >= 2 and args.files not in args.naive:
        # naive cost ~ a * n^2 + b * n: extrapolate to --files for comparison
        n, t = measured["files"].to_numpy(float), measured["naive sed_eval s"].to_numpy()
        a, b = np.linalg.lstsq(np.stack([n**2, n], axis=1), t, rcond=None)[0]
        print(
            f"naive sed_eval extrapolated to {args.files} files: "
            f"~{a * args.files**2 + b * args.files:.1f} s (fit a*n^2 + b*n)"
        )
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
