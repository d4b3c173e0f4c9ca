"""The command line of `python -m sed.report DIR [--metric KEY] [--group-by KEY ...]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sed.errors import ReportError
from sed.report.compare import DEFAULT_OVER
from sed.report.write import report

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m sed.report`."""
    parser = argparse.ArgumentParser(
        prog="python -m sed.report",
        description=(
            "Summarize a run directory or a Hydra multirun/sweep directory: one row per run\n"
            "(runs.csv), mean ± std over seeds and folds per setting (summary.csv, summary.md)\n"
            "and plots of --metric against sampler.gamma / p_min / p_max when they vary."
        ),
        epilog=(
            "run statuses (from the run's status.json, written by the entry points):\n"
            "  finished     status.json says so and metrics.json parses\n"
            "  failed       status.json says so (error: its message), or finished without a\n"
            "               metrics.json, or metrics.json / status.json unreadable\n"
            "  interrupted  stopped by Ctrl-C (resumable)\n"
            "  running      still running, or killed without updating status.json (SIGKILL,\n"
            "               out of memory, out of time)\n"
            "runs without status.json (older, or killed before writing it):\n"
            "  finished     metrics.json parses\n"
            "  failed       metrics.json unreadable, or missing with a traceback in the run's logs\n"
            "  unfinished   no metrics.json and no error logged (running, killed, or crashed\n"
            "               without logging: Hydra prints a job's exception to stderr only)\n"
            "Runs that did not finish are listed in summary.md and printed.\n\n"
            "example:\n"
            "  python -m sed.report outputs/smoke/multiruns/2024-05-01_12-00-00 \\\n"
            "      --metric test/event_f1 --group-by sampler.gamma sampler.p_min"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dir",
        type=Path,
        help="a run dir or a multirun/sweep dir (searched recursively for folders holding .hydra/)",
    )
    parser.add_argument(
        "--metric",
        default="test/event_f1",
        help="metrics.json key to rank settings by and to plot (default: %(default)s)",
    )
    parser.add_argument(
        "--group-by",
        nargs="+",
        metavar="KEY",
        default=None,
        help="override keys to group by (default: every override key and the run's method, "
        "except the --over keys); keys no run overrides are read from .hydra/config.yaml",
    )
    parser.add_argument(
        "--over",
        nargs="*",
        metavar="KEY",
        default=list(DEFAULT_OVER),
        help="keys averaged over when grouping by default (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: DIR/report)"
    )
    parser.add_argument(
        "--compare",
        default="method",
        metavar="KEY",
        help="key whose values are compared pairwise on the same folds and seeds "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples over test files for intervals and comparisons; 0 skips them "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="do not write tensorboard/ (the HParams view of every run)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for a user error, printed without a traceback)."""
    args = build_parser().parse_args(argv)
    try:
        report(
            args.dir,
            metric=args.metric,
            group_by=args.group_by,
            over=args.over,
            out=args.out,
            compare=args.compare,
            n_resamples=args.resamples,
            hparams=not args.no_tensorboard,
        )
    except ReportError as error:
        print(f"sed.report: error: {error}", file=sys.stderr)
        return 2
    return 0
