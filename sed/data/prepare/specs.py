"""The public datasets sed.data.prepare converts: their archives, lists, annotations and classes.

A DatasetSpec per dataset (DATASETS), and normalize_label, the one spelling of a class label
every dataset's annotations are mapped to.
"""

import re
from dataclasses import dataclass

__all__ = ["DATASETS", "DatasetSpec", "normalize_label"]


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
