"""Oracle ceiling of the embedded synthetic set: how well a detector that knows each class's energy
can do.

For every clip the generator is re-run from the set's synthetic.json (it is deterministic) to
recover the isolated events, checked against the WAV on disk. For each class c and frame t the
oracle reads E_c(t), the class-band power of the sum of the class's own events, and R_c(t), the
class-band power of everything else in the recorded clip (the WAV minus those events), both
with `sed.data.synthetic.band_energy` on the recipe's 20 ms feature grid. It decides "active"
where 10 log10(E_c / R_c) >= theta, merges runs closer than the generator's MERGE_GAP_SECONDS
(`sed.postprocess.frames_to_events`) and is scored with `sed.evaluation.evaluate_events`.
theta is chosen on validation (best event F1) from a grid around AUDIBLE_DB and applied to test.

This is a ceiling for detectors of the audible extent (perfect source separation, the labelling
rule's own statistic, only the frame grid differs); with --annotations pointing at a set written
by an older generator (same audio, other labels) it shows how far those labels are from what
can be heard.

    python scripts/oracle_ceiling.py [ROOT] [--annotations OTHER_ROOT] [--hop 0.02]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from sed.annotations import read_durations, read_tsv
from sed.data import synthetic
from sed.evaluation import evaluate_events
from sed.postprocess import frames_to_events

OFFSETS_DB = tuple(range(-6, 7, 2))  # theta grid (dB), relative to AUDIBLE_DB


def class_ratios(root: Path, split: str, hop_seconds: float) -> dict[str, np.ndarray]:
    """Per clip of `split`: [T, C] class-to-rest power ratio in dB on the hop_seconds grid."""
    info_path = root / "synthetic.json"
    try:
        info = json.loads(info_path.read_text())
        params = dict(info["params"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"{info_path}: not a generated synthetic set ({err})") from None
    if info.get("version", 0) < 3:  # written before the sources parameter: version 2's draws
        params.setdefault("sources", False)
    sr = params["sample_rate"]
    hop = int(round(hop_seconds * sr))
    floor = 10 ** (synthetic.FLOOR_DB / 10)
    out = {}
    for index in range(params[f"n_{split}"]):
        name = synthetic.clip_name(split, index)
        audio, rate = sf.read(root / "audio" / split / name, dtype="float64")
        scene = synthetic.render_scene(split, index, **params)
        if rate != sr or audio.shape != scene.audio.shape:
            raise SystemExit(
                f"{root / 'audio' / split / name}: shape or rate differs from its params"
            )
        if np.max(np.abs(audio - scene.audio), initial=0.0) > 1.01 / 32768:
            raise SystemExit(
                f"{root / 'audio' / split / name}: audio differs from what the generator renders "
                f"for {info_path} (written by another generator version?); regenerate the set"
            )
        ratios = np.full((-(-len(audio) // hop), len(synthetic.CLASSES)), -np.inf)
        for c, label in enumerate(synthetic.CLASSES):
            own = np.zeros(len(audio))
            for src in scene.sources:
                if src.label == label:
                    own[src.start : src.stop] += src.signal
            if not own.any():
                continue
            band = synthetic.class_band(label, sr)
            event = synthetic.band_energy(own, sr, band, hop)
            rest = synthetic.band_energy(audio - own, sr, band, hop)
            with np.errstate(divide="ignore"):
                ratios[:, c] = 10 * np.log10(event / np.maximum(rest, floor))
        out[name] = ratios
    return out


def oracle_events(ratios: dict[str, np.ndarray], theta: float, hop_seconds: float) -> pd.DataFrame:
    """Event table of the oracle deciding `ratio >= theta` per frame."""
    tables = [
        frames_to_events(
            (r >= theta).astype(np.float32),
            hop_seconds,
            synthetic.CLASSES,
            min_gap=synthetic.MERGE_GAP_SECONDS,
            filename=name,
        )
        for name, r in ratios.items()
    ]
    return pd.concat(tables, ignore_index=True)


def score(root: Path, split: str, estimated: pd.DataFrame) -> dict[str, float]:
    """evaluate_events of `estimated` against root's annotations of split."""
    reference = read_tsv(root / "metadata" / f"{split}.tsv", classes=synthetic.CLASSES)
    durations = read_durations(root / "metadata" / f"{split}_durations.tsv")
    return evaluate_events(reference, estimated, synthetic.CLASSES, durations=durations)


def main(argv: list[str] | None = None) -> int:
    """Print the oracle's event F1 / ER and segment F1 on validation and test."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("data/synthetic"))
    parser.add_argument(
        "--annotations",
        type=Path,
        default=None,
        help="score against this set's metadata/ instead (same generator params and audio)",
    )
    parser.add_argument("--hop", type=float, default=0.02, help="frame hop in seconds")
    args = parser.parse_args(argv)
    labels = args.annotations or args.root
    ratios = {split: class_ratios(args.root, split, args.hop) for split in ("validation", "test")}
    grid = [synthetic.AUDIBLE_DB + d for d in OFFSETS_DB]
    rows = []
    for theta in grid:
        for split, r in ratios.items():
            m = score(labels, split, oracle_events(r, theta, args.hop))
            rows.append({"split": split, "theta_db": theta, **m})
    table = pd.DataFrame(rows)
    cols = ["event_f1", "event_er", "segment_f1", "segment_er"]
    print(f"oracle on {args.root} scored against {labels / 'metadata'} (hop {args.hop} s)")
    print(table.pivot(index="theta_db", columns="split", values=cols).round(3).to_string())
    val = table[table["split"] == "validation"].set_index("theta_db")
    best = float(val["event_f1"].idxmax())
    test = table[table["split"] == "test"].set_index("theta_db").loc[best, cols]
    print(
        f"theta chosen on validation: {best:+.1f} dB; test: "
        + ", ".join(f"{k} {v:.3f}" for k, v in test.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
