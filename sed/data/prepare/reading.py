"""Reading a dataset out of the source tree: recordings, normalised events, per-fold splits.

`_Reader` reads the evaluation_setup lists and each listed recording's annotation, checks the
labels against the dataset's classes, and carves a validation set out of each fold's training
recordings where the dataset has none (carve_validation).
"""

import random
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath

import pandas as pd

from sed.annotations import AnnotationError, read_ann
from sed.data.prepare.source import _holds, _Tree
from sed.data.prepare.specs import DatasetSpec, normalize_label
from sed.errors import PrepareError

MAX_DRAWS = 1000


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
        """The output class list; raises on labels outside the documented classes unless allowed
        (allow_unknown: keep them as extra classes)."""
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
        """Carve each fold's validation set unless official; how it was chosen (prepared.json)."""
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
