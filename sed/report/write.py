"""`report`: a run or sweep directory -> the report's files under DIR/report: runs.csv,
summary.csv, summary.md, intervals.csv, comparisons.csv, the sweep plot and tensorboard/."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sed.errors import ReportError
from sed.io import write_csv, write_text
from sed.report.collect import collect_runs
from sed.report.compare import DEFAULT_OVER, confidence_intervals, paired_comparisons, summarize
from sed.report.hparams import write_hparams
from sed.report.markdown import significance_markdown, summary_markdown
from sed.report.provenance import provenance_markdown, provenance_warnings
from sed.report.status import FINISHED

__all__ = ["SWEEP_PARAMS", "Report", "report"]

# Swept parameters plotted against; `gamma` is the top-level key that sampler.gamma reads.
SWEEP_PARAMS = ("gamma", "sampler.gamma", "sampler.p_min", "sampler.p_max")


@dataclass
class Report:
    """What `report` produced: the tables and the files it wrote."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)


def report(
    directory: str | Path,
    metric: str = "test/event_f1",
    group_by: Sequence[str] | None = None,
    over: Sequence[str] = DEFAULT_OVER,
    out: str | Path | None = None,
    verbose: bool = True,
    compare: str = "method",
    n_resamples: int = 1000,
    hparams: bool = True,
) -> Report:
    """Collect, summarize and write runs.csv, summary.csv, summary.md and the sweep plots of
    `metric` against sampler.gamma / p_min / p_max (those that vary) under `out` (DIR/report).
    Runs are grouped by `group_by`, by default by every override (and the `method` of their
    config) except the `over` keys. With `n_resamples` > 0, intervals.csv and comparisons.csv
    (paired by the `over` keys, `compare` against `compare`) from the runs' per-file counts of
    the metric's split; with `hparams`, tensorboard/ for the HParams view."""
    from sed.plots import plot_metric_vs_params

    root = Path(directory).resolve()
    runs = collect_runs(root, config_keys=group_by or ())
    summary = summarize(runs, group_by=group_by, over=over)
    available = summary.attrs["metrics"]
    if (runs["status"] == FINISHED).any() and metric not in available:
        raise ReportError(f"--metric {metric!r} is in no metrics.json; available: {available}")
    out_dir = Path(out) if out is not None else root / "report"
    keys = summary.attrs["group_by"]
    plots = []
    done = summary[summary["n"] > 0]
    params = [p for p in SWEEP_PARAMS if p in keys and done[p].nunique(dropna=False) > 1]
    if params and metric in available:
        name = re.sub(r"[^\w.-]+", "_", metric)
        path = out_dir / "plots" / f"{name}_vs_{'_'.join(p.split('.')[-1] for p in params)}.png"
        plot_metric_vs_params(done, metric, params, path, by=[k for k in keys if k not in params])
        plots.append(path)
    text = summary_markdown(runs, summary, metric, root=root, plots=plots, out_dir=out_dir)
    warnings = provenance_warnings(runs, summary)
    text += "\n" + "\n".join(provenance_markdown(runs, warnings))
    files = [
        write_csv(runs, out_dir / "runs.csv", index=False),
        write_csv(summary, out_dir / "summary.csv", index=False),
    ]
    if n_resamples > 0:
        split = metric.split("/")[0] if "/" in metric else "test"
        intervals = confidence_intervals(runs, split, n_resamples=n_resamples)
        comparisons = paired_comparisons(runs, compare, over, split, n_resamples=n_resamples)
        text += "\n" + "\n".join(significance_markdown(intervals, comparisons, metric, root))
        files.append(write_csv(intervals, out_dir / "intervals.csv", index=False))
        if not comparisons.empty:
            files.append(write_csv(comparisons, out_dir / "comparisons.csv", index=False))
    files.append(write_text(text + "\n", out_dir / "summary.md"))
    if hparams and (runs["status"] == FINISHED).any():
        files.append(write_hparams(runs, out_dir / "tensorboard", root))
    if verbose:
        print(text)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        problems = runs[runs["status"] != FINISHED]
        for _, run in problems.iterrows():
            print(
                f"{run['status'].upper()}: {run['run_dir']}"
                + (f" ({run['error']})" if run["error"] else ""),
                file=sys.stderr,
            )
        print(f"wrote {', '.join(str(f) for f in files + plots)}")
    return Report(runs, summary, out_dir, files, plots)
