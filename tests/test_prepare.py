"""Tests for sed.data.prepare on tiny fakes of the real archives (same names, folders, formats)."""

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sed.annotations import read_durations, read_tsv
from sed.audio import load_audio
from sed.data import prepare as prep
from sed.data.folder import load_split
from sed.data.prepare import DATASETS, PrepareError, carve_validation, main, normalize_label

SR = 44100
SECONDS = 1.0


def _wav_bytes(channels: int, seed: int, subtype: str = "PCM_24") -> bytes:
    rng = np.random.default_rng(seed)
    data = 0.1 * rng.standard_normal((int(SR * SECONDS), channels))
    buffer = io.BytesIO()
    sf.write(buffer, data, SR, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _zip(path: Path, top: str, files: dict[str, str | bytes]) -> None:
    """A zip like the TUT ones: every member under the dataset's own top folder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for rel, content in files.items():
            archive.writestr(f"{top}/{rel}", content)


def _extract_all(src: Path, out: Path) -> None:
    for archive in sorted(src.glob("*.zip")):
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(out)


# ----------------------------------------------------------------- TUT Sound Events 2016 fake

TUT2016 = "TUT-sound-events-2016-development"
# Raw spellings as in the real .ann files: "(object) ..." prefixes, a trailing space.
HOME_EVENTS = {
    "a030": [(0.1, 0.3, "(object) rustling"), (0.2, 0.6, "dishes")],
    "a031": [(0.0, 0.5, "(object) snapping"), (0.5, 0.9, "object impact")],
    "a032": [(0.1, 0.2, "cutlery"), (0.3, 0.4, "cutlery"), (0.6, 0.8, "water tap running")],
    "a033": [(0.2, 0.7, "washing dishes"), (0.4, 0.5, "drawer")],
    "a034": [(0.1, 0.9, "people walking "), (0.3, 0.35, "glass jingling")],
    "a035": [(0.0, 0.2, "cupboard"), (0.25, 0.75, "object impact")],
    "a036": [(0.5, 0.95, "dishes"), (0.1, 0.2, "(object) rustling")],
    "a037": [],  # a recording without target events: in no training list
}
RES_EVENTS = {
    "a001": [(0.1, 0.8, "bird singing"), (0.2, 0.4, "(object) banging")],
    "a002": [(0.0, 0.9, "car passing by")],
    "a003": [(0.3, 0.6, "children shouting"), (0.1, 0.3, "people speaking")],
    "a004": [(0.4, 0.8, "people walking"), (0.2, 0.9, "wind blowing")],
    "a005": [(0.1, 0.3, "bird singing"), (0.5, 0.7, "people speaking")],
    "a006": [(0.2, 0.6, "car passing by"), (0.6, 0.9, "wind blowing")],
    "a007": [(0.0, 0.4, "people walking"), (0.5, 0.6, "bird singing")],
    "a008": [(0.3, 0.5, "children shouting"), (0.6, 0.8, "(object) banging")],
}


def _ann_3col(events, decimal_comma: bool = False) -> str:
    rows = []
    for onset, offset, label in events:
        on, off = f"{onset:.6f}", f"{offset:.6f}"
        if decimal_comma:
            on, off = on.replace(".", ","), off.replace(".", ",")
        rows.append(f"{on}\t{off}\t{label}\n")
    return "".join(rows)


def _fold_lists(scene: str, recordings: dict, folds: int = 4) -> tuple[dict, dict]:
    """{scene}_fold{k}_{train,test,evaluate}.txt in the documented formats; returns files, tests."""
    names = sorted(recordings)
    per_fold = len(names) // folds
    files, tests = {}, {}
    for k in range(1, folds + 1):
        test = names[(k - 1) * per_fold : k * per_fold]
        tests[k] = [f"{n}.wav" for n in test]

        def rows(subset):
            return "".join(
                f"audio/{scene}/{n}.wav\t{scene}\t{on:.6f}\t{off:.6f}\t{label}\n"
                for n in subset
                for on, off, label in recordings[n]
            )

        setup = "evaluation_setup"
        files[f"{setup}/{scene}_fold{k}_train.txt"] = rows([n for n in names if n not in test])
        files[f"{setup}/{scene}_fold{k}_test.txt"] = "".join(
            f"audio/{scene}/{n}.wav\t{scene}\n" for n in test
        )
        files[f"{setup}/{scene}_fold{k}_evaluate.txt"] = rows(test)
    return files, tests


def make_tut2016(src: Path) -> dict:
    """The three TUT Sound Events 2016 development archives, both scenes; returns test lists."""
    src.mkdir(parents=True, exist_ok=True)
    meta = {"README.md": "TUT Sound events 2016, Development dataset\n", "meta.txt": ""}
    tests = {}
    for scene, recordings in (("home", HOME_EVENTS), ("residential_area", RES_EVENTS)):
        lists, tests[scene] = _fold_lists(scene, recordings)
        meta.update(lists)
        for i, (name, events) in enumerate(recordings.items()):
            meta[f"meta/{scene}/{name}.ann"] = _ann_3col(events, decimal_comma=i == 1)
            meta[f"meta_full/{scene}/{name}_full.ann"] = _ann_3col(events)
    _zip(src / f"{TUT2016}.meta.zip", TUT2016, meta)
    audio = {
        f"audio/{scene}/{name}.wav": _wav_bytes(2, seed=i)
        for scene, recordings in (("home", HOME_EVENTS), ("residential_area", RES_EVENTS))
        for i, name in enumerate(recordings)
    }
    _zip(src / f"{TUT2016}.audio.zip", TUT2016, audio)
    _zip(src / f"{TUT2016}.doc.zip", TUT2016, {"README.html": "<html></html>"})
    return tests


# ----------------------------------------------------------------- TUT Sound Events 2017 fake

TUT2017 = "TUT-sound-events-2017-development"
STREET_EVENTS = {
    "a001": [(0.1, 0.3, "people walking"), (0.35, 0.9, "car")],
    "a003": [(0.0, 0.5, "car"), (0.5, 0.7, "brakes squeaking")],
    "a010": [(0.2, 0.8, "large vehicle"), (0.1, 0.3, "people speaking")],
    "b005": [(0.3, 0.6, "children"), (0.0, 0.2, "car")],
    "b008": [(0.1, 0.9, "car"), (0.4, 0.5, "people walking")],
    "b093": [(0.2, 0.4, "brakes squeaking"), (0.6, 0.9, "large vehicle")],
    "b099": [(0.0, 0.3, "people speaking"), (0.5, 0.8, "children")],
    "b100": [(0.1, 0.6, "people walking "), (0.7, 0.95, "car")],
}


def make_tut2017(src: Path, parts: tuple[int, ...] = (1, 2), recordings=None) -> dict:
    """The TUT Sound Events 2017 development archives (audio in two parts); returns test lists."""
    recordings = recordings or STREET_EVENTS
    src.mkdir(parents=True, exist_ok=True)
    lists, tests = _fold_lists("street", recordings)
    meta = {"README.md": "TUT Sound events 2017\n", **lists}
    for name, events in recordings.items():
        # Verified meta rows: audio file, scene, onset, offset, label, event type, identifier.
        meta[f"meta/street/{name}.ann"] = "".join(
            f"audio/street/{name}.wav\tstreet\t{on:.6f}\t{off:.6f}\t{label}\tmixture\t{name}\n"
            for on, off, label in events
        )
        meta[f"non_verified/meta/street/{name}.ann"] = _ann_3col(events)
    _zip(src / f"{TUT2017}.meta.zip", TUT2017, meta)
    names = sorted(recordings)
    for part, chunk in ((1, names[:5]), (2, names[5:])):
        if part in parts:
            audio = {f"audio/street/{n}.wav": _wav_bytes(2, seed=i) for i, n in enumerate(chunk)}
            _zip(src / f"{TUT2017}.audio.{part}.zip", TUT2017, audio)
    return tests


# ----------------------------------------------------------------- TUT-SED Synthetic 2016 fake

SYNTH = "TUT-SED-synthetic-2016"
SYNTH_RAW_LABELS = [
    "alarms_and_sirens",
    "baby_crying",
    "bird_singing",
    "bus",
    "cat_meowing",
    "crowd_applause",
    "crowd_cheering",
    "dog_barking",
    "footsteps",
    "glass_smash",
    "gun_shot",
    "horsewalk",
    "mixer",
    "motorcycle",
    "rain",
    "thunder",
]
SYNTH_SPLIT = {"train": [1, 2, 3, 4, 5, 6], "validation": [7, 8], "test": [9, 10]}


def _synth_events(i: int) -> list[tuple[float, float, str]]:
    return [
        (0.05 * j, 0.05 * j + 0.3, SYNTH_RAW_LABELS[(i * 3 + j) % 16]) for j in range(3 + i % 3)
    ]


def make_synthetic(src: Path) -> None:
    """TUT-SED Synthetic 2016: meta.zip (meta/*annot-N.txt, evaluation_setup) + audio.1-5.zip."""
    src.mkdir(parents=True, exist_ok=True)
    mix = "TUT-SED-synthetic-2016-mix-{}.wav"
    meta = {
        f"meta/TUT-SED-synthetic-2016-annot-{i}.txt": _ann_3col(_synth_events(i))
        for i in range(1, 11)
    }

    def rows(ids):
        return "".join(
            f"audio/{mix.format(i)}\tsynthetic\t{on:.6f}\t{off:.6f}\t{label}\n"
            for i in ids
            for on, off, label in _synth_events(i)
        )

    trainval = SYNTH_SPLIT["train"] + SYNTH_SPLIT["validation"]
    meta["evaluation_setup/train+validate.txt"] = rows(trainval)
    meta["evaluation_setup/validate.txt"] = rows(SYNTH_SPLIT["validation"])
    meta["evaluation_setup/test.txt"] = "".join(
        f"audio/{mix.format(i)}\n" for i in SYNTH_SPLIT["test"]
    )
    meta["evaluation_setup/evaluate.txt"] = rows(SYNTH_SPLIT["test"])
    _zip(src / f"{SYNTH}.meta.zip", SYNTH, meta)
    for part in range(1, 6):
        ids = [2 * part - 1, 2 * part]
        audio = {f"audio/{mix.format(i)}": _wav_bytes(1, i, "FLOAT") for i in ids}
        _zip(src / f"{SYNTH}.audio.{part}.zip", SYNTH, audio)


# ----------------------------------------------------------------- helpers


def _split_names(root: Path, split: str) -> list[str]:
    return sorted(p.name for p in (root / "audio" / split).iterdir())


def _events_in(recordings: dict, names) -> int:
    return sum(len(recordings[Path(n).stem]) for n in names)


@pytest.fixture(scope="module")
def tut2016_src(tmp_path_factory) -> tuple[Path, dict]:
    src = tmp_path_factory.mktemp("tut2016") / "downloads"
    return src, make_tut2016(src)


@pytest.fixture(scope="module")
def home(tut2016_src, tmp_path_factory) -> tuple[Path, dict, dict]:
    src, tests = tut2016_src
    dest = tmp_path_factory.mktemp("out") / "tut2016_home"
    info = prep.prepare("tut2016_home", src, dest, progress=False)
    return dest, info, tests["home"]


# ----------------------------------------------------------------- tests


def test_normalize_label():
    assert normalize_label("(object) rustling") == "object rustling"
    assert normalize_label("people walking ") == "people walking"
    assert normalize_label("alarms_and_sirens") == "alarms and sirens"
    assert normalize_label("  Car   passing\tby") == "car passing by"
    for spec in DATASETS.values():  # the documented class lists are already normalised
        assert list(spec.classes) == sorted(normalize_label(c) for c in spec.classes)


def test_tut2016_home_from_zips_keeps_official_folds(home):
    dest, info, tests = home
    assert info["classes"] == list(DATASETS["tut2016_home"].classes)
    assert info["source"]["archives"] == [f"{TUT2016}.meta.zip", f"{TUT2016}.audio.zip"]
    assert sorted(info["folds"]) == ["1", "2", "3", "4"]
    all_names = {f"{n}.wav" for n in HOME_EVENTS}
    for k in range(1, 5):
        root = dest / f"fold{k}"
        test = _split_names(root, "test")
        train, validation = _split_names(root, "train"), _split_names(root, "validation")
        assert test == tests[k]  # the official test list, nothing else
        assert sorted(train + validation) == sorted(all_names - set(test))
        assert len(validation) == 1 and not set(validation) & set(train)
        # a037.wav has no events: in no training list, yet part of every other fold's training
        if "a037.wav" not in test:
            assert "a037.wav" in train + validation
        counts = info["folds"][str(k)]
        assert counts["test"]["events"] == _events_in(HOME_EVENTS, test)
        assert counts["train"]["events"] == _events_in(HOME_EVENTS, train)
        assert counts["validation"]["filenames"] == validation


def test_tut2016_home_tsvs_labels_and_audio(home):
    dest, info, _ = home
    root = dest / "fold4"  # a037.wav (no events) is tested in fold 4
    classes = info["classes"]
    labels = set()
    for split in ("train", "validation", "test"):
        data = load_split(root, split, classes=classes)  # the project loader accepts it
        assert sorted(data.filenames) == _split_names(root, split)
        assert set(data.durations.values()) == {SECONDS}
        assert len(data.events) == info["folds"]["4"][split]["events"]
        labels |= set(data.events["event_label"])
    assert {"object rustling", "object snapping", "people walking"} <= labels
    assert not any("(" in label or label != label.strip() for label in labels)
    assert info["label_map"]["(object) rustling"] == "object rustling"
    events, names = read_tsv(root / "metadata" / "test.tsv", return_filenames=True)
    assert "a037.wav" in names and "a037.wav" not in set(events["filename"])
    assert "a037.wav" in read_durations(root / "metadata" / "test_durations.tsv")
    # decimal commas in a031.ann were read as seconds
    a031 = read_tsv(dest / "fold1" / "metadata" / "test.tsv")
    assert a031[a031["filename"] == "a031.wav"]["onset"].tolist() == [0.0, 0.5]
    # binaural audio kept as is; the loader mixes it down
    link = root / "audio" / "test" / "a037.wav"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == (dest / "audio_all" / "a037.wav").resolve()
    assert sf.info(str(link)).channels == 2
    mono = load_audio(link)
    assert mono.dtype == np.float32 and mono.shape == (int(SR * SECONDS),)


def test_audio_stored_once(home):
    dest, info, _ = home
    stored = sorted(p.name for p in (dest / "audio_all").iterdir())
    assert stored == sorted(f"{n}.wav" for n in HOME_EVENTS)
    assert info["audio"]["channels"] == [2] and info["audio"]["sample_rates"] == [SR]
    for fold in dest.glob("fold*"):
        for path in (fold / "audio").rglob("*.wav"):
            assert path.is_symlink()
    written = json.loads((dest / "prepared.json").read_text())
    assert written["dataset"] == "tut2016_home" and written["link_mode"] == "symlink"


def test_extracted_source_matches_zips(tut2016_src, tmp_path):
    src, tests = tut2016_src
    extracted = tmp_path / "extracted"
    _extract_all(src, extracted)  # -> extracted/TUT-sound-events-2016-development/...
    out_zip, out_dir = tmp_path / "from_zip", tmp_path / "from_dir"
    info_zip = prep.prepare("tut2016_residential", src, out_zip, progress=False)
    info_dir = prep.prepare("tut2016_residential", extracted, out_dir, progress=False)
    assert info_dir["source"]["archives"] == []
    assert info_dir["classes"] == list(DATASETS["tut2016_residential"].classes)
    assert info_zip["folds"] == info_dir["folds"]
    for k in range(1, 5):
        assert _split_names(out_dir / f"fold{k}", "test") == tests["residential_area"][k]
        for name in ("train.tsv", "validation.tsv", "test.tsv", "test_durations.tsv"):
            a = (out_zip / f"fold{k}" / "metadata" / name).read_text()
            assert a == (out_dir / f"fold{k}" / "metadata" / name).read_text()
    assert (
        "object banging"
        in read_tsv(out_dir / "fold1" / "metadata" / "train.tsv")["event_label"].tolist()
        + read_tsv(out_dir / "fold1" / "metadata" / "test.tsv")["event_label"].tolist()
    )
    # extracted files are hard-linked (or copied) into audio_all, never symlinked to SRC
    stored = out_dir / "audio_all" / "a001.wav"
    assert stored.is_file() and not stored.is_symlink()


def test_tut2017(tmp_path):
    src = tmp_path / "src"
    tests = make_tut2017(src)
    dest = tmp_path / "tut2017"
    info = prep.prepare("tut2017", src, dest, validation_fraction=0.4, seed=3, progress=False)
    assert info["classes"] == list(DATASETS["tut2017"].classes)
    assert info["source"]["archives"] == [
        f"{TUT2017}.meta.zip",
        f"{TUT2017}.audio.1.zip",
        f"{TUT2017}.audio.2.zip",
    ]
    assert info["scene"] == "street" and not info["warnings"]
    for k in range(1, 5):
        root = dest / f"fold{k}"
        assert _split_names(root, "test") == tests[k]
        train, validation = _split_names(root, "train"), _split_names(root, "validation")
        assert len(validation) == 2  # round(0.4 * 6)
        test_events = read_tsv(root / "metadata" / "test.tsv")
        assert len(test_events) == _events_in(STREET_EVENTS, tests[k])
        assert set(test_events["filename"]) == set(tests[k])  # basenames, not audio/street/...
        train_events = read_tsv(root / "metadata" / "train.tsv", classes=info["classes"])
        assert len(train_events) == _events_in(STREET_EVENTS, train)
    assert sf.info(str(dest / "fold1" / "audio" / "test" / tests[1][0])).channels == 2


def test_synthetic_official_split_as_fold1(tmp_path):
    src = tmp_path / "src"
    make_synthetic(src)
    dest = tmp_path / "tut2016_synthetic"
    info = prep.prepare("tut2016_synthetic", src, dest, validation_fraction=0.5, progress=False)
    assert info["classes"][0] == "alarms and sirens" and len(info["classes"]) == 16
    assert list(info["folds"]) == ["1"]
    root = dest / "fold1"
    for split, ids in SYNTH_SPLIT.items():
        expected = sorted(f"TUT-SED-synthetic-2016-mix-{i}.wav" for i in ids)
        assert _split_names(root, split) == expected  # the official split, fraction ignored
        events = read_tsv(root / "metadata" / f"{split}.tsv", classes=info["classes"])
        assert len(events) == sum(len(_synth_events(i)) for i in ids)
    assert info["label_map"]["gun_shot"] == "gun shot"
    assert info["validation"]["fraction"] is None
    assert any("60/20/20" in w for w in info["warnings"])  # the fake is 6/2/2
    mono = load_audio(root / "audio" / "test" / "TUT-SED-synthetic-2016-mix-9.wav")
    assert mono.shape == (int(SR * SECONDS),)


def test_missing_archives_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PrepareError) as error:
        prep.prepare("tut2017", empty, tmp_path / "out", progress=False)
    message = str(error.value)
    for archive in ("meta.zip", "audio.1.zip", "audio.2.zip"):
        assert f"{TUT2017}.{archive}" in message
    src = tmp_path / "src"
    make_tut2017(src, parts=(1,))
    with pytest.raises(
        PrepareError, match=r"lacks TUT-sound-events-2017-development\.audio\.2\.zip"
    ):
        prep.prepare("tut2017", src, tmp_path / "out2", progress=False)


def test_missing_file_in_extracted_tree_is_named(tut2016_src, tmp_path):
    src, _ = tut2016_src
    extracted = tmp_path / "x"
    _extract_all(src, extracted)
    (extracted / TUT2016 / "meta" / "home" / "a030.ann").unlink()
    with pytest.raises(
        PrepareError, match=r"meta/home/a030\.ann.*TUT-sound-events-2016-development\.meta\.zip"
    ):
        prep.prepare("tut2016_home", extracted, tmp_path / "out", progress=False)
    (extracted / TUT2016 / "audio" / "home" / "a033.wav").unlink()
    with pytest.raises(
        PrepareError, match=r"audio/home/a033\.wav.*TUT-sound-events-2016-development\.audio\.zip"
    ):
        prep.prepare("tut2016_home", extracted, tmp_path / "out", progress=False)
    (extracted / TUT2016 / "evaluation_setup" / "home_fold2_train.txt").unlink()
    with pytest.raises(PrepareError, match=r"evaluation_setup/home_fold2_train\.txt"):
        prep.prepare("tut2016_home", extracted, tmp_path / "out", progress=False)


def test_unknown_label(tmp_path):
    src = tmp_path / "src"
    recordings = dict(STREET_EVENTS, a001=[(0.1, 0.2, "dog barking"), (0.3, 0.4, "car")])
    make_tut2017(src, recordings=recordings)
    with pytest.raises(PrepareError, match=r"'dog barking' in a001\.wav"):
        prep.prepare("tut2017", src, tmp_path / "out", progress=False)
    info = prep.prepare("tut2017", src, tmp_path / "out", allow_unknown_labels=True, progress=False)
    assert "dog barking" in info["classes"] and info["warnings"]


def test_validation_carving_is_deterministic():
    files = [f"f{i}.wav" for i in range(10)]
    labels = {f: {"common"} for f in files}
    labels["f3.wav"] = {"common", "rare"}
    a = carve_validation(files, labels, 0.2, seed=0, fold=1)
    assert a == carve_validation(list(reversed(files)), labels, 0.2, seed=0, fold=1)
    train, validation, kept = a
    assert len(validation) == 2 and kept and "f3.wav" in train
    draws = {tuple(carve_validation(files, labels, 0.2, seed=s, fold=1)[1]) for s in range(8)}
    assert len(draws) > 1
    assert carve_validation(files, labels, 0.0, seed=0, fold=1)[1] == []
    assert len(carve_validation(files, labels, 0.5, seed=0, fold=1)[1]) == 5
    assert len(carve_validation(files[:2], labels, 0.01, seed=0, fold=1)[1]) == 1


def test_rerun_and_foreign_dest(home, tut2016_src, tmp_path):
    dest, info, _ = home
    src, _ = tut2016_src
    again = prep.prepare("tut2016_home", src, dest, progress=False)
    assert again["folds"] == info["folds"]
    with pytest.raises(PrepareError, match="holds a prepared 'tut2016_home'"):
        prep.prepare("tut2016_residential", src, dest, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="not empty"):
        prep.prepare("tut2016_home", src, foreign, progress=False)


def test_symlink_fallback_to_hardlink(tut2016_src, tmp_path, monkeypatch):
    src, _ = tut2016_src

    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    dest = tmp_path / "out"
    info = prep.prepare("tut2016_residential", src, dest, progress=False)
    assert info["link_mode"] == "hardlink"
    entry = dest / "fold1" / "audio" / "test" / "a001.wav"
    assert not entry.is_symlink()
    assert entry.stat().st_ino == (dest / "audio_all" / "a001.wav").stat().st_ino


def test_cli(tut2016_src, tmp_path, capsys):
    src, _ = tut2016_src
    dest = tmp_path / "cli"
    code = main(["tut2016_home", str(src), str(dest), "--validation-fraction", "0.34", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "fold" in out and "validation" in out and "events" in out
    assert json.loads((dest / "prepared.json").read_text())["validation"]["fraction"] == 0.34
    assert len(_split_names(dest / "fold1", "validation")) == 2  # round(0.34 * 6)
    assert main(["tut2017", str(src), str(tmp_path / "x"), "--quiet"]) == 2
    assert "TUT-sound-events-2017-development.meta.zip" in capsys.readouterr().err
    assert main(["tut2016_home", str(src), str(tmp_path / "y"), "--validation-fraction", "1"]) == 2


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_data_configs_match_datasets(name):
    from omegaconf import OmegaConf

    path = Path(__file__).parents[1] / "configs" / "data" / f"{name}.yaml"
    config = OmegaConf.create({"paths": {"data_dir": "/data"}, "data": OmegaConf.load(path)})
    data = OmegaConf.to_container(config, resolve=True)["data"]
    assert data["name"] == name and data["fold"] == 1
    assert data["classes"] == list(DATASETS[name].classes)
    assert data["root"] == f"/data/{name}/fold1"
    assert data["prepare_command"].split()[3:] == [name, "SRC", f"/data/{name}"]


def test_malformed_annotation_names_the_archive_member(tmp_path):
    src = tmp_path / "src"
    make_tut2017(src)
    meta = src / f"{TUT2017}.meta.zip"
    with zipfile.ZipFile(meta) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[f"{TUT2017}/meta/street/b008.ann"] = b"0.1\tabc\tcar\n"
    with zipfile.ZipFile(meta, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    pattern = r"meta\.zip:TUT-sound-events-2017-development/meta/street/b008\.ann.*line 1"
    with pytest.raises(PrepareError, match=pattern):
        prep.prepare("tut2017", src, tmp_path / "out", progress=False)


def test_tut2017_never_takes_a_missing_verified_file_from_non_verified(tmp_path):
    """An extracted TUT 2017 folder (under any name) holds non_verified/{meta,evaluation_setup}
    beside the verified files: that subtree is not a second root, so a verified annotation or
    fold list that is missing is refused, named, instead of replaced by its non-verified twin."""
    src = tmp_path / "src"
    make_tut2017(src)
    extracted = tmp_path / "x"
    _extract_all(src, extracted)
    root = extracted / "my_tut2017"  # renamed: not the archive's own folder name
    (extracted / TUT2017).rename(root)
    twin = root / "non_verified" / "evaluation_setup"
    shutil.copytree(root / "evaluation_setup", twin)
    assert prep.prepare("tut2017", root, tmp_path / "ok", progress=False)["classes"]
    (root / "meta" / "street" / "a001.ann").unlink()
    with pytest.raises(PrepareError, match=r"meta/street/a001\.ann"):
        prep.prepare("tut2017", root, tmp_path / "out", progress=False)
    (root / "meta" / "street" / "a001.ann").write_text("")
    (root / "evaluation_setup" / "street_fold1_train.txt").unlink()
    with pytest.raises(PrepareError, match=r"evaluation_setup/street_fold1_train\.txt"):
        prep.prepare("tut2017", root, tmp_path / "out2", progress=False)
