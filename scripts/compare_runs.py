"""Paired comparison of run folders that were not launched as one sweep: sed.report's paired
bootstrap over test files (stats.paired_bootstrap, matched by seed), with each folder's runs
labelled by the folder's name instead of by their overrides.

    python scripts/compare_runs.py outputs/search/S1=default outputs/search/P=plain [--split test]

Each argument is FOLDER=LABEL; every run below FOLDER (a directory holding .hydra/) gets LABEL.
Prints, for every two labels A < B, A - B of the pooled metric with its 95 % interval, as
`sed.report DIR --compare KEY` does for one sweep.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from sed.report import collect_runs, paired_comparisons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="FOLDER=LABEL")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n-resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    tables = []
    for item in args.folders:
        folder, _, label = item.partition("=")
        runs = collect_runs(folder)
        runs = runs[
            ["run_dir", "status", "error", "commit", "environment", "seed", *runs.attrs["metrics"]]
        ]
        tables.append(runs.assign(label=label))
    runs = pd.concat(tables, ignore_index=True)
    runs.attrs["overrides"] = ["label", "seed"]
    table = paired_comparisons(runs, "label", ("seed",), args.split, n_resamples=args.n_resamples)
    for _, row in table.iterrows():
        print(
            f"{row['a']} - {row['b']}  {row['metric']:<22} {row['difference']:+.3f} "
            f"[{row['low']:+.3f}, {row['high']:+.3f}]  ({row['n_pairs']} seed pairs, "
            f"{row['n_files']} files)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
