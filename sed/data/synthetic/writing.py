"""Writing the synthetic set to disk, and ensure: regenerate only when the recorded params differ.

A set is generated into a sibling temp folder and swapped in (never a half set at root), under
an advisory lock so concurrent ensure() calls (parallel sweeps) do not race. ROOT/synthetic.json
records VERSION and the params (SyntheticParams.as_dict()); ensure keeps a complete set whose
record equals the wanted params.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from sed.annotations import COLUMNS, write_tsv
from sed.data.synthetic.params import SyntheticParams, check_params
from sed.data.synthetic.renderers import CLASSES
from sed.data.synthetic.scenes import SPLITS, _render, clip_name
from sed.errors import SyntheticError

try:  # POSIX advisory locks keep concurrent ensure() calls (parallel sweeps) from racing
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

# Bump when the generator's output changes for the same params. 2: audible extents; 3: the
# `sources` parameter (default on: per-split sound sources; off: version 2's output).
VERSION = 3
SUBTYPE = "PCM_16"  # every clip is written as 16-bit PCM WAV


def _generate_into(folder: Path, params: SyntheticParams, progress: bool) -> dict[str, Any]:
    """Write every split of the set into `folder`; returns per-split statistics."""
    from tqdm.auto import tqdm

    sr = params.sample_rate
    sizes = {split: getattr(params, f"n_{split}") for split in SPLITS}
    (folder / "metadata").mkdir(parents=True)
    stats: dict[str, Any] = {}
    with tqdm(
        total=sum(sizes.values()),
        desc="synthetic dataset",
        unit="clip",
        disable=None if progress else True,
    ) as bar:
        for split in SPLITS:
            audio_dir = folder / "audio" / split
            audio_dir.mkdir(parents=True)
            tables, names, durations, rendered_rows = [], [], [], []
            poly = np.zeros(params.max_polyphony + 1, dtype=np.int64)
            rendered = inaudible = 0
            for index in range(sizes[split]):
                scene = _render(split, index, params)
                name = clip_name(split, index)
                sf.write(str(audio_dir / name), scene.audio, sr, subtype=SUBTYPE)
                tables.append(scene.events)
                names.append(name)
                durations.append(len(scene.audio) / sr)
                active = np.zeros(len(scene.audio), dtype=np.int64)
                for onset, offset in zip(
                    scene.events["onset"], scene.events["offset"], strict=True
                ):
                    active[round(onset * sr) : round(offset * sr)] += 1
                poly += np.bincount(active, minlength=len(poly))[: len(poly)]
                rendered += len(scene.sources)
                inaudible += scene.heard.count(False)
                rendered_rows += [
                    (name, src.start / sr, src.stop / sr, src.label, src.source, heard)
                    for src, heard in zip(scene.sources, scene.heard, strict=True)
                ]
                bar.update()
            events = (
                pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
            )
            write_tsv(events, folder / "metadata" / f"{split}.tsv", names)
            pd.DataFrame({"filename": names, "duration": durations}).to_csv(
                folder / "metadata" / f"{split}_durations.tsv", sep="\t", index=False
            )
            counts = events["event_label"].value_counts()
            stats[split] = {
                "files": len(names),
                "files_without_events": len(set(names) - set(events["filename"])),
                "events": len(events),
                "rendered_events": rendered,
                "inaudible_events": inaudible,
                "events_per_class": {c: int(counts.get(c, 0)) for c in CLASSES},
                "polyphony_seconds": {str(k): round(int(v) / sr, 3) for k, v in enumerate(poly)},
            }
            if params.sources:  # every rendered event with its source (audible or not)
                columns = ["filename", "start", "stop", "event_label", "source", "heard"]
                rendered_events = pd.DataFrame(rendered_rows, columns=columns)
                rendered_events.to_csv(
                    folder / "metadata" / f"{split}_sources.tsv", sep="\t", index=False
                )
                used = rendered_events.groupby("event_label")["source"].unique()
                stats[split]["sources_per_class"] = {
                    c: sorted(int(i) for i in used.get(c, [])) for c in CLASSES
                }
    return stats


def _is_complete(root: Path) -> bool:
    """True when every split's metadata exists and every listed clip is on disk."""
    for split in SPLITS:
        durations = root / "metadata" / f"{split}_durations.tsv"
        if not (root / "metadata" / f"{split}.tsv").is_file() or not durations.is_file():
            return False
        names = pd.read_csv(durations, sep="\t", dtype={"filename": str})["filename"]
        if not all((root / "audio" / split / name).is_file() for name in names):
            return False
    return True


def _recorded_params(root: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("version") != VERSION:
        return None
    return info.get("params")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock next to root so concurrent generators do not race."""
    root.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(root.parent / f".{root.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate(root: Path, params: SyntheticParams, progress: bool) -> Path:
    """Generate into a sibling temp folder, then swap it in (never a half set at root)."""
    if root.exists() and not root.is_dir():
        raise SyntheticError(f"synthetic dataset root {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / "synthetic.json").is_file():
        raise SyntheticError(
            f"refusing to overwrite {root}: it is not empty and holds no synthetic.json "
            "(not a generated synthetic set); choose another root"
        )
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        stats = _generate_into(tmp, params, progress)
        info = {
            "generator": "sed.data.synthetic",
            "version": VERSION,
            "params": params.as_dict(),
            "classes": CLASSES,
            "audio": {"format": "WAV", "subtype": SUBTYPE, "peak_dbfs_max": -1.0},
            "stats": stats,
        }
        (tmp / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n")
        if root.exists():
            os.replace(root, old)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return root


def _resolve(params: SyntheticParams | None, keywords: dict[str, Any]) -> SyntheticParams:
    """The params to generate: `params`, or SyntheticParams from the keyword parameters."""
    if params is None:
        return check_params(**keywords)
    if keywords:
        raise TypeError(
            f"pass SyntheticParams or keyword parameters, not both (got {sorted(keywords)})"
        )
    return params


def generate(
    root: str | os.PathLike[str],
    params: SyntheticParams | None = None,
    *,
    progress: bool = True,
    **keywords: Any,
) -> Path:
    """Write the synthetic set to root (DESIGN folder format + durations + synthetic.json).

    params: a SyntheticParams, or its fields as keywords (see SyntheticParams; the others at
    their defaults). With `sources`, metadata/{split}_sources.tsv lists every rendered event with
    its source; `sources=False` gives version 2's set.
    """
    params = _resolve(params, keywords)
    root = Path(root)
    with _locked(root):
        return _generate(root, params, progress)


def ensure(
    root: str | os.PathLike[str],
    params: SyntheticParams | None = None,
    *,
    progress: bool = True,
    **keywords: Any,
) -> Path:
    """Generate the set at root unless root/synthetic.json already records equal params."""
    wanted = _resolve(params, keywords)
    root = Path(root)
    with _locked(root):
        if _recorded_params(root) == wanted.as_dict() and _is_complete(root):
            return root
        return _generate(root, wanted, progress)
