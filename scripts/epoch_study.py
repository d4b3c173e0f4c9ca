"""Which validation criterion picks the epoch with the best test events? (issue 10, section 4)

    python scripts/epoch_study.py RUN_DIR [RUN_DIR ...] [--out epoch_study.csv] [--every 1]

Each RUN_DIR is a `sed.train` run made with `trainer.keep_every=K` (and, to see the whole curve,
a large `trainer.patience`), so that checkpoints/epoch_NNNN.pt holds the model after epoch NNNN.
For every kept epoch the script computes the free-running probabilities of the validation and
test splits once and scores:

- the validation criteria a run could monitor: loss, frame F1 (fixed post-processing), event F1
  (fixed post-processing: threshold 0.5, 0.3 s median, as training logs it), event F1 after
  post-processing tuned on validation (the default search, `sed.postprocess_search.Tuning()`), PSDS1;
- the test events a user would get from that epoch: event F1 / ER with the post-processing
  tuned on validation (the run's final evaluation path), and segment F1.

It writes one row per (run, epoch) and then, for each criterion and each epoch budget (the
first N epochs of the run, which with a constant learning rate are exactly the states a run of
N epochs passes through), the test event F1 of the epoch the criterion would keep, averaged over
runs. Test scores are only read out here: nothing is chosen by them inside a run.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from sed.evaluate import data_paths, trained_splits
from sed.inference import load_trained, predict_files
from sed.outputs import evaluate_split, split_durations
from sed.postprocess import PostProcessing
from sed.postprocess_search import Tuning, tune_postprocessing

CRITERIA = {  # column -> higher is better
    "val_loss": False,
    "val_frame_f1": True,
    "val_event_f1_fixed": True,
    "val_event_f1_tuned": True,
    "val_psds1": True,
}


def epoch_rows(run_dir: Path, every: int) -> list[dict[str, float]]:
    kept = sorted((run_dir / "checkpoints").glob("epoch_*.pt"))
    if not kept:
        raise SystemExit(f"{run_dir}/checkpoints has no epoch_*.pt: train with trainer.keep_every")
    first = load_trained(kept[0], torch.device("cpu"))
    cfg = OmegaConf.create(first.config_yaml)
    root, cache_dir = data_paths(OmegaConf.create({}), cfg)
    classes, data = trained_splits(first, root, cache_dir, ("validation", "test"))
    tuning = Tuning()  # the default search, whatever the run itself used
    fixed = PostProcessing.from_dict(OmegaConf.to_container(cfg.postprocess, resolve=True))
    hop = first.hop_seconds
    val, test = data["validation"], data["test"]
    rows = []
    for path in kept:
        epoch = int(re.findall(r"\d+", path.stem)[0])
        if epoch % every:
            continue
        trained = first if path == kept[0] else load_trained(path, torch.device("cpu"))
        probs, losses = {}, {}
        for split, d in data.items():
            probs[split], losses[split] = predict_files(
                trained.model, d.features, d.filenames, torch.device("cpu"),
                batch_size=16, amp=False, targets=d.targets,
            )  # fmt: skip
        val_fixed, _ = evaluate_split(
            val, probs["validation"], classes, hop, fixed, classwise=False
        )
        tuned = tune_postprocessing(
            probs["validation"], val.events, classes, hop, split_durations(val, hop),
            start=fixed, space=tuning.space, criterion=tuning.criterion,
            per_class=tuning.per_class, class_thresholds=tuning.class_thresholds,
            progress=False,
        ).postprocessing  # fmt: skip
        val_tuned, _ = evaluate_split(
            val, probs["validation"], classes, hop, tuned, psds=False, classwise=False
        )
        test_tuned, _ = evaluate_split(
            test, probs["test"], classes, hop, tuned, psds=False, classwise=False
        )
        rows.append(
            {
                "run": str(run_dir),
                "epoch": epoch,
                "val_loss": losses["validation"],
                "val_frame_f1": val_fixed["frame_f1"],
                "val_event_f1_fixed": val_fixed["event_f1"],
                "val_event_f1_tuned": val_tuned["event_f1"],
                "val_psds1": val_fixed["psds1"],
                "test_event_f1": test_tuned["event_f1"],
                "test_event_er": test_tuned["event_er"],
                "test_segment_f1": test_tuned["segment_f1"],
            }
        )
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in rows[-1].items()), flush=True)  # fmt: skip
    return rows


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per criterion and epoch budget: mean over runs of the test event F1 / ER at the epoch the
    criterion keeps, and the mean within-run Spearman correlation with test event F1."""
    out = []
    budgets = sorted({int(b) for b in (40, 60, table.epoch.max()) if b <= table.epoch.max()})
    for name, higher in CRITERIA.items():
        for budget in budgets:
            picked, rho = [], []
            for _, run in table[table.epoch <= budget].groupby("run"):
                values = run[name] if higher else -run[name]
                best = run.loc[values.idxmax()]  # the first best epoch, as training keeps it
                picked.append(best)
                rho.append(
                    run[name].corr(run.test_event_f1, method="spearman") * (1 if higher else -1)
                )
            picked = pd.DataFrame(picked)
            out.append(
                {
                    "criterion": name,
                    "epochs": budget,
                    "runs": len(picked),
                    "kept_epoch_mean": picked.epoch.mean(),
                    "test_event_f1": picked.test_event_f1.mean(),
                    "test_event_f1_std": picked.test_event_f1.std(ddof=1),
                    "test_event_er": picked.test_event_er.mean(),
                    "spearman_with_test_event_f1": float(np.nanmean(rho)),
                }
            )
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("epoch_study.csv"))
    parser.add_argument("--every", type=int, default=1, help="score every Nth kept epoch")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="PSDS")
    if args.out.exists():
        table = pd.read_csv(args.out)
        done = set(table.run.astype(str))
        todo = [r for r in args.runs if str(r) not in done]
    else:
        table, todo = pd.DataFrame(), args.runs
    for run_dir in todo:
        rows = pd.DataFrame(epoch_rows(run_dir, args.every))
        table = pd.concat([table, rows], ignore_index=True)
        table.to_csv(args.out, index=False, float_format="%.6f")
    summary = summarise(table)
    summary.to_csv(args.out.with_name(args.out.stem + "_summary.csv"), index=False)
    pd.set_option("display.width", 200)
    print(summary.round(4).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
