"""`python -m sed.data.synthetic ROOT [--FLAG VALUE ...]`: generate the synthetic set at ROOT.

The flags are generated from SyntheticParams' fields (--n-train for n_train, --no-sources for
sources=False, ...), with its defaults and help; a bad value exits 2 naming the parameter.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from sed.data.synthetic.params import SyntheticParams, check_params
from sed.data.synthetic.writing import generate
from sed.errors import SyntheticError

DESCRIPTION = (
    "The embedded default dataset: seeded, procedural polyphonic scenes in the DESIGN folder "
    "format."
)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser: ROOT and one flag per SyntheticParams field."""
    parser = argparse.ArgumentParser(prog="python -m sed.data.synthetic", description=DESCRIPTION)
    parser.add_argument(
        "root", type=Path, help="output folder (replaced if it holds a synthetic set)"
    )
    for spec in fields(SyntheticParams):
        flag = "--" + spec.name.replace("_", "-")
        meta = spec.metadata
        if meta["check"] == "flag":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=spec.default, help=meta["help"]
            )
        elif meta["check"] == "pair":
            parser.add_argument(
                flag,
                type=meta["kind"],
                nargs=2,
                default=spec.default,
                metavar=meta["metavar"],
                help=f"{meta['help']} (default: %(default)s)",
            )
        else:
            parser.add_argument(
                flag,
                type=meta["kind"],
                default=spec.default,
                help=f"{meta['help']} (default: %(default)s)",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: generate the synthetic set at ROOT and say where and how long it took."""
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        params = check_params(
            **{spec.name: getattr(args, spec.name) for spec in fields(SyntheticParams)}
        )
        root = generate(args.root, params)
    except SyntheticError as err:
        parser.error(str(err))
    elapsed = time.perf_counter() - start
    info = json.loads((root / "synthetic.json").read_text())
    files = sum(s["files"] for s in info["stats"].values())
    events = sum(s["events"] for s in info["stats"].values())
    print(f"wrote {files} clips with {events} events to {root.resolve()} in {elapsed:.1f} s")
    return 0
