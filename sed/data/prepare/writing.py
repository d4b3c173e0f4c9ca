"""prepare: convert one dataset from SRC into DEST's folder layout and write prepared.json.

DEST/audio_all holds the single copy of the audio; DEST/fold{k}/audio/{split}/ link into it and
DEST/fold{k}/metadata/ hold the DESED TSVs and durations (see sed.data.prepare).
"""

import json
import os
import re
import shutil
from os import PathLike
from pathlib import Path

import pandas as pd
import soundfile
from tqdm import tqdm

from sed.annotations import COLUMNS, write_tsv
from sed.audio import audio_duration
from sed.data.prepare.reading import _Reader
from sed.data.prepare.source import MARKER, _holds, _Tree
from sed.data.prepare.specs import DATASETS, DatasetSpec
from sed.errors import PrepareError

LINK_MODES = ("symlink", "hardlink", "copy")
FORMAT_VERSION = 1


def _check_dest(dest: Path, spec: DatasetSpec, src: Path) -> None:
    if dest.resolve() == src.resolve():
        raise PrepareError(f"DEST {dest} must differ from SRC")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise PrepareError(f"DEST {dest} exists and is not a folder")
    marker = dest / MARKER
    if marker.is_file():
        owner = marker.read_text(encoding="utf-8").strip()
        if owner != spec.name:
            raise PrepareError(
                f"DEST {dest} holds a prepared {owner!r} dataset, not {spec.name!r}; "
                "choose another DEST"
            )
    elif any(dest.iterdir()):
        raise PrepareError(
            f"DEST {dest} is not empty and was not written by sed.data.prepare; "
            "choose an empty or new folder"
        )


def prepare(
    name: str,
    src: str | PathLike,
    dest: str | PathLike,
    validation_fraction: float = 0.2,
    seed: int = 0,
    link: str = "symlink",
    allow_unknown_labels: bool = False,
    progress: bool = True,
) -> dict:
    """Convert dataset NAME from SRC (archives or extracted) into DEST; returns prepared.json."""
    if name not in DATASETS:
        raise PrepareError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    if not 0.0 <= validation_fraction < 1.0:
        raise PrepareError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
    if link not in LINK_MODES:
        raise PrepareError(f"--link must be one of {list(LINK_MODES)}, got {link!r}")
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise PrepareError(
            f"SRC {src} is not a folder; give the folder holding the downloaded archives "
            f"({', '.join(spec.archives)}) or their extracted contents"
        )
    _check_dest(dest, spec, src)
    tree = _Tree(spec, src, dest.resolve())
    try:
        if tree.missing:
            expected = "\n  ".join(spec.archives)
            raise PrepareError(
                f"{spec.name}: SRC {src} lacks {', '.join(tree.missing)} (and no extracted "
                f"{spec.storage}/ folder provides its content). Expected, as downloaded from "
                f"{spec.url}, either these archives in SRC:\n  {expected}\nor their extracted "
                f"contents ({spec.storage}/audio/, meta/, evaluation_setup/). " + _holds(src)
            )
        reader = _Reader(spec, tree)
        splits = reader.splits()
        classes = reader.classes(allow_unknown_labels)
        validation = reader.validation(splits, validation_fraction, seed)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MARKER).write_text(spec.name + "\n", encoding="utf-8")
        audio = _write_audio(reader, dest, progress)
    finally:
        tree.close()
    links = _write_folds(reader, splits, dest, link, audio["durations"])

    def counts(files: list[str]) -> dict:
        events = [len(reader.events[n]) for n in files]
        return {
            "files": len(files),
            "events": sum(events),
            "files_without_events": events.count(0),
            "seconds": round(sum(audio["durations"][n] for n in files), 3),
            "filenames": files,
        }

    info = {
        "format_version": FORMAT_VERSION,
        "dataset": spec.name,
        "title": spec.title,
        "url": spec.url,
        "scene": spec.scene,
        "source": {
            "path": str(src.resolve()),
            "archives": tree.archives_used,
            "extracted_roots": [str(r.resolve()) for r in tree.roots],
        },
        "classes": classes,
        "label_normalisation": "lower case; '(' and ')' dropped; '_' and whitespace runs -> "
        "one space (sed.data.prepare.normalize_label)",
        "label_map": dict(sorted(reader.label_map.items())),
        "sample_rate": spec.sample_rate,
        "audio": {k: v for k, v in audio.items() if k != "durations"},
        "layout": "DEST/fold{k}/audio/{train,validation,test}/ link into DEST/audio_all/; "
        "DEST/fold{k}/metadata/{split}.tsv and {split}_durations.tsv",
        "link_mode": sorted(links) if len(links) > 1 else next(iter(links), link),
        "folds": {
            str(fold): {split: counts(files) for split, files in parts.items()}
            for fold, parts in splits.items()
        },
        "validation": validation,
        "notes": reader.notes,
        "warnings": reader.warnings,
    }
    (dest / "prepared.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


def _write_audio(reader: _Reader, dest: Path, progress: bool) -> dict:
    """Copy (or hard-link) each recording once into DEST/audio_all and read its header."""
    audio_dir = dest / "audio_all"
    audio_dir.mkdir(parents=True, exist_ok=True)
    durations, rates, channels = {}, set(), set()
    for name in tqdm(
        sorted(reader.sources), desc="audio", unit="file", disable=None if progress else True
    ):
        target = audio_dir / name
        reader.tree.copy(reader.sources[name], target)
        durations[name] = audio_duration(target)
        header = soundfile.info(str(target))
        rates.add(header.samplerate)
        channels.add(header.channels)
        late = (reader.events[name]["offset"] > durations[name] + 0.5).sum()
        if late:
            reader.warnings.append(
                f"{name}: {late} event(s) end after the audio ({durations[name]:.2f} s)"
            )
    if rates != {reader.spec.sample_rate}:
        reader.warnings.append(
            f"sample rates {sorted(rates)} differ from the documented {reader.spec.sample_rate}"
        )
    for path in audio_dir.iterdir():
        if path.name not in reader.sources:
            path.unlink()  # stale, from an earlier run
    return {
        "folder": "audio_all",
        "files": len(durations),
        "sample_rates": sorted(rates),
        "channels": sorted(channels),
        "total_seconds": round(sum(durations.values()), 3),
        "durations": durations,
    }


def _write_folds(
    reader: _Reader, splits: dict, dest: Path, link: str, durations: dict[str, float]
) -> set[str]:
    """Write DEST/fold{k}/audio/{split}/ links and metadata TSVs; the link modes used."""
    for stale in dest.glob("fold*"):
        if stale.is_dir() and re.fullmatch(r"fold\d+", stale.name):
            shutil.rmtree(stale)
    used = set()
    for fold, parts in splits.items():
        root = dest / f"fold{fold}"
        for split, files in parts.items():
            (root / "audio" / split).mkdir(parents=True, exist_ok=True)
            for name in files:
                used.add(_link(dest / "audio_all" / name, root / "audio" / split / name, link))
            tables = [reader.events[n] for n in files if len(reader.events[n])]
            events = (
                pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
            )
            write_tsv(events, root / "metadata" / f"{split}.tsv", filenames=files)
            rows = [f"{n}\t{f'{durations[n]:.6f}'.rstrip('0').rstrip('.')}\n" for n in files]
            (root / "metadata" / f"{split}_durations.tsv").write_text(
                "filename\tduration\n" + "".join(rows), encoding="utf-8"
            )
    return used


def _link(target: Path, link: Path, mode: str) -> str:
    """Make link point at target (relative symlink, else hard link, else copy); the mode used."""
    for current in LINK_MODES[LINK_MODES.index(mode) : -1]:
        try:
            if current == "symlink":
                os.symlink(os.path.relpath(target, link.parent), link)
            else:
                os.link(target, link)
            return current
        except OSError:
            pass
    shutil.copy2(target, link)
    return "copy"
