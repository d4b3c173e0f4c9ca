"""Bad inputs a user can give, as a table: each is refused (or warned about) with a message that
names the file and line or the config key at fault, before work is spent, and the entry points
report it without a traceback from inside a library (issue 11).

In-process cases check the error class and message; a few run `python -m sed.predict`,
`sed.evaluate` or `sed.train` as a user would and check the exit status and stderr. Training
cases fail before any data set is generated or feature computed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from sed.annotations import AnnotationError
from sed.checkpoints import CheckpointError, ModelSpecError, build_model, model_spec
from sed.checkpoints import save_checkpoint as save
from sed.data.folder import infer_classes, load_split
from sed.data.loading import load_corpus
from sed.evaluate import evaluate
from sed.features import LogMel, Normalizer
from sed.inference import ConfigError, load_trained, resolve_device
from sed.models.crnn import CRNN
from sed.postprocess import PostProcessError, PostProcessing
from sed.predict import PredictionError, predict
from sed.report import collect_runs
from sed.runs import refuse_changed_model
from sed.train import train

REPO = Path(__file__).resolve().parents[1]
SR = 8000
SECONDS = 4.0
HEADER = "filename\tonset\toffset\tevent_label\n"
EVENTS = HEADER + "a.wav\t0.5\t1.5\tbeep\nb.wav\t1\t3\thum\n"
FEATURES = {"sample_rate": SR, "n_fft": 256, "win_length": 256, "hop_length": 160, "n_mels": 16}
MODEL = {"n_mels": 16, "num_classes": 2, "channels": 4, "pool_sizes": [2, 2], "hidden": 8}
CRNN_PATH = "sed.models.crnn.CRNN"


# ----------------------------------------------------------------------------- a small world


class World:
    """A dataset folder (three splits of two 4 s clips), a run directory with a checkpoint that
    carries what prediction needs, and helpers to spoil either."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "data"
        self.run_dir = tmp / "run"
        rng = np.random.default_rng(0)
        for split in ("train", "validation", "test"):
            (self.root / "audio" / split).mkdir(parents=True)
            for name in ("a.wav", "b.wav"):
                audio = 0.1 * rng.standard_normal(int(SECONDS * SR))
                sf.write(self.root / "audio" / split / name, audio.astype(np.float32), SR)
            self.metadata(f"{split}.tsv", EVENTS)
        self.checkpoint = self.save_checkpoint(self.run_dir)
        self.checkpoint_bytes = self.checkpoint.read_bytes()

    def metadata(self, name: str, text: str) -> Path:
        path = self.root / "metadata" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def save_checkpoint(self, run_dir: Path, **fields) -> Path:
        torch.manual_seed(0)
        state = {
            "model": CRNN(**MODEL).state_dict(),
            "model_spec": model_spec(CRNN_PATH, MODEL),
            "features": LogMel(**FEATURES).params,
            "classes": ["beep", "hum"],
            "normalizer": Normalizer(np.full(16, -30.0), np.full(16, 15.0)).state_dict(),
            "postprocess": PostProcessing(median_seconds=0.1).to_dict(),
            "config_yaml": yaml.safe_dump(
                {
                    "data": {"root": str(self.root)},
                    "paths": {"cache_dir": str(self.tmp / "cache")},
                    "trainer": {"batch_size": 2},
                }
            ),
            "epoch": 1,
        }
        return save({**state, **fields}, run_dir / "checkpoints" / "best.pt")

    def spoiled(self, **fields) -> Path:
        """A checkpoint in a run directory of its own, with `fields` replaced."""
        return self.save_checkpoint(self.tmp / "spoiled", **fields)

    def evaluate(self, **values):
        cfg = entry("evaluate", **{"run_dir": str(self.run_dir), "device": "cpu", **values})
        return evaluate(cfg, out_dir=self.tmp / "evaluation")

    def predict(self, **values):
        values = {
            "checkpoint": str(self.checkpoint),
            "input": str(self.root / "audio" / "test"),
            "output": str(self.tmp / "out" / "events.tsv"),
            "device": "cpu",
            **values,
        }
        return predict(entry("predict", **values))


def entry(name: str, **values) -> OmegaConf:
    """configs/NAME.yaml without its hydra section, with `values` set."""
    cfg = OmegaConf.load(REPO / "configs" / f"{name}.yaml")
    del cfg["hydra"]
    return OmegaConf.merge(cfg, values)


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> World:
    monkeypatch.chdir(tmp_path)
    return World(tmp_path)


def pwned(world: World) -> Path:
    return world.tmp / "PWNED"


def spec(target: str, **kwargs) -> dict:
    return {"target": target, "kwargs": {**MODEL, **kwargs}}


def train_config(world: World, *overrides: str, run_dir: Path | None = None) -> DictConfig:
    """What `python -m sed.train +experiment=smoke OVERRIDES` runs with SED_ROOT=world.tmp, in
    `run_dir` (default world.tmp/train)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["+experiment=smoke", *overrides])
    with open_dict(cfg):
        cfg.paths.root_dir = str(world.tmp)
        cfg.paths.output_dir = str(run_dir or world.tmp / "train")
    return cfg


def resumed(world: World, *overrides: str) -> dict:
    """Resume, with `overrides`, a run whose last.pt a run without them wrote."""
    state = {"epoch": 1, "config_yaml": OmegaConf.to_yaml(train_config(world), resolve=True)}
    save(state, world.tmp / "train" / "checkpoints" / "last.pt")
    return train(train_config(world, "trainer.resume=true", *overrides))


def corpus(world: World) -> tuple:
    return load_corpus(world.root, LogMel(**FEATURES), world.tmp / "cache")


def moved(world: World) -> Path:
    """Move the dataset; returns its new root."""
    new = world.tmp / "moved"
    shutil.move(world.root, new)
    return new


# ----------------------------------------------------------------------------- the table

# case -> (what the user does, expected error, regex the message must match: file and line, or key)
IN_PROCESS: dict[str, tuple[Callable[[World], object], type[Exception], str]] = {
    "checkpoint model_spec names subprocess.run": (
        lambda w: load_trained(
            w.spoiled(
                model_spec={
                    "target": "subprocess.run",
                    "kwargs": {"args": ["touch", str(pwned(w))]},
                }
            )
        ),
        ModelSpecError,
        r"spoiled/checkpoints/best\.pt, model_spec: model class 'subprocess\.run' is not allowed",
    ),
    "checkpoint model_spec names os.system": (
        lambda w: load_trained(w.spoiled(model_spec={"target": "os.system", "kwargs": {}})),
        ModelSpecError,
        r"best\.pt, model_spec: model class 'os\.system' is not allowed",
    ),
    "checkpoint model_spec names a torch module": (
        lambda w: load_trained(w.spoiled(model_spec=spec("torch.nn.Linear"))),
        ModelSpecError,
        r"best\.pt, model_spec: model class 'torch\.nn\.Linear' is not allowed",
    ),
    "checkpoint model_spec names a module, not a class": (
        lambda w: load_trained(w.spoiled(model_spec=spec("sed.models.crnn.nn"))),
        ModelSpecError,
        r"best\.pt, model_spec: 'sed\.models\.crnn\.nn' is not an nn\.Module class of sed\.models",
    ),
    "checkpoint model_spec kwarg is not a plain value": (
        lambda w: load_trained(w.spoiled(model_spec=spec(CRNN_PATH, loop=torch.zeros(1)))),
        ModelSpecError,
        r"best\.pt, model_spec: kwargs\['loop'\] must be a plain value",
    ),
    "checkpoint model_spec kwarg unknown": (
        lambda w: load_trained(w.spoiled(model_spec=spec(CRNN_PATH, bogus=1))),
        ModelSpecError,
        r"best\.pt, model_spec: cannot build sed\.models\.crnn\.CRNN: .*'bogus'",
    ),
    "checkpoint features with an unknown key": (
        lambda w: load_trained(w.spoiled(features={**FEATURES, "window_fn": "hann"})),
        CheckpointError,
        r"best\.pt, features: .*'window_fn'",
    ),
    "checkpoint postprocess threshold 1.5": (
        lambda w: load_trained(w.spoiled(postprocess={"threshold": 1.5})),
        CheckpointError,
        r"best\.pt, postprocess: postprocess\.threshold must lie in \(0, 1\)",
    ),
    "train.tsv filename ../ leaves the split": (
        lambda w: (
            w.metadata("train.tsv", EVENTS + "../test/a.wav\t0\t1\tbeep\n"),
            load_split(w.root, "train"),
        ),
        AnnotationError,
        r"train\.tsv, line 4: filename '\.\./test/a\.wav' leaves the split's audio folder",
    ),
    "offset 99 s in a 4 s clip": (
        lambda w: (
            w.metadata("test.tsv", EVENTS + "a.wav\t2\t99\tbeep\n"),
            load_split(w.root, "test"),
        ),
        AnnotationError,
        r"test\.tsv, line 4: offset 99 s lies beyond the end of a\.wav \(4 s\)",
    ),
    "durations file says 400 s for 4 s clips": (
        lambda w: (
            w.metadata("test_durations.tsv", "filename\tduration\na.wav\t400\nb.wav\t400\n"),
            load_split(w.root, "test"),
        ),
        AnnotationError,
        r"test_durations\.tsv, line 2: duration 400 s contradicts the audio of a\.wav \(4 s\)",
    ),
    "CAR beside car": (
        lambda w: (w.metadata("train.tsv", EVENTS + "b.wav\t3\t3.5\tHUM\n"), infer_classes(w.root)),
        AnnotationError,
        r"train\.tsv, line 4: event_label 'HUM' differs from 'hum' \(line 3\) only in case",
    ),
    "validation label in another case than the classes": (
        lambda w: (
            w.metadata("validation.tsv", HEADER + "a.wav\t0\t1\tBeep\n"),
            load_split(w.root, "validation", classes=["beep", "hum"]),
        ),
        AnnotationError,
        r"validation\.tsv, line 2: unknown event_label 'Beep'.*did you mean 'beep'",
    ),
    "TSV with spaces instead of tabs": (
        lambda w: (w.metadata("train.tsv", HEADER + "a.wav 0.5 1.5 beep\n"), infer_classes(w.root)),
        AnnotationError,
        r"train\.tsv, line 2: columns are separated by spaces; use tabs",
    ),
    "evaluate postprocess.threshold=1.5": (
        lambda w: w.evaluate(postprocess={"threshold": 1.5}),
        PostProcessError,
        r"postprocess\.threshold must lie in \(0, 1\), got 1\.5",
    ),
    "evaluate postprocess.onset_shift=soon": (
        lambda w: w.evaluate(postprocess={"onset_shift": "soon"}),
        PostProcessError,
        r"postprocess\.onset_shift must be numbers, got 'soon'",
    ),
    "predict postprocess.offset_shift=nan": (
        lambda w: w.predict(postprocess={"offset_shift": float("nan")}),
        PostProcessError,
        r"postprocess\.offset_shift must be finite",
    ),
    "predict postprocess.threshold=0": (
        lambda w: w.predict(postprocess={"threshold": 0.0}),
        PostProcessError,
        r"postprocess\.threshold must lie in \(0, 1\), got 0\.0",
    ),
    "train postprocess.threshold=1 (PostProcessing of the config)": (
        lambda w: PostProcessing(**{"threshold": 1.0, "median_seconds": 0.3}),
        PostProcessError,
        r"postprocess\.threshold must lie in \(0, 1\), got 1\.0",
    ),
    "evaluate sweep thresholds outside (0, 1)": (
        lambda w: w.evaluate(sweep_thresholds=True, thresholds=[0.5, 1.5]),
        ConfigError,
        r"thresholds=\[0\.5, 1\.5\]: every threshold must lie in \(0, 1\)",
    ),
    # The checkpoint does not exist: the output check must come before any work.
    "predict output= a folder": (
        lambda w: w.predict(output=str(w.tmp), checkpoint=str(w.tmp / "none.pt")),
        ConfigError,
        r"output=.* is a folder; give a file",
    ),
    "predict device=gpu": (
        lambda w: w.predict(device="gpu"),
        ConfigError,
        r"device='gpu' is not a device; use auto, cpu, cuda or cuda:N",
    ),
    "evaluate device=gpu": (
        lambda w: w.evaluate(device="gpu"),
        ConfigError,
        r"device='gpu' is not a device",
    ),
    "evaluate a run whose dataset moved": (
        lambda w: (moved(w), w.evaluate()),
        ConfigError,
        r"data\.root=.*/data does not exist \(the run's; if the dataset moved, pass data\.root=",
    ),
    "evaluate data.root= a missing folder": (
        lambda w: w.evaluate(data={"root": str(w.tmp / "nowhere")}),
        ConfigError,
        r"data\.root=.*/nowhere does not exist$",
    ),
    "evaluate run_dir= not a run": (
        lambda w: evaluate(entry("evaluate", run_dir=str(w.tmp)), out_dir=w.tmp / "e"),
        ConfigError,
        r"run_dir=.* is not a sed\.train run",
    ),
    "evaluate tune_class_thresholds=2": (
        lambda w: w.evaluate(tune=True, tune_class_thresholds=2),
        ConfigError,
        r"^tune_class_thresholds must be true, false or null, got 2$",
    ),
    "evaluate tune_max_segment_f1_drop=2": (
        lambda w: w.evaluate(tune=True, tune_max_segment_f1_drop=2),
        ConfigError,
        r"^tune_max_segment_f1_drop must be null or a number in \[0, 1\], got 2$",
    ),
    "evaluate tune_per_class=maybe": (
        lambda w: w.evaluate(tune=True, tune_per_class="maybe"),
        ConfigError,
        r"^tune_per_class must be true, false or null, got 'maybe'$",
    ),
    "evaluate splits=[dev]": (
        lambda w: w.evaluate(splits=["dev"]),
        ConfigError,
        r"splits=\['dev'\]",
    ),
    "train seed=abc": (
        lambda w: train(train_config(w, "seed=abc")),
        ConfigError,
        r"^seed must be an integer, got 'abc'$",
    ),
    "train optimizer.lr=-1": (
        lambda w: train(train_config(w, "optimizer.lr=-1")),
        ConfigError,
        r"^optimizer\.lr must be a number > 0, got -1\.0$",
    ),
    # A wrong type or an unknown key is refused while the config is composed (sed.schemas):
    # OmegaConf's message names the key.
    "train optimizer.lr=abc": (
        lambda w: train(train_config(w, "optimizer.lr=abc")),
        ConfigCompositionException,
        r"^Error merging override optimizer\.lr=abc\n.*'abc'.*could not be converted to Float"
        r"\n\s+full_key: optimizer\.lr",
    ),
    "train trainer.epoch=3 (a typo)": (
        lambda w: train(train_config(w, "trainer.epoch=3")),
        ConfigCompositionException,
        r"Key 'epoch' not in 'TrainerSettingsSchema'\n\s+full_key: trainer\.epoch",
    ),
    "train augment.mix_prob=often": (
        lambda w: train(train_config(w, "augment.mix_prob=often")),
        ConfigCompositionException,
        r"could not be converted to Float\n\s+full_key: augment\.mix_prob",
    ),
    "train data.generate.n_train=many": (
        lambda w: train(train_config(w, "data.generate.n_train=many")),
        ConfigCompositionException,
        r"could not be converted to Integer\n\s+full_key: data\.generate\.n_train",
    ),
    "train optimizer.weight_decay=-1": (
        lambda w: train(train_config(w, "optimizer.weight_decay=-1")),
        ConfigError,
        r"^optimizer: Invalid weight_decay value: -1\.0$",
    ),
    "train trainer.max_minutes=-1": (
        lambda w: train(train_config(w, "trainer.max_minutes=-1")),
        ConfigError,
        r"^trainer\.max_minutes must be >= 0 or null, got -1\.0$",
    ),
    "train trainer.ema_decay=1.5": (
        lambda w: train(train_config(w, "trainer.ema_decay=1.5")),
        ConfigError,
        r"^trainer\.ema_decay must lie in \(0, 1\) or be null, got 1\.5$",
    ),
    "train tuning.space.offset_shift=[]": (
        lambda w: train(train_config(w, "tuning.space.offset_shift=[]")),
        ConfigError,
        r"^tuning\.space\.offset_shift must list at least one value$",
    ),
    "train trainer.epochs=abc": (
        lambda w: train(train_config(w, "trainer.epochs=abc")),
        ConfigCompositionException,
        r"^Error merging override trainer\.epochs=abc\n.*could not be converted to Integer"
        r"\n\s+full_key: trainer\.epochs",
    ),
    "train trainer.epochs=0": (
        lambda w: train(train_config(w, "trainer.epochs=0")),
        ConfigError,
        r"^trainer\.epochs must be >= 1, got 0$",
    ),
    "train +trainer.unknown=1": (
        lambda w: train(train_config(w, "+trainer.unknown=1")),
        ConfigError,
        r"^trainer\.unknown is not a setting of trainer \(known: _target_, amp, ",
    ),
    "train +model.width=3": (
        lambda w: train(train_config(w, "+model.width=3")),
        ConfigError,
        r"^model\.width is not a setting of model \(known: .*dropout",
    ),
    "train +tuning.space.thresholdz=[0.5]": (
        lambda w: train(train_config(w, "+tuning.space.thresholdz=[0.5]")),
        ConfigError,
        r"^tuning\.space\.thresholdz is not a setting of tuning\.space \(known: ",
    ),
    "train monitor typo": (
        lambda w: train(train_config(w, "monitor=validation/frame_f2")),
        ConfigError,
        r"^monitor='validation/frame_f2' is not one of \['validation_loss', .*'validation/frame_f1'",
    ),
    "train monitor an event metric not computed every epoch": (
        lambda w: train(
            train_config(w, "trainer.val_event_metrics=false", "monitor=validation/event_f1")
        ),
        ConfigError,
        r"monitor='validation/event_f1' is not one of .* \(trainer\.val_event_metrics=false\)$",
    ),
    "train data.classes=car (a string, not a list)": (
        lambda w: train(train_config(w, "data.classes=car")),
        ConfigError,
        r"^data\.classes must be a list of class names, .*\[car\] for one class\), got 'car'$",
    ),
    "train data.classes=[car,car]": (
        lambda w: train(train_config(w, "data.classes=[car,car]")),
        ConfigError,
        r"^data\.classes names a class twice: \['car', 'car'\]$",
    ),
    "train gamma=-1": (
        lambda w: train(train_config(w, "gamma=-1")),
        ConfigError,
        r"^sampler: gamma must be >= 0, got -1",
    ),
    "train model.dropout=2": (
        lambda w: train(train_config(w, "model.dropout=2")),
        ModelSpecError,
        r"^model: cannot build sed\.models\.crnn\.CRNN: .*dropout",
    ),
    "train in a run directory that holds a run": (
        lambda w: ((w.tmp / "train" / "checkpoints").mkdir(parents=True), train(train_config(w))),
        ConfigError,
        r"/train already holds a run: continue it with trainer\.resume=true, or give another "
        r"hydra\.run\.dir$",
    ),
    "train in a run directory that cannot be written": (
        lambda w: (
            (w.tmp / "file").write_text(""),
            train(train_config(w, run_dir=w.tmp / "file" / "run")),
        ),
        ConfigError,
        r"^cannot write the run directory .*/file/run \(Not a directory\); give a writable one",
    ),
    "train resume with another learning rate": (
        lambda w: resumed(w, "optimizer.lr=0.01"),
        ConfigError,
        r"^trainer\.resume=true, but the config differs from the one .*/train/checkpoints/last\.pt "
        r"was trained with: optimizer\.lr: 0\.001 -> 0\.01\. Resume with the checkpoint's",
    ),
    "train resume with another sampler speed": (
        lambda w: resumed(w, "gamma=0.5", "sampler.p_min=0.1"),
        ConfigError,
        r"with: gamma: 1\.0 -> 0\.5; sampler\.gamma: 1\.0 -> 0\.5; sampler\.p_min: 0\.05 -> 0\.1\.",
    ),
    "train resume with another model size": (
        lambda w: resumed(w, "model.hidden=32", "trainer.epochs=5"),
        ConfigError,
        r"with: model\.hidden: 16 -> 32\. ",  # trainer.epochs may change
    ),
    "validation.tsv header only (an empty split)": (
        lambda w: (w.metadata("validation.tsv", HEADER), corpus(w)),
        AnnotationError,
        r"^.*/metadata/validation\.tsv lists no files: the validation split is empty$",
    ),
    "test.tsv and test_durations.tsv header only": (
        lambda w: (
            w.metadata("test.tsv", HEADER),
            w.metadata("test_durations.tsv", "filename\tduration\n"),
            corpus(w),
        ),
        AnnotationError,
        r"/test\.tsv and .*/test_durations\.tsv list no files: the test split is empty$",
    ),
    "predict a folder holding an unreadable file": (
        lambda w: (
            (w.root / "audio" / "test" / "broken.wav").write_bytes(b"RIFF not audio"),
            w.predict(),
        ),
        PredictionError,
        r"1 of 3 input file\(s\) could not be read \(the other 2 are in .*events\.tsv\):\n"
        r"  broken\.wav: cannot read audio file .*broken\.wav",
    ),
}


def _chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    return chain


@pytest.mark.parametrize("case", list(IN_PROCESS))
def test_bad_input_is_refused_naming_the_culprit(world: World, case: str):
    action, error, message = IN_PROCESS[case]
    with pytest.raises(error) as caught:
        action(world)
    text = "\n".join(str(e) for e in _chain(caught.value))  # Hydra's message, then its cause's
    assert re.search(message, text), text
    assert not pwned(world).exists()  # nothing a checkpoint names was run


def test_an_empty_split_is_refused_before_any_feature_is_computed(world: World):
    world.metadata("test.tsv", HEADER)
    with pytest.raises(AnnotationError, match="the test split is empty"):
        corpus(world)
    assert not (world.tmp / "cache").exists()


def test_a_full_disk_keeps_the_previous_checkpoint(world: World):
    path = world.checkpoint
    before = path.read_bytes()

    def full_disk(state, handle):
        handle.write(b"PK half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    with (
        mock.patch("sed.checkpoints.torch.save", full_disk),
        pytest.raises(CheckpointError) as caught,
    ):
        save({"epoch": 2}, path)
    assert str(caught.value) == (
        f"cannot write checkpoint {path} (No space left on device); the previous one is intact"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temporary file left
    with mock.patch("sed.checkpoints.torch.save", full_disk), pytest.raises(CheckpointError) as new:
        save({"epoch": 1}, world.tmp / "new.pt")
    assert str(new.value).endswith("(No space left on device); nothing was written")


def test_resume_refuses_a_checkpoint_of_other_classes(tmp_path: Path):
    meta = {"classes": ["beep", "hum"], "model_spec": model_spec(CRNN_PATH, MODEL)}
    refuse_changed_model(meta, dict(meta), tmp_path / "last.pt")  # the same: accepted
    with pytest.raises(
        ConfigError,
        match=r"the data give classes \['beep', 'hum'\], while .*last\.pt holds \['beep'\]",
    ):
        refuse_changed_model(meta, {**meta, "classes": ["beep"]}, tmp_path / "last.pt")


def test_duplicate_rows_are_a_warning_naming_the_lines(world: World, caplog):
    world.metadata("test.tsv", EVENTS + "a.wav\t0.5\t1.50\tbeep\n")
    with caplog.at_level("WARNING", logger="sed.annotations"):
        data = load_split(world.root, "test")
    assert len(data.events) == 2
    assert re.search(
        r"test\.tsv: duplicate event rows ignored \(line 4 repeats line 2\)", caplog.text
    )


def test_an_offset_a_rounding_error_past_the_end_is_clipped_silently(world: World, caplog):
    world.metadata("test.tsv", HEADER + "a.wav\t3.5\t4.02\tbeep\n")
    with caplog.at_level("WARNING"):
        data = load_split(world.root, "test")
    assert data.events["offset"].tolist() == [SECONDS] and not caplog.text


def test_build_model_allows_only_sed_models_classes_with_plain_kwargs():
    assert isinstance(build_model(model_spec(CRNN_PATH, MODEL)), CRNN)
    assert isinstance(build_model(model_spec("sed.models.CRNN", MODEL)), CRNN)
    for target in ("sed.models.crnn._HoistedLoop", "sed.models..crnn.CRNN", "sed.modelsx.CRNN"):
        with pytest.raises(ModelSpecError, match=f"config model: .*{re.escape(target)}"):
            build_model(model_spec(target, MODEL), where="config model")
    with pytest.raises(ModelSpecError, match=r"kwargs\['pool_sizes'\] must be a plain value"):
        build_model(model_spec(CRNN_PATH, {**MODEL, "pool_sizes": [np.int64(2)]}))
    with pytest.raises(ModelSpecError, match="cannot build .*dropout must be in"):
        build_model(model_spec(CRNN_PATH, {**MODEL, "dropout": 2.0}))


def test_resolve_device_names_the_key():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"trainer\.device='tpu0'"):
        resolve_device("tpu0", key="trainer.device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device='cuda' asked for, but CUDA is not"):
            resolve_device("cuda")


def test_a_stored_threshold_out_of_range_can_be_overridden(world: World):
    # A run trained before thresholds were checked keeps its weights usable.
    checkpoint = world.spoiled(postprocess={"threshold": 1.5})
    with pytest.raises(CheckpointError, match=r"override it: postprocess\.KEY=VALUE"):
        world.predict(checkpoint=str(checkpoint))
    events = world.predict(checkpoint=str(checkpoint), postprocess={"threshold": 0.5})
    assert list(events.columns) == ["filename", "onset", "offset", "event_label"]


def test_evaluate_follows_a_dataset_that_moved(world: World):
    before = world.evaluate(splits=["test"])
    new_root = moved(world)
    after = world.evaluate(splits=["test"], data={"root": str(new_root)})
    assert after == before


def test_predict_clips_offsets_to_the_file_and_keeps_the_readable_files(world: World):
    # A clip of 4 s has 1 + 4 * 8000 // 160 = 201 frames: the last one ends at 4.02 s.
    sf.write(world.root / "audio" / "test" / "c.flac", np.zeros(SR, np.float32), SR)
    (world.root / "audio" / "test" / "empty.wav").write_bytes(b"")
    out = world.tmp / "out" / "events.tsv"
    with pytest.raises(PredictionError, match=r"empty\.wav"):
        world.predict(postprocess={"threshold": 0.01, "median_seconds": 0.0})
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert set(table["filename"]) == {"a.wav", "b.wav", "c.flac"}
    ends = table.groupby("filename")["offset"].max()
    assert ends["a.wav"] == SECONDS and ends["c.flac"] == 1.0


# ----------------------------------------------------------------------------- as a user runs it


def run(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SED_ROOT": str(cwd), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def library_frames(stderr: str) -> list[str]:
    """Traceback lines of frames outside the sed package (a library's or Python's own)."""
    frames = re.findall(r'^\s*File "([^"]+)"', stderr, flags=re.MULTILINE)
    return [f for f in frames if not f.startswith(str(REPO / "sed")) and f != "<string>"]


def _evil(world: World) -> list[str]:
    checkpoint = world.spoiled(
        model_spec={"target": "subprocess.run", "kwargs": {"args": ["touch", str(pwned(world))]}}
    )
    return [f"checkpoint={checkpoint}", f"input={world.root / 'audio' / 'test'}"]


def _broken(world: World) -> list[str]:
    (world.root / "audio" / "test" / "broken.wav").write_bytes(b"RIFF not audio")
    return [f"checkpoint={world.checkpoint}", f"input={world.root / 'audio' / 'test'}"]


def _check_broken(world: World) -> None:
    table = pd.read_csv(world.tmp / "events.tsv", sep="\t", keep_default_na=False)
    assert set(table["filename"]) == {"a.wav", "b.wav"}
    assert table["offset"].max() <= SECONDS
    assert not (world.tmp / "predict.log").exists()


def _check_no_folders(world: World) -> None:
    assert not (world.tmp / "no_such_run").exists()


# case -> (module, overrides, exit status, regex stderr must match, further checks)
SUBPROCESS: dict[str, tuple[str, Callable[[World], list[str]], int, str, Callable | None]] = {
    "predict: checkpoint naming subprocess.run": (
        "sed.predict",
        _evil,
        1,
        r"sed\.predict: error: checkpoint .*best\.pt, model_spec: model class 'subprocess\.run'",
        None,
    ),
    "predict: device=gpu": (
        "sed.predict",
        lambda w: [f"checkpoint={w.checkpoint}", f"input={w.root}", "device=gpu"],
        1,
        r"sed\.predict: error: device='gpu' is not a device",
        None,
    ),
    "predict: one unreadable file among others": (
        "sed.predict",
        _broken,
        1,
        r"1 of 3 input file\(s\) could not be read .*\n  broken\.wav: cannot read audio file",
        _check_broken,
    ),
    "evaluate: run_dir that does not exist": (
        "sed.evaluate",
        lambda w: [f"run_dir={w.tmp / 'no_such_run'}"],
        1,
        r"sed\.evaluate: error: run_dir=.*no_such_run is not a sed\.train run",
        _check_no_folders,
    ),
    "train: optimizer.lr=-1": (
        "sed.train",
        lambda w: ["+experiment=smoke", "optimizer.lr=-1", f"hydra.run.dir={w.tmp / 'train'}"],
        1,
        r"^sed\.train: error: optimizer\.lr must be a number > 0, got -1\.0\n$",
        lambda w: not (w.tmp / "train" / "checkpoints").exists(),
    ),
    "train: trainer.epochs=abc (refused while composing)": (
        "sed.train",
        lambda w: ["+experiment=smoke", "trainer.epochs=abc", f"hydra.run.dir={w.tmp / 'train'}"],
        1,
        r"^Error merging override trainer\.epochs=abc\n.*could not be converted to Integer\n"
        r"\s+full_key: trainer\.epochs\n",
        lambda w: not (w.tmp / "train").exists(),
    ),
    "train: hydra.run.dir that cannot be written": (
        "sed.train",
        lambda w: [
            "+experiment=smoke",
            f"hydra.run.dir={w.root / 'metadata' / 'train.tsv' / 'run'}",
        ],
        1,
        r"^sed\.train: error: hydra\.run\.dir=.*/train\.tsv/run cannot be written \(Not a "
        r"directory\)\n$",
        None,
    ),
    "train: a run directory that holds another run": (
        "sed.train",
        lambda w: ["+experiment=smoke", f"hydra.run.dir={w.run_dir}"],
        1,
        r"^sed\.train: error: .*/run already holds a run: continue it with trainer\.resume=true",
        lambda w: (
            (w.run_dir / "checkpoints" / "best.pt").read_bytes() == w.checkpoint_bytes
            and not (w.run_dir / ".hydra").exists()  # Hydra did not write over the run's files
        ),
    ),
    "evaluate: data.root=NEW after the dataset moved": (
        "sed.evaluate",
        lambda w: [f"run_dir={w.run_dir}", f"data.root={moved(w)}", "splits=[test]"],
        0,
        r"",
        lambda w: (
            [
                json.loads(path.read_text())["status"]
                for path in (w.run_dir / "evaluations").glob("*/status.json")
            ]
            == ["finished"]
        ),
    ),
}


@pytest.mark.parametrize("case", list(SUBPROCESS))
def test_entry_point_reports_bad_input_in_one_line(world: World, case: str):
    module, overrides, status, message, check = SUBPROCESS[case]
    proc = run(module, *overrides(world), cwd=world.tmp)
    assert proc.returncode == status, proc.stderr[-3000:]
    assert re.search(message, proc.stderr), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not library_frames(proc.stderr)
    assert not pwned(world).exists()
    if check is not None:
        assert check(world) is not False


def test_train_refuses_a_threshold_outside_zero_one_before_training(tmp_path: Path):
    proc = run(
        "sed.train",
        "+experiment=smoke",
        "postprocess.threshold=1.5",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "postprocess.threshold must lie in (0, 1), got 1.5" in proc.stderr
    assert not library_frames(proc.stderr), proc.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints").exists()  # no epoch was trained


# `python -m sed.train` failing for a reason that is no bad input (a bug, a library's error).
FAILING = """
import runpy
import sed.inference

def fail(*args, **kwargs):
    raise RuntimeError("boom\\nsecond line of the reason")

sed.inference.resolve_device = fail
runpy.run_module("sed.train", run_name="__main__", alter_sys=True)
"""


def test_a_failing_train_run_prints_its_traceback_once_and_logs_it(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", FAILING, "+experiment=smoke", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env={**os.environ, "SED_ROOT": str(tmp_path), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "RuntimeError: boom\nsecond line of the reason\n" in proc.stderr
    log = (run_dir / "smoke.log").read_text()
    assert log.count("Traceback") == 1 and "sed.train failed" in log
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and status["entry"] == "train"
    assert status["message"] == "RuntimeError: boom\nsecond line of the reason"
    runs = collect_runs(run_dir)
    assert runs["status"].tolist() == ["failed"]
    assert runs["error"].tolist() == ["status.json: RuntimeError: boom\nsecond line of the reason"]
