"""Tables and plots of a run or a sweep: `python -m sed.report DIR [--metric KEY] [--group-by KEY ...]`.

DIR is a run directory or a Hydra multirun/sweep directory; every folder below it (DIR included)
that holds `.hydra/` is a run. A run's status comes from its `status.json` (written by the entry
points): ``finished``, ``failed`` (the `error` column quotes the message), ``interrupted`` or
``running``; a run without one (made before it was written, or killed before it could write it)
is told by its files as before: ``finished`` (metrics.json parses), ``failed`` (metrics.json
unreadable, or missing with a traceback in the run's logs) or ``unfinished`` (neither).
sed.report.status has the rules.

Runs that did not finish are counted per group (`n_failed`, `n_unfinished`, `n_interrupted`,
`n_running`), listed in summary.md and printed: never silently dropped. Output goes to
DIR/report/ by default.

Is it better? For runs whose final evaluation wrote `per_file/SPLIT.csv` (sed_eval's counts per
test file), intervals.csv holds a BCa bootstrap interval over test files of each run's event /
segment F1 and ER, and comparisons.csv the paired comparison of every two values of `--compare`
(default: method) trained with the same other settings on the same folds and seeds: the
difference A - B of the metric pooled over the matched runs' test files, with its interval from
resampling those files (seed-to-seed variation beyond the matched runs is not resampled).
tensorboard/ holds every finished run's overrides and headline metrics for TensorBoard's HParams
view (`tensorboard --logdir DIR/report/tensorboard`).

The package, one module per job: `status` (a run's status), `collect` (finding runs and reading
their files into one table), `compare` (means per setting, bootstrap intervals, paired
comparisons), `provenance` (commits and environments mixed), `markdown` (summary.md's tables),
`hparams` (the TensorBoard view), `write` (`report`: every file), `cli` (the command line).
"""

from sed.errors import ReportError
from sed.report.cli import build_parser, main
from sed.report.collect import (
    ALWAYS,
    collect_runs,
    find_run_dirs,
    metric_columns,
    override_columns,
    parse_override,
)
from sed.report.compare import DEFAULT_OVER, confidence_intervals, paired_comparisons, summarize
from sed.report.hparams import write_hparams
from sed.report.markdown import significance_markdown, summary_markdown
from sed.report.provenance import provenance_markdown, provenance_warnings
from sed.report.status import STATUSES, run_status
from sed.report.write import SWEEP_PARAMS, Report, report

__all__ = [
    "ALWAYS",
    "DEFAULT_OVER",
    "STATUSES",
    "Report",
    "ReportError",
    "SWEEP_PARAMS",
    "build_parser",
    "collect_runs",
    "confidence_intervals",
    "find_run_dirs",
    "main",
    "metric_columns",
    "override_columns",
    "paired_comparisons",
    "parse_override",
    "provenance_markdown",
    "provenance_warnings",
    "report",
    "run_status",
    "significance_markdown",
    "summarize",
    "summary_markdown",
    "write_hparams",
]
