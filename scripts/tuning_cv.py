"""Does a post-processing search generalise? Cross-validation inside the validation split.

    python scripts/tuning_cv.py RUN_DIR [RUN_DIR ...] [--repeats 2] [--seed 0]

For each finished `sed.train` run, the validation split's free-running probabilities are
computed once from checkpoints/best.pt. The files are then split in two halves at random
(`--repeats` times); each search scope is tuned on one half and scored on the other, and the
held-out scores are averaged. The scopes compared:

- `per_class`: each class its own threshold, median window, minimum duration, gap and shifts;
- `per_class_short_gap`: per class, minimum gap limited to 0.4 s and no boundary shift (the
  search before the shared scope);
- `shared_no_shift`: one setting for all classes without the onset / offset shift (the search
  before the shift);
- `shared`: one setting for all classes, shifts included (the search before class thresholds);
- `shared_class_thresholds`: `shared`, then each class its own threshold;
- `guard_0.01`: `shared_class_thresholds` with the segment-F1 guard at 0.01 (no candidate lowers
  segment F1 by more than 0.01 below the fixed settings'; the default until issue 20's last
  session);
- `default` (alias `strict_segment`): the guard at 0, no segment-F1 loss allowed at all
  (configs/tuning/default.yaml);
- `coarse`: one threshold (0.3 / 0.5 / 0.7) and median window (0.1 / 0.3 / 0.7 s) for all
  classes, nothing else;
- `fixed`: no search (threshold 0.5, median 0.3 s).

`--scopes` picks some of them. Held-out segment F1 is reported beside event F1 and ER.

Only the validation split is read, so the choice it informs never sees test data.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from sed.evaluate import data_paths, trained_splits
from sed.evaluation import evaluate_events
from sed.inference import load_trained, predict_files
from sed.outputs import split_durations
from sed.postprocess import PostProcessing, probs_to_events
from sed.postprocess_search import SearchSpace, tune_postprocessing

NO_SHIFT = {"onset_shift": (0.0,), "offset_shift": (0.0,)}
SCOPES = {  # name -> (per_class, class_thresholds, max_segment_f1_drop, space)
    "per_class": (True, False, None, SearchSpace()),
    "per_class_short_gap": (
        True, False, None, SearchSpace(min_gap=(0.0, 0.1, 0.2, 0.4), **NO_SHIFT),
    ),
    "shared_no_shift": (False, False, None, SearchSpace(**NO_SHIFT)),
    "shared": (False, False, None, SearchSpace()),
    "shared_class_thresholds": (False, True, None, SearchSpace()),
    "guard_0.01": (False, True, 0.01, SearchSpace()),
    "default": (False, True, 0.0, SearchSpace()),
    "strict_segment": (False, True, 0.0, SearchSpace()),
    "coarse": (
        False, False, None,
        SearchSpace(thresholds=(0.3, 0.5, 0.7), median_seconds=(0.1, 0.3, 0.7),
                    min_duration=(0.0,), min_gap=(0.0,), **NO_SHIFT),
    ),
    "fixed": (
        False, False, None,
        SearchSpace(thresholds=(0.5,), median_seconds=(0.3,), min_duration=(0.0,),
                    min_gap=(0.0,), **NO_SHIFT),
    ),
}  # fmt: skip


def validation(run_dir: Path) -> tuple[dict, pd.DataFrame, dict, list[str], float]:
    trained = load_trained(run_dir / "checkpoints" / "best.pt", torch.device("cpu"))
    root, cache_dir = data_paths(OmegaConf.create({}), OmegaConf.create(trained.config_yaml))
    classes, data = trained_splits(trained, root, cache_dir, ("validation",))
    val = data["validation"]
    probs, _ = predict_files(
        trained.model, val.features, val.filenames, torch.device("cpu"), batch_size=16, amp=False
    )
    return (
        probs,
        val.events,
        split_durations(val, trained.hop_seconds),
        classes,
        trained.hop_seconds,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("tuning_cv.csv"))
    parser.add_argument("--scopes", default=",".join(SCOPES), help="(default: all)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="PSDS")
    start = PostProcessing(threshold=0.5, median_seconds=0.3)
    rows = []
    for run_dir in args.runs:
        probs, events, durations, classes, hop = validation(run_dir)
        files = sorted(probs)
        rng = np.random.default_rng(args.seed)
        halves = []
        for _ in range(args.repeats):
            order = list(rng.permutation(files))
            a, b = order[: len(order) // 2], order[len(order) // 2 :]
            halves += [(a, b), (b, a)]

        def part(names, probs=probs, events=events, durations=durations):
            return (
                {f: probs[f] for f in names},
                events[events.filename.isin(names)],
                {f: durations[f] for f in names},
            )

        for scope in args.scopes.split(","):
            per_class, class_thresholds, drop, space = SCOPES[scope]
            scores = []
            for fit, held in halves:
                p, e, d = part(fit)
                pp = tune_postprocessing(
                    p, e, classes, hop, d, start, space, per_class=per_class,
                    class_thresholds=class_thresholds, max_segment_f1_drop=drop, progress=False,
                ).postprocessing  # fmt: skip
                p, e, d = part(held)
                m = evaluate_events(e, probs_to_events(p, hop, classes, pp, d), classes, d)
                scores.append((m["event_f1"], m["event_er"], m["segment_f1"]))
            f1, er, seg = np.mean(scores, axis=0)
            rows.append({"run": str(run_dir), "scope": scope, "held_out_event_f1": f1,
                         "held_out_event_er": er, "held_out_segment_f1": seg})  # fmt: skip
            print(f"{run_dir} {scope:24s} held-out event F1 {f1:.3f} ER {er:.3f} "
                  f"segment F1 {seg:.3f}", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False, float_format="%.6f")
    columns = ["held_out_event_f1", "held_out_event_er", "held_out_segment_f1"]
    summary = table.groupby("scope", sort=False)[columns].agg(["mean", "std"])
    print(summary.round(3).to_string())


if __name__ == "__main__":
    sys.exit(main())
