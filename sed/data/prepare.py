"""Convert downloaded TUT sound event datasets into the DESIGN dataset folder format.

    python -m sed.data.prepare NAME SRC DEST [--validation-fraction F] [--seed N] [--link MODE]

SRC holds the archives as downloaded (the .zip files) or their extracted contents, or a mix;
nothing is fetched. NAME is one of DATASETS (`--help` lists each with its archives). DEST gets:

    DEST/audio_all/<file>                    the single copy of the audio, as distributed
                                             (binaural stays binaural; sed.audio mixes down)
    DEST/fold{k}/audio/{train,validation,test}/<file>
                                             relative symlinks into audio_all (hard links or
                                             copies where symlinks are impossible)
    DEST/fold{k}/metadata/{split}.tsv        DESED TSV; files without events as empty rows
    DEST/fold{k}/metadata/{split}_durations.tsv   every file of the split with its duration
    DEST/prepared.json                       source, classes, label map, folds, counts

The official cross-validation setups are kept: test = the fold's test list. They have no
validation set, so one is carved out of each fold's training recordings (carve_validation). A
recording in no list of fold k (no target events, so in no training list) is trained on in fold k.
TUT-SED Synthetic 2016 has one official train/validation/test split (60/20/20 mixtures); it is
written as fold1 so that every TUT config has the same shape, and --validation-fraction does not
apply to it.

Labels are normalised the same way for every dataset (normalize_label), and prepared.json keeps
the raw -> normalised map. A label outside the dataset's documented classes is an error unless
--allow-unknown-labels.
"""

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePosixPath

import pandas as pd
import soundfile
from tqdm import tqdm

from sed.annotations import COLUMNS, AnnotationError, read_ann, write_tsv
from sed.audio import audio_duration

__all__ = [
    "DATASETS",
    "LINK_MODES",
    "DatasetSpec",
    "PrepareError",
    "carve_validation",
    "main",
    "normalize_label",
    "prepare",
    "summary_table",
]

LINK_MODES = ("symlink", "hardlink", "copy")
FORMAT_VERSION = 1
MARKER = ".sed-prepare"  # written first, so a re-run knows DEST is ours even if it was cut short
CONTENT_DIRS = ("audio", "meta", "evaluation_setup")
MAX_DRAWS = 1000


class PrepareError(ValueError):
    """SRC lacks an archive or file, or holds something the preparation cannot use; says which."""


@dataclass(frozen=True)
class DatasetSpec:
    """One public dataset: its archives, evaluation_setup lists, annotation files and classes."""

    name: str
    title: str
    url: str
    storage: str  # the archives' top folder (dcase_util's storage_name)
    audio_parts: int  # STORAGE.audio.zip, or STORAGE.audio.1.zip ... STORAGE.audio.N.zip
    classes: tuple[str, ...]  # normalised, sorted
    audio: str  # the folder of the audio inside the archives
    lists: dict[str, str]  # split -> its evaluation_setup list ("{fold}" filled in)
    annotations: tuple[str, ...]  # where a recording's annotation may be ("{stem}", "{annot}")
    scene: str | None = None
    folds: tuple[int, ...] = (1,)
    split_sizes: tuple[int, int, int] | None = None  # published train/validation/test sizes
    notes: tuple[str, ...] = ()
    sample_rate: int = 44100

    @property
    def archives(self) -> list[str]:
        """The archives to download: the meta archive first, then the audio part(s)."""
        parts = [""] if self.audio_parts == 1 else [f".{i}" for i in range(1, self.audio_parts + 1)]
        return [f"{self.storage}.meta.zip", *(f"{self.storage}.audio{p}.zip" for p in parts)]


def _tut(
    name: str, title: str, url: str, storage: str, parts: int, scene: str, classes: str
) -> DatasetSpec:
    """A TUT Sound Events scene: 4 folds of {scene}_fold{k}_{train,test}.txt, one .ann a file."""
    return DatasetSpec(
        name,
        title,
        url,
        storage,
        parts,
        tuple(classes.split(", ")),
        audio=f"audio/{scene}",
        lists={split: f"{scene}_fold{{fold}}_{split}.txt" for split in ("train", "test")},
        annotations=(f"meta/{scene}/{{stem}}.ann",),
        scene=scene,
        folds=(1, 2, 3, 4),
    )


_TUT2016 = "TUT-sound-events-2016-development"
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="tut2016_synthetic",
            title="TUT-SED Synthetic 2016 (Cakir et al. 2017)",
            url="http://www.cs.tut.fi/sgn/arg/taslp2017-crnn-sed/tut-sed-synthetic-2016",
            storage="TUT-SED-synthetic-2016",
            audio_parts=5,
            classes=tuple(
                "alarms and sirens, baby crying, bird singing, bus, cat meowing, crowd applause, "
                "crowd cheering, dog barking, footsteps, glass smash, gun shot, horsewalk, mixer, "
                "motorcycle, rain, thunder".split(", ")
            ),
            audio="audio",
            lists={"train": "train+validate.txt", "validation": "validate.txt", "test": "test.txt"},
            annotations=("meta/{annot}.txt", "meta/{stem}.txt"),
            split_sizes=(60, 20, 20),
            notes=(
                "official split from evaluation_setup/train+validate.txt (train = it minus "
                "validate.txt), validate.txt and test.txt; written as fold1",
            ),
        ),
        _tut(
            name="tut2016_home",
            title="TUT Sound Events 2016, development dataset: home",
            url="https://zenodo.org/record/45759",
            storage=_TUT2016,
            parts=1,
            scene="home",
            classes="cupboard, cutlery, dishes, drawer, glass jingling, object impact, "
            "object rustling, object snapping, people walking, washing dishes, water tap running",
        ),
        _tut(
            name="tut2016_residential",
            title="TUT Sound Events 2016, development dataset: residential area",
            url="https://zenodo.org/record/45759",
            storage=_TUT2016,
            parts=1,
            scene="residential_area",
            classes="bird singing, car passing by, children shouting, object banging, "
            "people speaking, people walking, wind blowing",
        ),
        _tut(
            name="tut2017",
            title="TUT Sound Events 2017, development dataset: street",
            url="https://zenodo.org/record/814831",
            storage="TUT-sound-events-2017-development",
            parts=2,
            scene="street",
            classes="brakes squeaking, car, children, large vehicle, people speaking, "
            "people walking",
        ),
    )
}


def normalize_label(label: str) -> str:
    """One spelling per class: lower case, no parentheses, '_' and whitespace runs -> one space.

    "(object) rustling" -> "object rustling", "alarms_and_sirens" -> "alarms and sirens".
    """
    text = label.replace("(", " ").replace(")", " ").replace("_", " ")
    return re.sub(r"\s+", " ", text).strip().lower()


def carve_validation(
    train_files: Sequence[str],
    labels_by_file: dict[str, set[str]],
    fraction: float,
    seed: int,
    fold: int,
) -> tuple[list[str], list[str], bool]:
    """Split a fold's training recordings into (train, validation, every class kept in train).

    Deterministic in (files, fraction, seed, fold): the first of up to MAX_DRAWS seeded draws of
    round(fraction * n) files (at least one, at most n - 1) that leaves every training class in
    training; the first draw if none does.
    """
    files = sorted(train_files)
    n = len(files)
    n_val = min(max(round(fraction * n), 1 if fraction > 0 else 0), max(n - 1, 0))
    if n_val == 0:
        return files, [], True

    def labels(names: Iterable[str]) -> set[str]:
        return set().union(*(labels_by_file.get(f, set()) for f in names))

    needed = labels(files)
    rng = random.Random(f"sed.data.prepare/{seed}/{fold}")
    first = None
    for _ in range(MAX_DRAWS):
        chosen = set(rng.sample(files, n_val))
        first = first or chosen
        if labels(f for f in files if f not in chosen) >= needed:
            break
    else:
        chosen = first
    train = [f for f in files if f not in chosen]
    return train, sorted(chosen), labels(train) >= needed


class _Tree:
    """SRC as one tree of dataset-relative paths (audio/..., meta/..., evaluation_setup/...):
    the files of extracted folders where present, else the members of the dataset's archives."""

    def __init__(self, spec: DatasetSpec, src: Path, skip: Path):
        self.src = src
        self.files: dict[str, Path | tuple[zipfile.ZipFile, zipfile.ZipInfo]] = {}
        self.roots = _extracted_roots(src, spec.storage, skip)
        for root in self.roots:
            for path in sorted(p for c in CONTENT_DIRS for p in (root / c).rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    self.files.setdefault(path.relative_to(root).as_posix(), path)
        extracted = {rel.split("/")[0] for rel in self.files}
        self.archives_used: list[str] = []
        self.missing: list[str] = []  # archives absent, their content not extracted either
        self._tmp = tempfile.TemporaryDirectory(prefix="sed-prepare-")
        self._zips: list[zipfile.ZipFile] = []
        for name in spec.archives:
            found = sorted(src.rglob(name), key=lambda p: (len(p.parts), p))
            if not found:
                content = "evaluation_setup" if name.endswith(".meta.zip") else "audio"
                self.missing += [] if content in extracted else [name]
                continue
            try:
                self._zips.append(zipfile.ZipFile(found[0]))
            except (zipfile.BadZipFile, OSError) as error:
                raise PrepareError(
                    f"{found[0]} is not a readable zip archive ({error}); the download may be "
                    f"incomplete: download {name} again from {spec.url}"
                ) from error
            members = [
                info
                for info in self._zips[-1].infolist()
                if not info.is_dir()
                and not info.filename.startswith("__MACOSX/")
                and ".." not in PurePosixPath(info.filename).parts  # never leave the tree
            ]
            # Strip the archive's own top folder (STORAGE/) unless members start with audio/ etc.
            tops = {info.filename.partition("/")[0] for info in members}
            top = tops.pop() if len(tops) == 1 else ""
            strip = top not in ("", *CONTENT_DIRS) and all("/" in i.filename for i in members)
            prefix = len(top) + 1 if strip else 0
            new = {
                info.filename[prefix:]: (self._zips[-1], info)
                for info in members
                if info.filename[prefix:] not in self.files
            }
            self.files.update(new)
            self.archives_used += [name] if new else []

    def close(self) -> None:
        for archive in self._zips:
            archive.close()
        self._tmp.cleanup()

    def where(self, rel: str) -> str:
        """Where rel is read from, for messages: a path, or ARCHIVE:MEMBER."""
        entry = self.files[rel]
        return str(entry) if isinstance(entry, Path) else f"{entry[0].filename}:{entry[1].filename}"

    def path(self, rel: str) -> Path:
        """A filesystem path holding rel (archive members are extracted to a scratch folder)."""
        entry = self.files[rel]
        if isinstance(entry, Path):
            return entry
        target = Path(self._tmp.name, *PurePosixPath(rel).parts)
        if not target.exists():
            self.copy(rel, target)
        return target

    def copy(self, rel: str, target: Path) -> None:
        """Put rel's bytes at target: a hard link or copy of an extracted file, or the archive
        member streamed out. Skips a target that already has the right size."""
        entry = self.files[rel]
        size = entry.stat().st_size if isinstance(entry, Path) else entry[1].file_size
        if target.is_file() and not target.is_symlink() and target.stat().st_size == size:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # never write through a stale hard link into SRC
        if isinstance(entry, Path):
            try:
                os.link(entry, target)
                return
            except OSError:
                pass  # another file system: copy
        part = target.with_name(target.name + ".part")
        try:
            with (
                entry.open("rb") if isinstance(entry, Path) else entry[0].open(entry[1]) as fin,
                open(part, "wb") as fout,
            ):
                shutil.copyfileobj(fin, fout, 1 << 20)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)


def _extracted_roots(src: Path, storage: str, skip: Path) -> list[Path]:
    """Extracted dataset roots: folders within two levels of SRC holding audio/, meta/ or
    evaluation_setup/ (only those named STORAGE if any is), never DEST or a prepared dataset."""
    level, roots = [src], []
    for depth in range(3):
        level = [d for d in level if d.resolve() != skip and not (d / MARKER).exists()]
        roots += [d for d in level if any((d / c).is_dir() for c in CONTENT_DIRS)]
        if depth < 2:
            level = [
                d
                for parent in level
                for d in sorted(parent.iterdir())
                if d.is_dir() and not d.name.startswith(".")
            ]
    # A root inside another root is part of that dataset's tree (TUT 2017's non_verified/
    # holds meta/ and evaluation_setup/ of its own), never a second source of its files: a
    # verified file that is missing must be refused, not replaced by its non-verified twin.
    roots = [d for d in roots if not any(r != d and r in d.parents for r in roots)]
    return [d for d in roots if d.name == storage] or roots


def _holds(src: Path) -> str:
    """What SRC holds, for messages about a missing file."""
    found = sorted(p.name for p in src.iterdir())
    return f"SRC holds: {', '.join(found[:12]) + (' ...' if len(found) > 12 else '') or 'nothing'}."


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _Reader:
    """Reads a dataset's recordings, events and per-fold splits out of the source tree."""

    def __init__(self, spec: DatasetSpec, tree: _Tree):
        self.spec, self.tree = spec, tree
        self.sources: dict[str, str] = {}  # output file name -> its path in the tree
        self.events: dict[str, pd.DataFrame] = {}  # output file name -> its normalised events
        self.label_map: dict[str, str] = {}
        self.unknown: dict[str, list[str]] = {}  # normalised label -> "file (annotation)"
        self.notes, self.warnings = list(spec.notes), []

    def require(self, rel: str, why: str) -> None:
        """Raise unless rel is in SRC, naming it and the archive it comes in."""
        if rel in self.tree.files:
            return
        archives = self.spec.archives[1:] if rel.startswith("audio/") else self.spec.archives[:1]
        raise PrepareError(
            f"{rel} ({why}) is missing from {self.tree.src}; it is distributed in "
            f"{archives[0] if len(archives) == 1 else 'one of ' + ', '.join(archives)} as "
            f"{self.spec.storage}/{rel}. {_holds(self.tree.src)}"
        )

    def splits(self) -> dict[int, dict[str, list[str]]]:
        """Per fold, the sorted file names of each split (validation empty when not official)."""
        lists = {
            (fold, split): f"evaluation_setup/{template.format(fold=fold)}"
            for fold in self.spec.folds
            for split, template in self.spec.lists.items()
        }
        for (fold, split), rel in lists.items():
            self.require(rel, f"fold {fold} {split} list")
        named = {
            key: _unique(self._add(rel, *row) for row in self._rows(rel))
            for key, rel in lists.items()
        }
        every = _unique(name for names in named.values() for name in names)
        splits = {}
        for fold in self.spec.folds:
            train, test = named[fold, "train"], named[fold, "test"]
            validation = named.get((fold, "validation"), [])
            overlap = sorted((set(train) | set(validation)) & set(test))
            if overlap:
                raise PrepareError(
                    f"fold {fold}: {overlap} are in both the test list {lists[fold, 'test']} "
                    f"and the training list {lists[fold, 'train']}"
                )
            silent = [n for n in every if n not in train + validation + test]
            if silent:
                self.notes.append(
                    f"fold {fold}: added {silent} to training (no target events, so absent from "
                    "the training list, but part of the cross-validation setup)"
                )
            splits[fold] = {"train": sorted(set(every) - set(test) - set(validation))}
            splits[fold] |= {"validation": sorted(validation), "test": sorted(test)}
        return splits

    def _rows(self, rel: str) -> list[tuple[str, int]]:
        """(audio path, line number) of each row of an evaluation_setup list."""
        data = self.tree.path(rel).read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        return [
            ((line.split("\t")[0].strip() if "\t" in line else line.split()[0]), number)
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]

    def _add(self, list_rel: str, listed: str, line: int) -> str:
        """Register the recording a list row names, with its events; its output file name."""
        listed = listed.replace("\\", "/").removeprefix("./")
        name = PurePosixPath(listed).name
        rel = listed if listed in self.tree.files else f"{self.spec.audio}/{name}"
        self.require(rel, f"listed in {list_rel}, line {line}")
        if self.sources.setdefault(name, rel) != rel:
            raise PrepareError(
                f"two different audio files are both named {name}: {self.sources[name]} and {rel}"
            )
        if name not in self.events:
            self.events[name] = self._read_events(name)
        return name

    def _read_events(self, name: str) -> pd.DataFrame:
        stem = PurePosixPath(name).stem
        annot = stem.replace("-mix-", "-annot-")
        candidates = [t.format(stem=stem, annot=annot) for t in self.spec.annotations]
        ann = next((c for c in candidates if c in self.tree.files), candidates[0])
        self.require(ann, f"annotation of {name}")
        path = self.tree.path(ann)
        try:
            events = read_ann(path, filename=name)
        except AnnotationError as error:  # name the file as it is in SRC, not the scratch copy
            raise PrepareError(str(error).replace(str(path), self.tree.where(ann))) from error
        events["filename"] = name
        for raw in events["event_label"]:
            label = self.label_map.setdefault(raw, normalize_label(raw))
            where = f"{name} ({ann})"
            if label not in self.spec.classes and where not in self.unknown.get(label, []):
                self.unknown.setdefault(label, []).append(where)
        events["event_label"] = events["event_label"].map(self.label_map)
        return events.sort_values(["onset", "offset"], kind="stable", ignore_index=True)

    def classes(self, allow_unknown: bool) -> list[str]:
        """The output class list; raises on labels outside the documented classes unless allowed."""
        if self.unknown and not allow_unknown:
            listing = "; ".join(
                f"{label!r} in {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}"
                for label, files in sorted(self.unknown.items())
            )
            raise PrepareError(
                f"{self.spec.name}: event labels outside the documented classes "
                f"{list(self.spec.classes)} (after normalisation): {listing}. "
                "Pass --allow-unknown-labels to keep them as extra classes."
            )
        if self.unknown:
            self.warnings.append(
                f"kept labels outside the documented classes: {sorted(self.unknown)}; "
                "set data.classes accordingly"
            )
        return sorted(set(self.spec.classes) | set(self.unknown))

    def validation(self, splits: dict, fraction: float, seed: int) -> dict:
        """Carve each fold's validation set unless official; how it was chosen, for prepared.json."""
        if "validation" in self.spec.lists:
            sizes = tuple(len(files) for files in splits[1].values())
            if self.spec.split_sizes and sizes != self.spec.split_sizes:
                self.warnings.append(
                    f"split sizes train/validation/test = {sizes}; the published split is "
                    + "/".join(map(str, self.spec.split_sizes))
                )
            official = f"evaluation_setup/{self.spec.lists['validation']}"
            return {"method": f"official ({official})", "fraction": None}
        labels = {name: set(events["event_label"]) for name, events in self.events.items()}
        for fold, parts in splits.items():
            train, validation, kept = carve_validation(parts["train"], labels, fraction, seed, fold)
            if not kept:
                self.warnings.append(
                    f"fold {fold}: no validation draw keeps every training class in training"
                )
            parts["train"], parts["validation"] = train, validation
        return {
            "method": "seeded draw of whole recordings from each fold's official training list, "
            "keeping every training class in training (sed.data.prepare.carve_validation)",
            "fraction": fraction,
            "seed": seed,
        }


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


if __name__ == "__main__":
    raise SystemExit(main())
