"""summary.md's sections as Markdown: the mean ± std table of the settings with the runs that did
not finish (`summary_markdown`) and "Is it better?" (`significance_markdown`), and the table
cells they share. Tables are written by hand: `DataFrame.to_markdown` needs `tabulate`, which is
not a dependency of sed."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sed.report.collect import is_missing, override_columns
from sed.report.compare import COUNTS, STATUS_COUNTS
from sed.report.status import FAILED, FINISHED, INTERRUPTED, RUNNING, UNFINISHED

__all__ = [
    "MARKDOWN_METRICS",
    "markdown_table",
    "relative",
    "significance_markdown",
    "summary_markdown",
    "text",
]

MARKDOWN_METRICS = (
    "test/event_f1",
    "test/event_er",
    "test/segment_f1",
    "test/segment_er",
    "test/frame_f1",
    "test/psds1",
    "best_epoch",
)
_COMPARISON_COLUMNS = ("a", "b", "n_pairs", "n_files", "metric", "difference", "low", "high")


def text(value: Any) -> str:
    """A table cell: absent values as a dash, `|` escaped."""
    if is_missing(value):
        return "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _mean_std(mean: float, std: float) -> str:
    """`0.512 ± 0.034`; only the mean when the std is undefined (one run); a dash for no runs."""
    if isinstance(mean, float) and math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _higher_is_better(metric: str) -> bool:
    """Error rates, losses and times are minimised; F1 and PSDS maximised."""
    return not re.search(r"(_er|loss|seconds)$", metric)


def relative(run_dir: str, root: Path | None) -> str:
    """A run dir relative to the report's root, for the Markdown listing."""
    if root is None:
        return run_dir
    try:
        return Path(run_dir).relative_to(root).as_posix() or "."
    except ValueError:
        return run_dir


def summary_markdown(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    metric: str,
    root: str | Path | None = None,
    plots: Sequence[Path] = (),
    out_dir: str | Path | None = None,
) -> str:
    """summary.md: counts, the `mean ± std` table (metric first, 3 decimals; the failed and
    unfinished runs of each group when some run did not finish, and the interrupted and running
    ones where there are such), settings shared by every run, the runs that did not finish with
    their errors, and links to the plots (relative
    to `out_dir`, where summary.md goes)."""
    root = Path(root) if root is not None else None
    keys = summary.attrs.get("group_by") or [
        c for c in summary.columns if c not in COUNTS and not re.search(r"_(mean|std)$", c)
    ]
    metrics = summary.attrs.get("metrics") or [
        c[:-5] for c in summary.columns if c.endswith("_mean")
    ]
    # The Markdown table keeps the chosen metric and the headline test metrics (summary.csv has
    # every metric); without any headline metric in the table, everything is shown.
    headline = [m for m in metrics if m == metric or m in MARKDOWN_METRICS]
    metrics = sorted(headline or metrics, key=lambda m: m != metric)
    over = summary.attrs.get("over", [])
    counts = runs["status"].value_counts()
    lines = [
        "# Report" + (f": `{root}`" if root is not None else ""),
        "",
        f"{len(runs)} run(s): {counts.get(FINISHED, 0)} finished, {counts.get(FAILED, 0)} failed, "
        f"{counts.get(UNFINISHED, 0)} unfinished"
        + "".join(f", {counts[s]} {s}" for s in (INTERRUPTED, RUNNING) if counts.get(s, 0))
        + ". Cells are mean ± std (ddof=1) over the finished runs of each group (averaged over: "
        f"{', '.join(over) or 'nothing'}); n counts them.",
        "",
    ]
    constant = [k for k in keys if len(summary) > 1 and summary[k].nunique(dropna=False) == 1]
    if constant:
        shared = ", ".join(f"`{k}={text(summary[k].iloc[0])}`" for k in constant)
        lines += [f"Shared by every group: {shared}.", ""]
    shown = [k for k in keys if k not in constant]
    status_columns = _status_columns(summary)
    mean_col = f"{metric}_mean"
    if mean_col in summary.columns and summary[mean_col].notna().any():
        values = summary[mean_col]
        best = summary.loc[values.idxmax() if _higher_is_better(metric) else values.idxmin()]
        setting = ", ".join(f"{k}={text(best[k])}" for k in shown) or "all runs"
        lines += [
            f"Best `{metric}`: **{_mean_std(best[mean_col], best[f'{metric}_std'])}** "
            f"({setting}; n={int(best['n'])}).",
            "",
        ]
    header = [*shown, "n", *status_columns.values(), *metrics]
    rows = []
    for _, row in summary.iterrows():
        cells = [text(row[k]) for k in shown] + [str(int(row["n"]))]
        cells += [str(int(row[column])) for column in status_columns]
        cells += [_mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
        rows.append(cells)
    lines += [markdown_table(header, rows), ""]

    problems = runs[runs["status"] != FINISHED]
    lines += [
        "## Failed and unfinished runs",
        "",
        "*failed*: status.json says so (the error is its message), or, for a run without "
        "status.json, metrics.json unreadable, or missing with a traceback in the run's logs; "
        "*interrupted*: stopped by Ctrl-C (resumable); *running*: status.json says "
        "running (still running, or killed without updating it: SIGKILL, out of memory, out of "
        "time); *unfinished*: no status.json, no metrics.json and no error in the logs (still "
        "running, killed, or crashed without logging its traceback: Hydra prints a job's "
        "exception to stderr only).",
        "",
    ]
    if problems.empty:
        lines += ["None: every run finished.", ""]
    else:
        overrides = override_columns(runs)
        listing = []
        for _, run in problems.iterrows():
            settings = " ".join(f"{k}={text(run[k])}" for k in overrides if not is_missing(run[k]))
            listing.append(
                [
                    f"`{relative(run['run_dir'], root)}`",
                    run["status"],
                    text(settings or "–"),
                    text(run["error"] or "–"),
                ]
            )
        lines += [markdown_table(["run", "status", "overrides", "error"], listing), ""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            link = Path(os.path.relpath(plot, out_dir)).as_posix() if out_dir else plot.as_posix()
            lines += [f"![{plot.stem}]({link})", ""]
    return "\n".join(lines)


def _status_columns(summary: pd.DataFrame) -> dict[str, str]:
    """Count column -> table header of the statuses a summary table shows: none when every run
    finished, else failed and unfinished, and interrupted and running where some run is."""
    totals = {column: summary[column].sum() for column in STATUS_COUNTS.values()}
    if not any(totals.values()):
        return {}
    return {
        column: status
        for status, column in STATUS_COUNTS.items()
        if status in (FAILED, UNFINISHED) or totals[column]
    }


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def significance_markdown(
    intervals: pd.DataFrame, comparisons: pd.DataFrame, metric: str, root: Path | None
) -> list[str]:
    """The "Is it better?" section of summary.md: each run's interval of `metric` (when it is
    bootstrapped) and the paired differences."""
    lines = ["## Is it better?", ""]
    shown = metric if metric in set(intervals["metric"]) else None
    if shown is None and not intervals.empty:
        shown = intervals["metric"].iloc[0]
    if shown is None:
        return [*lines, "No run has per_file/ counts (written by the final evaluation).", ""]
    rows = intervals[intervals["metric"] == shown]
    lines += [
        f"`{shown}` per run with its 95 % BCa bootstrap interval over test files "
        "(intervals.csv has every bootstrapped metric):",
        "",
        markdown_table(
            ["run", shown, "files"],
            [
                [
                    f"`{relative(r['run_dir'], root)}`",
                    f"{r['value']:.3f} [{r['low']:.3f}, {r['high']:.3f}]",
                    str(int(r["n_files"])),
                ]
                for _, r in rows.iterrows()
            ],
        ),
        "",
    ]
    if not comparisons.empty:
        compare = comparisons.attrs.get("compare", "method")
        table = comparisons[comparisons["metric"] == shown]
        others = [c for c in comparisons.columns if c not in _COMPARISON_COLUMNS]
        lines += [
            f"Paired comparisons of `{compare}` (A - B on the same test files of runs with the "
            f"same folds and seeds; 95 % interval; an interval excluding 0 is a difference these "
            f"test files support):",
            "",
            markdown_table(
                [*others, "A", "B", "pairs", f"A - B: {shown}"],
                [
                    [
                        *(text(r[k]) for k in others),
                        text(r["a"]),
                        text(r["b"]),
                        str(int(r["n_pairs"])),
                        _interval(r["difference"], r["low"], r["high"]),
                    ]
                    for _, r in table.iterrows()
                ],
            ),
            "",
        ]
    return lines
