"""`python -m sed.data.prepare NAME SRC DEST`: prepare a dataset and print its summary table."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sed.data.prepare.specs import DATASETS
from sed.data.prepare.writing import LINK_MODES, prepare


def summary_table(info: dict) -> str:
    """A plain-text table of files / events per split per fold."""
    lines = [
        f"{info['dataset']}: {len(info['classes'])} classes, {len(info['folds'])} fold(s), "
        f"{info['audio']['files']} recordings ({info['audio']['total_seconds'] / 60:.1f} min) "
        f"in audio_all, links: {info['link_mode']}",
        f"{'fold':>4}  {'split':<10} {'files':>6} {'no-event':>8} {'events':>7} {'minutes':>8}",
    ]
    for fold, parts in info["folds"].items():
        for split, counts in parts.items():
            lines.append(
                f"{fold:>4}  {split:<10} {counts['files']:>6} "
                f"{counts['files_without_events']:>8} {counts['events']:>7} "
                f"{counts['seconds'] / 60:>8.1f}"
            )
    lines += [f"note: {note}" for note in info["notes"]]
    lines += [f"warning: {warning}" for warning in info["warnings"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prepare, print the summary table; user errors exit 2 with one message."""
    parser = argparse.ArgumentParser(
        prog="python -m sed.data.prepare",
        description="Convert downloaded TUT sound event datasets into the sed dataset folder "
        "format (DEST/fold{k}/audio/{train,validation,test}, DEST/fold{k}/metadata/*.tsv).",
        epilog="datasets and the archives SRC should hold (or their extracted contents):\n"
        + "\n".join(
            f"  {s.name}: {s.title}\n      {s.url}\n      {', '.join(s.archives)}"
            for s in DATASETS.values()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", choices=sorted(DATASETS))
    parser.add_argument("src", metavar="SRC", help="folder with the downloaded archives")
    parser.add_argument("dest", metavar="DEST", help="output folder")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of each fold's training recordings held out for validation (default 0.2; "
        "not used by tut2016_synthetic, which has an official validation set)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation draw")
    parser.add_argument(
        "--link",
        choices=LINK_MODES,
        default="symlink",
        help="how fold folders refer to DEST/audio_all (falls back along symlink, hardlink, copy)",
    )
    parser.add_argument(
        "--allow-unknown-labels",
        action="store_true",
        help="keep event labels outside the documented class list instead of failing",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        info = prepare(
            args.name,
            args.src,
            args.dest,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            link=args.link,
            allow_unknown_labels=args.allow_unknown_labels,
            progress=not args.quiet,
        )
    except ValueError as error:  # PrepareError, AnnotationError, AudioError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_table(info))
    print(f"wrote {Path(args.dest) / 'prepared.json'}")
    return 0
