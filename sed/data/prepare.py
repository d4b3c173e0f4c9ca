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

The official cross-validation setups are kept: test = the fold's test list (evaluate list for
its events). They have no validation set, so one is carved out of each fold's training list:
`round(fraction * n_train)` whole recordings (at least one), drawn with random.Random((seed, fold))
from the sorted list; of up to 1000 such draws the first that leaves every class of the fold's
training list in training is taken. TUT-SED Synthetic 2016 has one official train/validation/test
split (60/20/20 mixtures); it is written as fold1 so that every TUT config has the same shape,
and --validation-fraction does not apply to it.

Labels are normalised the same way for every dataset (normalize_label): lower case, parentheses
dropped, underscores and runs of whitespace made single spaces, so "(object) rustling" ->
"object rustling" (the 2016 home set also has "object impact"), "alarms_and_sirens" ->
"alarms and sirens", "people walking " -> "people walking". prepared.json keeps the raw -> normalised
map. A label outside the dataset's documented class list is an error unless --allow-unknown-labels.

A file with no target events never appears in a TUT training list (those list events); one that
is in some fold's test list but in neither list of fold k is added to fold k's training files.
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
from dataclasses import dataclass, field
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
    "PrepareError",
    "DatasetSpec",
    "carve_validation",
    "main",
    "normalize_label",
    "prepare",
]

SPLITS = ("train", "validation", "test")
LINK_MODES = ("symlink", "hardlink", "copy")
FORMAT_VERSION = 1
MARKER = ".sed-prepare"  # written first, so a re-run knows DEST is ours even if it was cut short
CONTENT_DIRS = ("audio", "meta", "evaluation_setup")
MAX_DRAWS = 1000


class PrepareError(ValueError):
    """SRC lacks an archive or file, or holds something the preparation cannot use; says which."""


@dataclass(frozen=True)
class Archive:
    """One downloadable package of a dataset."""

    filename: str
    content: str  # "meta" (annotations + evaluation_setup), "audio", "doc" or "features"
    required: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's files live inside its archives, and what it should contain."""

    name: str
    title: str
    url: str
    storage: str  # the top folder of the archives (dcase_util's storage_name)
    archives: tuple[Archive, ...]
    classes: tuple[str, ...]  # normalised, sorted
    scene: str | None = None  # TUT Sound Events: the scene folder and fold-list prefix
    folds: tuple[int, ...] = (1,)
    sample_rate: int = 44100
    channels: int = 2
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fold_based(self) -> bool:
        return self.scene is not None


def _tut_archives(storage: str, audio_parts: int) -> tuple[Archive, ...]:
    audio = (
        [Archive(f"{storage}.audio.zip", "audio")]
        if audio_parts == 1
        else [Archive(f"{storage}.audio.{i}.zip", "audio") for i in range(1, audio_parts + 1)]
    )
    return (
        Archive(f"{storage}.meta.zip", "meta"),
        *audio,
        Archive(f"{storage}.doc.zip", "doc", False),
    )


_TUT2016 = "TUT-sound-events-2016-development"
_TUT2017 = "TUT-sound-events-2017-development"
_SYNTH = "TUT-SED-synthetic-2016"

DATASETS: dict[str, DatasetSpec] = {
    "tut2016_synthetic": DatasetSpec(
        name="tut2016_synthetic",
        title="TUT-SED Synthetic 2016 (Cakir et al. 2017)",
        url="http://www.cs.tut.fi/sgn/arg/taslp2017-crnn-sed/tut-sed-synthetic-2016",
        storage=_SYNTH,
        archives=(
            Archive(f"{_SYNTH}.meta.zip", "meta"),
            *(Archive(f"{_SYNTH}.audio.{i}.zip", "audio") for i in range(1, 6)),
            Archive(f"{_SYNTH}.features.zip", "features", False),
        ),
        classes=(
            "alarms and sirens",
            "baby crying",
            "bird singing",
            "bus",
            "cat meowing",
            "crowd applause",
            "crowd cheering",
            "dog barking",
            "footsteps",
            "glass smash",
            "gun shot",
            "horsewalk",
            "mixer",
            "motorcycle",
            "rain",
            "thunder",
        ),
        channels=1,
        notes=(
            "official split from evaluation_setup/train+validate.txt (train = it minus "
            "validate.txt), validate.txt and test.txt; written as fold1",
        ),
    ),
    "tut2016_home": DatasetSpec(
        name="tut2016_home",
        title="TUT Sound Events 2016, development dataset: home",
        url="https://zenodo.org/record/45759",
        storage=_TUT2016,
        archives=_tut_archives(_TUT2016, 1),
        classes=(
            "cupboard",
            "cutlery",
            "dishes",
            "drawer",
            "glass jingling",
            "object impact",
            "object rustling",
            "object snapping",
            "people walking",
            "washing dishes",
            "water tap running",
        ),
        scene="home",
        folds=(1, 2, 3, 4),
    ),
    "tut2016_residential": DatasetSpec(
        name="tut2016_residential",
        title="TUT Sound Events 2016, development dataset: residential area",
        url="https://zenodo.org/record/45759",
        storage=_TUT2016,
        archives=_tut_archives(_TUT2016, 1),
        classes=(
            "bird singing",
            "car passing by",
            "children shouting",
            "object banging",
            "people speaking",
            "people walking",
            "wind blowing",
        ),
        scene="residential_area",
        folds=(1, 2, 3, 4),
    ),
    "tut2017": DatasetSpec(
        name="tut2017",
        title="TUT Sound Events 2017, development dataset: street",
        url="https://zenodo.org/record/814831",
        storage=_TUT2017,
        archives=_tut_archives(_TUT2017, 2),
        classes=(
            "brakes squeaking",
            "car",
            "children",
            "large vehicle",
            "people speaking",
            "people walking",
        ),
        scene="street",
        folds=(1, 2, 3, 4),
    ),
}
ALIASES = {
    "tut2016_residential_area": "tut2016_residential",
    "tut_sed_synthetic_2016": "tut2016_synthetic",
    "tut2017_street": "tut2017",
}


def normalize_label(label: str) -> str:
    """One spelling per class: lower case, no parentheses, '_' and whitespace runs -> one space."""
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
    needed = set().union(*(labels_by_file.get(f, set()) for f in files))
    rng = random.Random(f"sed.data.prepare/{seed}/{fold}")
    first = None
    for _ in range(MAX_DRAWS):
        chosen = set(rng.sample(files, n_val))
        first = first or chosen
        kept = set().union(*(labels_by_file.get(f, set()) for f in files if f not in chosen))
        if kept >= needed:
            break
    else:
        chosen = first
    train = [f for f in files if f not in chosen]
    kept = set().union(*(labels_by_file.get(f, set()) for f in train))
    return train, sorted(chosen), kept >= needed


# --------------------------------------------------------------------------- the source tree


class _Source:
    """SRC as one tree of dataset-relative paths (audio/..., meta/..., evaluation_setup/...),
    read from extracted folders where present and from the archives' members otherwise."""

    def __init__(self, spec: DatasetSpec, src: Path, exclude: Path):
        self.spec, self.src, self.exclude = spec, src, exclude
        self.entries: dict[str, tuple] = {}  # rel -> ("fs", Path) | ("zip", ZipFile, ZipInfo)
        self.archives_found: dict[str, Path] = {}
        self.archives_used: list[str] = []
        self.roots: list[Path] = []
        self._zips: list[zipfile.ZipFile] = []
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._scan_extracted()
        self._scan_archives()

    def close(self) -> None:
        for archive in self._zips:
            archive.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- scanning

    def _excluded(self, path: Path) -> bool:
        path = path.resolve()
        return path == self.exclude or self.exclude in path.parents

    def _scan_extracted(self) -> None:
        """Find the extracted dataset root(s): the storage folder if present, else any folder
        within two levels of SRC holding audio/, meta/ or evaluation_setup/."""
        levels = [[self.src]]
        for _ in range(2):
            levels.append(
                [
                    d
                    for parent in levels[-1]
                    for d in sorted(parent.iterdir())
                    if d.is_dir() and not d.name.startswith(".") and not self._excluded(d)
                ]
            )
        candidates = [d for level in levels for d in level if not self._excluded(d)]
        named = [d for d in candidates if d.name == self.spec.storage]
        for root in named or candidates:
            if (root / MARKER).exists() or (root / "prepared.json").exists():
                continue  # an output of this tool, never a source
            found = False
            for content in CONTENT_DIRS:
                folder = root / content
                if not folder.is_dir():
                    continue
                found = True
                for path in sorted(folder.rglob("*")):
                    if path.is_file() and not path.name.startswith("."):
                        rel = path.relative_to(root).as_posix()
                        self.entries.setdefault(rel, ("fs", path))
            if found:
                self.roots.append(root)

    def _scan_archives(self) -> None:
        for archive in self.spec.archives:
            if archive.content not in ("meta", "audio"):
                continue
            path = self._find_archive(archive.filename)
            if path is None:
                continue
            self.archives_found[archive.filename] = path
            try:
                handle = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as error:
                raise PrepareError(
                    f"{path} is not a readable zip archive ({error}); the download may be "
                    f"incomplete: download {archive.filename} again from {self.spec.url}"
                ) from error
            self._zips.append(handle)
            members = [
                info
                for info in handle.infolist()
                if not info.is_dir()
                and not info.filename.startswith("__MACOSX/")
                and ".." not in PurePosixPath(info.filename).parts  # never leave the tree
            ]
            prefix = _archive_prefix([info.filename for info in members])
            added = False
            for info in members:
                rel = info.filename[len(prefix) :]
                if rel not in self.entries:
                    self.entries[rel] = ("zip", handle, info)
                    added = True
            if added:
                self.archives_used.append(archive.filename)

    def _find_archive(self, filename: str) -> Path | None:
        direct = self.src / filename
        if direct.is_file():
            return direct
        for path in sorted(self.src.rglob(filename)):
            if path.is_file() and not self._excluded(path):
                return path
        return None

    # -- access

    def has(self, rel: str) -> bool:
        return rel in self.entries

    def under(self, folder: str) -> list[str]:
        prefix = folder.rstrip("/") + "/"
        return sorted(rel for rel in self.entries if rel.startswith(prefix))

    def where(self, rel: str) -> str:
        """Where rel was read from, for messages."""
        entry = self.entries[rel]
        if entry[0] == "fs":
            return str(entry[1])
        return f"{entry[1].filename}:{entry[2].filename}"

    def read_text(self, rel: str) -> str:
        entry = self.entries[rel]
        data = entry[1].read_bytes() if entry[0] == "fs" else entry[1].read(entry[2])
        for encoding in ("utf-8-sig", "latin-1"):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                continue
        raise AssertionError("latin-1 decodes any bytes")

    def local_path(self, rel: str) -> Path:
        """A filesystem path holding rel (archive members are extracted to a scratch folder)."""
        entry = self.entries[rel]
        if entry[0] == "fs":
            return entry[1]
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sed-prepare-")
        target = Path(self._tmp.name, *PurePosixPath(rel).parts)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry[1].read(entry[2]))
        return target

    def size(self, rel: str) -> int:
        entry = self.entries[rel]
        return entry[1].stat().st_size if entry[0] == "fs" else entry[2].file_size

    def materialize(self, rel: str, target: Path) -> None:
        """Put rel's bytes at target: a hard link or copy of an extracted file, or the archive
        member streamed out. Skips a target that already has the right size."""
        if target.is_file() and not target.is_symlink() and target.stat().st_size == self.size(rel):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        entry = self.entries[rel]
        if target.exists() or target.is_symlink():
            target.unlink()  # never write through a stale hard link into SRC
        if entry[0] == "fs":
            try:
                os.link(entry[1], target)
                return
            except OSError:
                pass
        part = target.with_name(target.name + ".part")
        try:
            if entry[0] == "fs":
                shutil.copyfile(entry[1], part)
            else:
                with entry[1].open(entry[2]) as fin, open(part, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)


def _archive_prefix(names: list[str]) -> str:
    """The archive's own top folder ("TUT-sound-events-2017-development/"), stripped on reading;
    empty when the members start directly with audio/, meta/ or evaluation_setup/."""
    tops = {name.split("/", 1)[0] for name in names if "/" in name}
    if len(tops) == 1 and all("/" in name for name in names):
        top = tops.pop()
        if top not in CONTENT_DIRS:
            return top + "/"
    return ""


# --------------------------------------------------------------------------- reading the setup


@dataclass
class _ListRow:
    path: str
    line: int
    event: tuple[float, float, str] | None


def _parse_list(source: _Source, rel: str) -> list[_ListRow]:
    """An evaluation_setup list: `file [scene] [onset offset label]` rows, tab-separated."""
    rows = []
    for number, line in enumerate(source.read_text(rel).splitlines(), 1):
        if not line.strip():
            continue
        cols = [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
        path = cols[0].replace("\\", "/").removeprefix("./")
        event = None
        start = 2 if len(cols) >= 5 else 1 if len(cols) == 4 else None
        if start is not None and cols[start + 2]:
            try:
                onset, offset = (float(c.replace(",", ".")) for c in cols[start : start + 2])
            except ValueError as error:
                raise PrepareError(
                    f"{source.where(rel)}, line {number}: onset/offset "
                    f"{cols[start : start + 2]} are not numbers"
                ) from error
            if not 0 <= onset < offset:
                raise PrepareError(
                    f"{source.where(rel)}, line {number}: need 0 <= onset < offset, "
                    f"got {onset} and {offset}"
                )
            event = (onset, offset, cols[start + 2])
        rows.append(_ListRow(path, number, event))
    return rows


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass
class _Recording:
    """One audio file of the dataset: where it is in SRC, and its (normalised) events."""

    name: str  # the file name in the output (basename)
    rel: str  # its path in the source tree
    events: pd.DataFrame


class _Builder:
    """Collects recordings and per-fold splits, then writes DEST."""

    def __init__(self, spec: DatasetSpec, source: _Source, allow_unknown_labels: bool):
        self.spec, self.source = spec, source
        self.allow_unknown = allow_unknown_labels
        self.recordings: dict[str, _Recording] = {}
        self.label_map: dict[str, str] = {}
        self.unknown: dict[str, list[str]] = {}  # label -> files
        self.warnings: list[str] = []
        self.notes: list[str] = list(spec.notes)

    def archive_for(self, content: str) -> str:
        names = [a.filename for a in self.spec.archives if a.content == content]
        return names[0] if len(names) == 1 else "one of " + ", ".join(names)

    def require(self, rel: str, why: str) -> None:
        if self.source.has(rel):
            return
        content = "audio" if rel.startswith("audio/") else "meta"
        raise PrepareError(
            f"{rel} ({why}) is missing from {self.source.src}; it is distributed in "
            f"{self.archive_for(content)} as {self.spec.storage}/{rel}. "
            f"{_found_summary(self.source)}"
        )

    def audio_rel(self, listed: str, list_rel: str, line: int) -> str:
        """The source path of an audio file named in a list (as given, or under audio/[scene]/)."""
        name = PurePosixPath(listed).name
        folder = f"audio/{self.spec.scene}" if self.spec.scene else "audio"
        for candidate in (listed, f"{folder}/{name}", f"audio/{name}"):
            if self.source.has(candidate):
                return candidate
        self.require(f"{folder}/{name}", f"listed in {list_rel}, line {line}")
        raise AssertionError("unreachable")

    def add_recording(self, rel: str, ann_candidates: Sequence[str], list_events) -> None:
        """Register an audio file with its events: from its annotation file when there is one,
        else from the event rows of the lists that name it."""
        name = PurePosixPath(rel).name
        if name in self.recordings:
            if self.recordings[name].rel != rel:
                raise PrepareError(
                    f"two different audio files are both named {name}: "
                    f"{self.recordings[name].rel} and {rel}"
                )
            return
        ann = next((a for a in ann_candidates if self.source.has(a)), None)
        if ann is not None:
            try:
                events = read_ann(self.source.local_path(ann), filename=name)
            except AnnotationError as error:  # name the file as it is in SRC, not the scratch copy
                raise PrepareError(f"{self.source.where(ann)}: {error}") from error
            events["filename"] = name
            source_name = ann
        else:
            rows = [(name, on, off, label) for on, off, label in list_events]
            events = pd.DataFrame(rows, columns=COLUMNS)
            source_name = "the evaluation_setup lists"
        raw = list(events["event_label"])
        normalised = [normalize_label(label) for label in raw]
        for label, norm in zip(raw, normalised, strict=True):
            self.label_map.setdefault(label, norm)
            if norm not in self.spec.classes:
                self.unknown.setdefault(norm, [])
                if f"{name} ({source_name})" not in self.unknown[norm]:
                    self.unknown[norm].append(f"{name} ({source_name})")
        events["event_label"] = normalised
        events = events.sort_values(["onset", "offset"], kind="stable", ignore_index=True)
        self.recordings[name] = _Recording(name, rel, events)

    def check_labels(self) -> list[str]:
        """The output class list; raises on labels outside the documented classes unless allowed."""
        if self.unknown and not self.allow_unknown:
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

    def labels_by_file(self) -> dict[str, set[str]]:
        return {n: set(r.events["event_label"]) for n, r in self.recordings.items()}


def _found_summary(source: _Source) -> str:
    found = [p.name for p in sorted(source.src.iterdir())] if source.src.is_dir() else []
    shown = ", ".join(found[:12]) + (" ..." if len(found) > 12 else "")
    return f"SRC holds: {shown or 'nothing'}."


def _check_archives(spec: DatasetSpec, source: _Source) -> None:
    """Fail early, naming every missing archive whose content is not there extracted either."""
    extracted = {
        content: any(source.entries[rel][0] == "fs" for rel in source.under(folder))
        for content, folder in (("meta", "evaluation_setup"), ("audio", "audio"))
    }
    missing = [
        archive.filename
        for archive in spec.archives
        if archive.required
        and archive.filename not in source.archives_found
        and not extracted.get(archive.content, False)
    ]
    if missing:
        expected = "\n  ".join(a.filename for a in spec.archives if a.required)
        raise PrepareError(
            f"{spec.name}: SRC {source.src} lacks {', '.join(missing)} (and no extracted "
            f"{spec.storage}/ folder provides its content). Expected, as downloaded from "
            f"{spec.url}, either these archives in SRC:\n  {expected}\nor their extracted "
            f"contents ({spec.storage}/audio/, meta/, evaluation_setup/). "
            f"{_found_summary(source)}"
        )


# --------------------------------------------------------------------------- the two layouts


def _fold_splits(builder: _Builder) -> dict[int, dict[str, list[str]]]:
    """TUT Sound Events 2016/2017: per fold, the official train and test recordings."""
    spec, source = builder.spec, builder.source
    scene = spec.scene
    ann_dir = f"meta/{scene}"
    if not any(rel.endswith(".ann") for rel in source.under(ann_dir)):
        builder.require(f"{ann_dir}/", "the per-recording .ann annotations")
    lists: dict[int, dict[str, list[_ListRow]]] = {}
    for fold in spec.folds:
        parts = {}
        for part in ("train", "test", "evaluate"):
            rel = f"evaluation_setup/{scene}_fold{fold}_{part}.txt"
            if source.has(rel):
                parts[part] = (rel, _parse_list(source, rel))
        if "train" not in parts:
            builder.require(
                f"evaluation_setup/{scene}_fold{fold}_train.txt", f"fold {fold} training list"
            )
        if "test" not in parts and "evaluate" not in parts:
            builder.require(
                f"evaluation_setup/{scene}_fold{fold}_test.txt", f"fold {fold} test list"
            )
        lists[fold] = parts

    # Every recording any list names, with the events the lists give it (for files without .ann).
    list_events: dict[str, list] = {}
    list_counts: dict[str, int] = {}
    rel_of: dict[tuple[str, int, str], str] = {}
    for parts in lists.values():
        for part, (list_rel, rows) in parts.items():
            seen = {}
            for row in rows:
                rel = builder.audio_rel(row.path, list_rel, row.line)
                rel_of[(list_rel, row.line, row.path)] = rel
                if row.event is not None:
                    seen.setdefault(rel, []).append(row.event)
            for rel, events in seen.items():
                list_events.setdefault(rel, events)
                if part == "train" or part == "evaluate":
                    list_counts.setdefault(rel, len(events))

    all_rels = _unique(rel_of.values())
    for rel in all_rels:
        stem = PurePosixPath(rel).stem
        builder.add_recording(rel, [f"{ann_dir}/{stem}.ann"], list_events.get(rel, []))
        n = len(builder.recordings[PurePosixPath(rel).name].events)
        if rel in list_counts and list_counts[rel] != n:
            builder.warnings.append(
                f"{PurePosixPath(rel).name}: {n} events in its .ann but {list_counts[rel]} "
                "in the evaluation_setup lists; the .ann events are used"
            )

    def names(list_rel: str, rows: list[_ListRow]) -> list[str]:
        return _unique(PurePosixPath(rel_of[(list_rel, r.line, r.path)]).name for r in rows)

    all_names = [PurePosixPath(rel).name for rel in all_rels]
    splits: dict[int, dict[str, list[str]]] = {}
    test_count: dict[str, int] = dict.fromkeys(all_names, 0)
    for fold, parts in lists.items():
        train = names(*parts["train"])
        test = names(*parts["test"]) if "test" in parts else []
        if "evaluate" in parts:
            evaluate = names(*parts["evaluate"])
            extra = [n for n in evaluate if n not in test]
            if extra and "test" in parts:
                builder.warnings.append(
                    f"fold {fold}: {extra} are in the evaluate list but not the test list; "
                    "tested too"
                )
            test += extra
        overlap = sorted(set(train) & set(test))
        if overlap:
            raise PrepareError(
                f"fold {fold}: {overlap} are in both the training and the test list of "
                f"evaluation_setup/{scene}_fold{fold}_*.txt"
            )
        silent = [n for n in all_names if n not in train and n not in test]
        if silent:
            builder.notes.append(
                f"fold {fold}: added {silent} to training (no target events, so absent from "
                "the training list, but part of the cross-validation setup)"
            )
        for n in test:
            test_count[n] += 1
        splits[fold] = {"train": sorted(train + silent), "test": sorted(test)}
    uneven = {n: c for n, c in test_count.items() if c != 1}
    if uneven:
        builder.warnings.append(
            f"recordings not tested exactly once across the folds: {uneven} (fold lists "
            "normally test each recording once)"
        )
    return splits


def _synthetic_splits(builder: _Builder) -> dict[int, dict[str, list[str]]]:
    """TUT-SED Synthetic 2016: the official train / validation / test mixtures, as fold 1."""
    source = builder.source

    def first(*names: str) -> str | None:
        return next(
            (f"evaluation_setup/{n}" for n in names if source.has(f"evaluation_setup/{n}")), None
        )

    train_rel = first("train+validate.txt", "train.txt")
    validate_rel = first("validate.txt", "validation.txt")
    test_rel = first("test.txt", "evaluate.txt")
    for rel, what in (
        (train_rel, "evaluation_setup/train+validate.txt"),
        (validate_rel, "evaluation_setup/validate.txt"),
        (test_rel, "evaluation_setup/test.txt"),
    ):
        if rel is None:
            builder.require(what, "the official split")
    parsed = {
        part: (rel, _parse_list(source, rel))
        for part, rel in (("train", train_rel), ("validation", validate_rel), ("test", test_rel))
    }
    names: dict[str, list[str]] = {}
    for part, (list_rel, rows) in parsed.items():
        found = []
        events_by_rel: dict[str, list] = {}
        for row in rows:
            rel = builder.audio_rel(row.path, list_rel, row.line)
            found.append(rel)
            if row.event is not None:
                events_by_rel.setdefault(rel, []).append(row.event)
        for rel in _unique(found):
            stem = PurePosixPath(rel).stem
            candidates = [f"meta/{stem.replace('-mix-', '-annot-')}.txt", f"meta/{stem}.txt"]
            candidates.append(f"meta/{stem}.ann")
            if not any(source.has(c) for c in candidates) and rel not in events_by_rel:
                builder.require(candidates[0], f"annotation of {PurePosixPath(rel).name}")
            builder.add_recording(rel, candidates, events_by_rel.get(rel, []))
        names[part] = _unique(PurePosixPath(rel).name for rel in found)
    validation = sorted(names["validation"])
    train = sorted(set(names["train"]) - set(validation))
    test = sorted(names["test"])
    overlap = sorted((set(train) | set(validation)) & set(test))
    if overlap:
        raise PrepareError(f"{overlap} are in both {test_rel} and {train_rel}/{validate_rel}")
    counts = (len(train), len(validation), len(test))
    if counts != (60, 20, 20):
        builder.warnings.append(
            f"split sizes train/validation/test = {counts}; the published split is 60/20/20"
        )
    return {1: {"train": train, "validation": validation, "test": test}}


# --------------------------------------------------------------------------- writing


def _link(target: Path, link: Path, mode: str) -> str:
    """Make link point at target (relative symlink, else hard link, else copy); the mode used."""
    if link.exists() or link.is_symlink():
        link.unlink()
    modes = LINK_MODES[LINK_MODES.index(mode) :]
    for current in modes:
        try:
            if current == "symlink":
                os.symlink(os.path.relpath(target, link.parent), link)
            elif current == "hardlink":
                os.link(target, link)
            else:
                shutil.copy2(target, link)
            return current
        except OSError:
            if current == modes[-1]:
                raise
    raise AssertionError("unreachable")


def _write_durations(path: Path, durations: dict[str, float]) -> None:
    frame = pd.DataFrame(sorted(durations.items()), columns=["filename", "duration"])
    frame["duration"] = frame["duration"].map(lambda d: f"{d:.6f}".rstrip("0").rstrip("."))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.to_csv(tmp, sep="\t", index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        return
    if any(dest.iterdir()):
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
    key = ALIASES.get(name, name)
    if key not in DATASETS:
        raise PrepareError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[key]
    if not 0.0 <= validation_fraction < 1.0:
        raise PrepareError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
    if link not in LINK_MODES:
        raise PrepareError(f"--link must be one of {list(LINK_MODES)}, got {link!r}")
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise PrepareError(
            f"SRC {src} is not a folder; give the folder holding the downloaded archives "
            f"({', '.join(a.filename for a in spec.archives if a.required)}) or their "
            "extracted contents"
        )
    _check_dest(dest, spec, src)

    source = _Source(spec, src, dest.resolve())
    try:
        _check_archives(spec, source)
        builder = _Builder(spec, source, allow_unknown_labels)
        splits = _fold_splits(builder) if spec.fold_based else _synthetic_splits(builder)
        classes = builder.check_labels()
        validation = _add_validation(builder, splits, validation_fraction, seed)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MARKER).write_text(spec.name + "\n", encoding="utf-8")
        audio_info = _write_audio(builder, dest, progress)
        link_modes = _write_folds(builder, splits, dest, link, audio_info["durations"], progress)
    finally:
        source.close()

    folds_info = {
        str(fold): {
            split: _split_counts(builder, files, audio_info["durations"])
            for split, files in parts.items()
        }
        for fold, parts in splits.items()
    }
    info = {
        "format_version": FORMAT_VERSION,
        "dataset": spec.name,
        "title": spec.title,
        "url": spec.url,
        "scene": spec.scene,
        "source": {
            "path": str(src.resolve()),
            "archives": source.archives_used,
            "extracted_roots": [str(r.resolve()) for r in source.roots],
        },
        "classes": classes,
        "label_normalisation": "lower case; '(' and ')' dropped; '_' and whitespace runs -> "
        "one space (sed.data.prepare.normalize_label)",
        "label_map": dict(sorted(builder.label_map.items())),
        "sample_rate": spec.sample_rate,
        "audio": {k: v for k, v in audio_info.items() if k != "durations"},
        "layout": "DEST/fold{k}/audio/{train,validation,test}/ link into DEST/audio_all/; "
        "DEST/fold{k}/metadata/{split}.tsv and {split}_durations.tsv",
        "link_mode": sorted(link_modes) if len(link_modes) > 1 else next(iter(link_modes), link),
        "folds": folds_info,
        "validation": validation,
        "notes": builder.notes,
        "warnings": builder.warnings,
    }
    _write_json(dest / "prepared.json", info)
    return info


def _add_validation(
    builder: _Builder, splits: dict[int, dict[str, list[str]]], fraction: float, seed: int
) -> dict:
    if not builder.spec.fold_based:
        return {"method": "official (evaluation_setup/validate.txt)", "fraction": None}
    labels = builder.labels_by_file()
    for fold, parts in splits.items():
        train, validation, kept = carve_validation(parts["train"], labels, fraction, seed, fold)
        if not kept:
            builder.warnings.append(
                f"fold {fold}: no validation draw keeps every training class in training"
            )
        parts["train"], parts["validation"] = train, validation
        splits[fold] = {split: parts[split] for split in SPLITS}
    return {
        "method": "seeded draw of whole recordings from each fold's official training list, "
        "keeping every training class in training (sed.data.prepare.carve_validation)",
        "fraction": fraction,
        "seed": seed,
    }


def _write_audio(builder: _Builder, dest: Path, progress: bool) -> dict:
    """Copy (or hard-link) each recording once into DEST/audio_all and read its header."""
    audio_dir = dest / "audio_all"
    audio_dir.mkdir(parents=True, exist_ok=True)
    durations, rates, channels = {}, set(), set()
    recordings = sorted(builder.recordings.values(), key=lambda r: r.name)
    for recording in tqdm(recordings, desc="audio", unit="file", disable=not progress):
        target = audio_dir / recording.name
        builder.source.materialize(recording.rel, target)
        durations[recording.name] = audio_duration(target)
        header = soundfile.info(str(target))
        rates.add(header.samplerate)
        channels.add(header.channels)
        late = recording.events[recording.events["offset"] > durations[recording.name] + 0.5]
        if len(late):
            builder.warnings.append(
                f"{recording.name}: {len(late)} event(s) end after the audio "
                f"({durations[recording.name]:.2f} s)"
            )
    if rates != {builder.spec.sample_rate}:
        builder.warnings.append(
            f"sample rates {sorted(rates)} differ from the documented {builder.spec.sample_rate}"
        )
    stale = sorted(p.name for p in audio_dir.iterdir() if p.name not in builder.recordings)
    for name in stale:
        (audio_dir / name).unlink()
    return {
        "folder": "audio_all",
        "files": len(recordings),
        "sample_rates": sorted(rates),
        "channels": sorted(channels),
        "total_seconds": round(sum(durations.values()), 3),
        "durations": durations,
    }


def _write_folds(
    builder: _Builder,
    splits: dict[int, dict[str, list[str]]],
    dest: Path,
    link: str,
    durations: dict[str, float],
    progress: bool,
) -> set[str]:
    used = set()
    for stale in dest.glob("fold*"):
        if stale.is_dir() and re.fullmatch(r"fold\d+", stale.name):
            shutil.rmtree(stale)
    total = sum(len(files) for parts in splits.values() for files in parts.values())
    bar = tqdm(total=total, desc="folds", unit="link", disable=not progress)
    for fold, parts in splits.items():
        root = dest / f"fold{fold}"
        for split, files in parts.items():
            audio_dir = root / "audio" / split
            audio_dir.mkdir(parents=True, exist_ok=True)
            for name in files:
                used.add(_link(dest / "audio_all" / name, audio_dir / name, link))
                bar.update()
            tables = [
                builder.recordings[n].events for n in files if len(builder.recordings[n].events)
            ]
            events = (
                pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
            )
            write_tsv(events[COLUMNS], root / "metadata" / f"{split}.tsv", filenames=files)
            _write_durations(
                root / "metadata" / f"{split}_durations.tsv", {n: durations[n] for n in files}
            )
    bar.close()
    return used


def _split_counts(builder: _Builder, files: list[str], durations: dict[str, float]) -> dict:
    events = [len(builder.recordings[n].events) for n in files]
    return {
        "files": len(files),
        "events": sum(events),
        "files_without_events": sum(1 for e in events if e == 0),
        "seconds": round(sum(durations[n] for n in files), 3),
        "filenames": files,
    }


def _write_json(path: Path, info: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def _epilog() -> str:
    lines = ["datasets and the archives SRC should hold (or their extracted contents):"]
    for spec in DATASETS.values():
        archives = ", ".join(a.filename for a in spec.archives if a.required)
        lines.append(f"  {spec.name}: {spec.title}\n      {spec.url}\n      {archives}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: prepare, print the summary table; user errors exit 2 with one message."""
    parser = argparse.ArgumentParser(
        prog="python -m sed.data.prepare",
        description="Convert downloaded TUT sound event datasets into the sed dataset folder "
        "format (DEST/fold{k}/audio/{train,validation,test}, DEST/fold{k}/metadata/*.tsv).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", choices=sorted([*DATASETS, *ALIASES]))
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
