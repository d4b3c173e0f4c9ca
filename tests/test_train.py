"""End-to-end: configs compose, a smoke run writes everything DESIGN.md lists, resume is exact,
multiruns work, and evaluate / predict run from a finished run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("[!_]*.yaml"))


def run_module(module: str, *overrides: str, root: Path, timeout: int = 300) -> str:
    """python -m MODULE overrides..., with data and outputs under `root`; returns stdout+stderr."""
    # One thread: the CRNN's per-frame ops are tiny, and thread contention on a busy 2-core CI
    # machine makes them many times slower.
    env = {**os.environ, "SED_ROOT": str(root), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{module} {overrides} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sed_root")


@pytest.fixture(scope="module")
def smoke_run(workdir: Path) -> Path:
    run_dir = workdir / "outputs" / "smoke_run"
    run_module("sed.train", "+experiment=smoke", f"hydra.run.dir={run_dir}", root=workdir)
    return run_dir


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
    assert cfg.model._target_ == "sed.models.crnn.CRNN"
    assert cfg.sampler._target_.startswith("sed.sampling.")
    assert cfg.trainer.epochs >= 1 and cfg.data.name


def test_defaults_name_no_experiment() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train")
    assert "experiment" not in cfg
    assert cfg.data.name == "synthetic" and cfg.model.label_feedback


def test_smoke_run_writes_design_layout(smoke_run: Path) -> None:
    for rel in (
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "metrics.json",
        "history.csv",
        "batches.csv",
        "predictions/validation.tsv",
        "predictions/test.tsv",
        "classwise/test.csv",
        "plots/learning_curves.png",
        "plots/teacher_forcing.png",
    ):
        assert (smoke_run / rel).is_file(), rel
    assert list((smoke_run / "plots").glob("events_test_*.png"))
    assert list((smoke_run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    for key in (
        "test/event_f1",
        "test/event_er",
        "test/segment_f1",
        "test/segment_er",
        "test/frame_f1",
        "test/frame_er",
        "test/psds1",
        "best_epoch",
        "epochs",
        "train_seconds",
    ):
        assert key in metrics, key
    for key in ("test/event_f1", "test/segment_f1", "test/frame_f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["test/event_er"] >= 0
    history = pd.read_csv(smoke_run / "history.csv")
    assert list(history["epoch"]) == list(range(1, metrics["epochs"] + 1))
    assert {"train_loss", "validation_loss", "validation/frame_f1", "p_tf_start"} <= set(history)
    batches = pd.read_csv(smoke_run / "batches.csv")
    assert batches["batch"].tolist() == list(range(len(batches)))
    assert batches["p_tf"].is_monotonic_decreasing
    state = torch.load(smoke_run / "checkpoints" / "best.pt", weights_only=True)
    assert state["classes"] and state["features"]["sample_rate"] == 16000


def test_resume_equals_uninterrupted(workdir: Path) -> None:
    common = ["+experiment=smoke", "trainer.epochs=3", "trainer.patience=10"]
    full = workdir / "outputs" / "full"
    part = workdir / "outputs" / "part"
    run_module("sed.train", *common, f"hydra.run.dir={full}", root=workdir)
    # Interrupted: stop after the first epoch (as a crash after its checkpoint would), then resume.
    run_module("sed.train", *common, "trainer.max_minutes=0", f"hydra.run.dir={part}", root=workdir)
    assert json.loads((part / "metrics.json").read_text())["epochs"] == 1
    out = run_module(
        "sed.train", *common, "trainer.resume=true", f"hydra.run.dir={part}", root=workdir
    )
    assert "resumed from" in out
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((part / "metrics.json").read_text())
    for key in ma:
        if "seconds" not in key:
            assert ma[key] == mb[key], key
    assert pd.read_csv(full / "batches.csv").equals(pd.read_csv(part / "batches.csv"))


def test_two_job_multirun(workdir: Path) -> None:
    sweep = workdir / "outputs" / "sweep"
    run_module(
        "sed.train",
        "-m",
        "+experiment=smoke",
        "trainer.epochs=1",
        "sampler.gamma=0.01,0.1",
        f"hydra.sweep.dir={sweep}",
        root=workdir,
    )
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file()
    overrides = (sweep / "1" / ".hydra" / "overrides.yaml").read_text()
    assert "sampler.gamma=0.1" in overrides


def test_evaluate_reuses_checkpoint(smoke_run: Path, workdir: Path) -> None:
    out = run_module(
        "sed.evaluate",
        f"run_dir={smoke_run}",
        "postprocess.threshold=0.3",
        "sweep_thresholds=true",
        "thresholds=[0.3,0.5]",
        root=workdir,
    )
    assert "F1 / ER against threshold" in out
    evaluations = sorted((smoke_run / "evaluations").iterdir())
    metrics = json.loads((evaluations[-1] / "metrics.json").read_text())
    assert "test/event_f1" in metrics and "validation/psds1" in metrics
    table = pd.read_csv(evaluations[-1] / "thresholds.csv")
    assert sorted(table["threshold"].unique()) == [0.3, 0.5]


def test_predict_on_stereo_44k(smoke_run: Path, workdir: Path, tmp_path: Path) -> None:
    audio = tmp_path / "in"
    audio.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(3.0 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 1000 * t), 0.05 * rng.standard_normal(t.size)], 1)
    sf.write(audio / "clip.wav", stereo.astype(np.float32), 44100)
    output = tmp_path / "events.tsv"
    run_module(
        "sed.predict",
        f"checkpoint={smoke_run / 'checkpoints' / 'best.pt'}",
        f"input={audio}",
        f"output={output}",
        "save_probabilities=true",
        root=workdir,
    )
    table = pd.read_csv(output, sep="\t", keep_default_na=False)
    assert list(table.columns) == ["filename", "onset", "offset", "event_label"]
    assert set(table["filename"]) == {"clip.wav"}
    probs = np.load(tmp_path / "events_probabilities" / "clip.wav.npy")
    state = torch.load(smoke_run / "checkpoints" / "best.pt", weights_only=True)
    assert probs.shape == (1 + (3 * 16000) // 320, len(state["classes"]))
    assert ((probs >= 0) & (probs <= 1)).all()


def test_same_config_same_numbers(smoke_run: Path, workdir: Path) -> None:
    # smoke_run generated the data set and filled the feature cache; this run reuses both.
    again = workdir / "outputs" / "smoke_again"
    run_module("sed.train", "+experiment=smoke", f"hydra.run.dir={again}", root=workdir)
    first = json.loads((smoke_run / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    assert {k: v for k, v in first.items() if "seconds" not in k} == {
        k: v for k, v in second.items() if "seconds" not in k
    }
