"""One evaluation path: sed.train's final evaluation, sed.evaluate and sed.predict give a file the
same probabilities, whatever files share its batch, and sed.evaluate reproduces the metrics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from sed.annotations import write_tsv
from sed.checkpoints import model_spec, save_checkpoint
from sed.data.datasets import FileDataset, collate
from sed.data.folder import EVAL_SPLITS
from sed.data.loading import load_corpus
from sed.evaluate import evaluate, run_tuning
from sed.features import LogMel, Normalizer
from sed.inference import (
    ConfigError,
    length_batches,
    load_trained,
    masked_bce,
    predict_batches,
    predict_files,
    predict_waveform,
)
from sed.models.crnn import CRNN
from sed.outputs import evaluate_model
from sed.postprocess import PostProcessing
from sed.postprocess_search import SearchError, SearchSpace, Tuning
from sed.predict import predict

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
CLASSES = ["beep", "hum"]
SR = 8000
FEATURES = {"sample_rate": SR, "n_fft": 256, "win_length": 256, "hop_length": 160, "n_mels": 16}
MODEL = {"n_mels": 16, "num_classes": 2, "channels": 4, "pool_sizes": [2, 2], "hidden": 8}


def tiny_model(seed: int = 0) -> CRNN:
    """A CRNN with random weights, batch-norm statistics included (so padding would show)."""
    torch.manual_seed(seed)
    model = CRNN(**MODEL)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.normal_(0, 0.5)
    model.conv.to(memory_format=torch.channels_last)  # as sed.train and load_trained run it
    return model.eval()


def random_features(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, 16)).astype(np.float32) for n in lengths]


def test_length_batches_hold_one_length_each():
    lengths = [5, 3, 5, 5, 3, 9]
    batches = length_batches(lengths, batch_size=2)
    assert batches == [[1, 4], [0, 2], [3], [5]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    with pytest.raises(ValueError, match="batch_size"):
        length_batches(lengths, 0)


def test_probabilities_do_not_depend_on_the_batch():
    model = tiny_model()
    lengths = [23, 50, 37, 50, 8]
    feats = random_features(lengths)
    names = [f"f{i}.wav" for i in range(len(lengths))]
    alone = {
        name: predict_files(model, [x], [name], CPU, batch_size=1, amp=False)[0][name]
        for name, x in zip(names, feats, strict=True)
    }
    together, _ = predict_files(model, feats, names, CPU, batch_size=5, amp=False)
    assert list(together) == names  # the given order, not the length buckets'
    # predict_batches also splits a padded batch (what a plain DataLoader gives it) by length.
    padded = DataLoader(FileDataset(feats, None, names), batch_size=5, collate_fn=collate)
    via_padded, loss = predict_batches(model, padded, CPU)
    assert np.isnan(loss)  # no targets
    for name, n in zip(names, lengths, strict=True):
        assert together[name].shape == (n, 2)
        np.testing.assert_allclose(together[name], alone[name], rtol=0, atol=1e-6)
        np.testing.assert_allclose(via_padded[name], alone[name], rtol=0, atol=1e-6)
    # The problem this guards against: run padded, a short file's last frames change.
    with torch.no_grad():
        raw = torch.sigmoid(model(next(iter(padded))["features"])).numpy()
    assert np.abs(raw[0, :23] - alone["f0.wav"]).max() > 1e-4


def test_loss_is_the_frame_weighted_bce_of_the_files():
    model = tiny_model()
    lengths = [12, 30, 30]
    feats = random_features(lengths)
    rng = np.random.default_rng(1)
    targets = [(rng.random((n, 2)) < 0.3).astype(np.float32) for n in lengths]
    names = ["a", "b", "c"]
    _, loss = predict_files(model, feats, names, CPU, batch_size=2, amp=False, targets=targets)
    total = 0.0
    with torch.no_grad():
        for x, y in zip(feats, targets, strict=True):
            logits = model(torch.from_numpy(x)[None])
            mask = torch.ones(1, len(x), dtype=torch.bool)
            total += float(masked_bce(logits, torch.from_numpy(y)[None], mask)) * len(x)
    assert loss == pytest.approx(total / sum(lengths), rel=1e-6)


# ----------------------------------------------------------------------------- end to end


def make_folder(root: Path) -> None:
    """validation and test splits of tones with different lengths (so batches would pad)."""
    rng = np.random.default_rng(0)
    for split, seconds in (("validation", [0.9, 1.6, 1.6, 2.3]), ("test", [1.1, 2.0, 0.7])):
        rows, names = [], []
        for i, duration in enumerate(seconds):
            t = np.arange(int(duration * SR)) / SR
            beep = (t > 0.2) & (t < 0.6)
            audio = 0.01 * rng.standard_normal(t.size) + 0.3 * beep * np.sin(2 * np.pi * 1000 * t)
            audio += 0.2 * (t > duration / 2) * np.sin(2 * np.pi * 200 * t)
            name = f"{split}_{i}.wav"
            (root / "audio" / split).mkdir(parents=True, exist_ok=True)
            sf.write(root / "audio" / split / name, audio.astype(np.float32), SR)
            rows += [(name, 0.2, 0.6, "beep"), (name, duration / 2, duration, "hum")]
            names.append(name)
        events = pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])
        write_tsv(events, root / "metadata" / f"{split}.tsv", filenames=names)


@pytest.fixture
def trained_run(tmp_path: Path) -> dict:
    """A dataset folder, a checkpoint that carries what prediction needs, and the run's config."""
    root = tmp_path / "data"
    make_folder(root)
    model = tiny_model()
    postprocessing = PostProcessing(threshold=0.5, median_seconds=0.1)
    normalizer = Normalizer(mean=np.full(16, -30.0), std=np.full(16, 15.0))
    config = {
        "data": {"root": str(root)},
        "paths": {"cache_dir": str(tmp_path / "cache")},
        "trainer": {"batch_size": 3, "amp": True},
    }
    run_dir = tmp_path / "run"
    state = {
        "model": model.state_dict(),
        "model_spec": model_spec("sed.models.crnn.CRNN", MODEL),
        "features": LogMel(**FEATURES).params,
        "classes": CLASSES,
        "normalizer": normalizer.state_dict(),
        "postprocess": postprocessing.to_dict(),
        "config_yaml": yaml.safe_dump(config),
        "epoch": 3,
    }
    save_checkpoint(state, run_dir / "checkpoints" / "best.pt")
    return {
        "root": root,
        "run_dir": run_dir,
        "model": model,
        "postprocessing": postprocessing,
        "normalizer": normalizer,
        "config": config,
    }


def entry_config(name: str, **values) -> OmegaConf:
    """configs/NAME.yaml without its hydra section, with `values` set."""
    cfg = OmegaConf.load(REPO / "configs" / f"{name}.yaml")
    del cfg["hydra"]
    return OmegaConf.merge(cfg, values)


def test_train_evaluate_and_predict_agree(trained_run: dict, tmp_path: Path):
    run_dir = trained_run["run_dir"]
    # What sed.train's final evaluation runs, with the trained model still in memory.
    logmel, classes, splits = _evaluation_splits(trained_run, tmp_path)
    metrics, probs, _ = evaluate_model(
        trained_run["model"],
        splits,
        run_dir,
        classes,
        logmel.hop_seconds,
        trained_run["postprocessing"],
        CPU,
        batch_size=3,
        amp=True,
    )
    assert set(probs) == set(EVAL_SPLITS) and "test/event_f1" in metrics

    # sed.evaluate with no overrides: the same numbers, to the last bit.
    trained = load_trained(run_dir / "checkpoints" / "best.pt")
    assert (trained.batch_size, trained.amp) == (3, True)  # the run's, from its config
    out = tmp_path / "evaluation"
    again = evaluate(entry_config("evaluate", run_dir=str(run_dir), device="cpu"), out_dir=out)
    assert again == {"checkpoint_epoch": 3, **metrics}
    for split in EVAL_SPLITS:
        name = f"predictions/{split}.tsv"
        assert (out / name).read_text() == (run_dir / name).read_text()

    # sed.predict on the test audio: the same probabilities and the same event table.
    output = _predict_test_audio(trained_run, tmp_path / "predict", save_probabilities=True)
    for name, expected in probs["test"].items():
        saved = np.load(output.with_name("events_probabilities") / f"{name}.npy")
        np.testing.assert_allclose(saved, expected, rtol=0, atol=1e-6)
    assert output.read_text() == (run_dir / "predictions" / "test.tsv").read_text()
    # predict_waveform (one file alone) agrees to float tolerance.
    waveform, _ = sf.read(trained_run["root"] / "audio" / "test" / "test_1.wav", dtype="float32")
    np.testing.assert_allclose(
        predict_waveform(trained, waveform), probs["test"]["test_1.wav"], rtol=0, atol=1e-6
    )


def test_overrides_apply_the_same_way_in_evaluate_and_predict(trained_run: dict, tmp_path):
    run_dir = trained_run["run_dir"]
    overrides = {"threshold": 0.45, "median_seconds": 0.3, "min_duration": 0.1}
    out = tmp_path / "evaluation"
    evaluate(
        entry_config(
            "evaluate", run_dir=str(run_dir), device="cpu", splits=["test"], postprocess=overrides
        ),
        out_dir=out,
    )
    expected = PostProcessing(threshold=0.45, median_seconds=0.3, min_duration=0.1).to_dict()
    assert json.loads((out / "postprocess.json").read_text()) == expected
    output = _predict_test_audio(trained_run, tmp_path, postprocess=overrides)
    assert output.read_text() == (out / "predictions" / "test.tsv").read_text()


def test_evaluate_names_a_bad_split(trained_run: dict, tmp_path):
    cfg = entry_config("evaluate", run_dir=str(trained_run["run_dir"]), splits=["dev"])
    with pytest.raises(ValueError, match=r"splits=\['dev'\]"):
        evaluate(cfg, out_dir=tmp_path / "evaluation")


def _predict_test_audio(trained_run: dict, out_dir, **overrides):
    """`sed.predict` of the run's best checkpoint over its test audio; returns the event TSV."""
    output = out_dir / "events.tsv"
    predict(
        entry_config(
            "predict",
            checkpoint=str(trained_run["run_dir"] / "checkpoints" / "best.pt"),
            input=str(trained_run["root"] / "audio" / "test"),
            output=str(output),
            device="cpu",
            **overrides,
        )
    )
    return output


def test_test_labels_never_influence_tuned_postprocessing(trained_run: dict, tmp_path: Path):
    """Tuning reads validation only: permuting the test split's labels leaves the chosen
    post-processing and every validation number unchanged (and changes the test numbers)."""
    logmel, classes, splits = _evaluation_splits(trained_run, tmp_path)
    space = SearchSpace(thresholds=(0.2, 0.5), median_seconds=(0.1, 0.5), min_duration=(0.0, 0.2))
    runs = []
    for permute in (False, True):
        if permute:
            test = splits["test"]
            events = test.events.copy()  # every label moved to the next class
            events["event_label"] = [
                CLASSES[(CLASSES.index(c) + 1) % len(CLASSES)] for c in events["event_label"]
            ]
            splits = {**splits, "test": dataclasses.replace(test, events=events)}
        runs.append(
            evaluate_model(
                trained_run["model"],
                splits,
                tmp_path / f"run{int(permute)}",
                classes,
                logmel.hop_seconds,
                trained_run["postprocessing"],
                CPU,
                batch_size=3,
                amp=False,
                tuning=Tuning(space=space),
            )
        )
    first, second = runs
    assert first.postprocessing.to_dict() == second.postprocessing.to_dict()
    validation = {k: v for k, v in first.metrics.items() if k.startswith("validation/")}
    assert validation == {k: second.metrics[k] for k in validation}
    assert "test/fixed_event_f1" in first.metrics
    assert first.metrics["test/event_f1"] != second.metrics["test/event_f1"]
    assert (tmp_path / "run0" / "tuning.csv").is_file()
    assert json.loads((tmp_path / "run0" / "postprocess.json").read_text()) == (
        first.postprocessing.to_dict()
    )


def test_predict_streams_long_files_with_the_one_pass_result(trained_run: dict, tmp_path: Path):
    """chunk_seconds shorter than the files: each is streamed, with the same probabilities and
    events as one pass (chunk_seconds=null)."""
    one_pass = _predict_test_audio(trained_run, tmp_path / "a", save_probabilities=True,
                                   chunk_seconds=None)  # fmt: skip
    streamed = _predict_test_audio(trained_run, tmp_path / "b", save_probabilities=True,
                                   chunk_seconds=0.25)  # fmt: skip
    assert streamed.read_text() == one_pass.read_text()
    folder = one_pass.with_name("events_probabilities")
    for saved in folder.glob("*.npy"):
        other = streamed.with_name("events_probabilities") / saved.name
        np.testing.assert_allclose(np.load(other), np.load(saved), rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="chunk_seconds"):
        _predict_test_audio(trained_run, tmp_path / "c", chunk_seconds=0)


def _evaluation_splits(trained_run: dict, tmp_path: Path):
    """(LogMel, classes, {split: features}) of the run's validation and test splits, as
    sed.train's final evaluation loads them."""
    logmel = LogMel(**FEATURES)
    classes, splits, _ = load_corpus(
        trained_run["root"],
        logmel,
        tmp_path / "cache" / "features",
        classes=CLASSES,
        splits=EVAL_SPLITS,
        normalizer=trained_run["normalizer"],
    )
    return logmel, classes, splits


@pytest.mark.parametrize(
    ("stored", "override", "expected"),
    [
        ({"criterion": "event_f1"}, None, True),  # a run from before the scope: per class, as made
        ({"criterion": "event_f1", "per_class": False}, None, False),
        ({"criterion": "event_f1", "per_class": False}, True, True),
        ({"criterion": "event_f1", "per_class": True}, False, False),
    ],
)
def test_retuning_keeps_or_overrides_the_runs_search_scope(stored, override, expected) -> None:
    cfg = OmegaConf.create({"tuning": {**stored, "space": {"thresholds": [0.4, 0.6]}}})
    tuning = run_tuning(cfg, None, override)
    assert tuning.per_class is expected
    assert tuning.space.thresholds == (0.4, 0.6)


def test_retuning_a_run_from_before_the_shifts_searches_no_shift() -> None:
    old = OmegaConf.create({"tuning": {"per_class": False, "space": {"min_gap": [0.0, 0.2]}}})
    tuning = run_tuning(old, None)
    assert tuning.space.onset_shift == (0.0,) and tuning.space.offset_shift == (0.0,)
    assert tuning.space.min_gap == (0.0, 0.2)
    new = OmegaConf.create({"tuning": {"space": {"onset_shift": [0.0, -0.1]}}})
    assert run_tuning(new, None).space.onset_shift == (0.0, -0.1)


@pytest.mark.parametrize(
    ("stored", "override", "expected"),
    [
        ({"per_class": False}, None, False),  # a run from before class thresholds: none, as made
        ({"per_class": False, "class_thresholds": True}, None, True),
        ({"per_class": False, "class_thresholds": True}, False, False),
        ({"per_class": False}, True, True),
    ],
)
def test_retuning_keeps_or_overrides_the_runs_class_thresholds(stored, override, expected) -> None:
    tuning = run_tuning(OmegaConf.create({"tuning": stored}), None, None, override)
    assert tuning.class_thresholds is expected and tuning.per_class is False
    with pytest.raises(SearchError, match=r"tuning\.class_thresholds must be true or false"):
        run_tuning(OmegaConf.create({"tuning": stored}), None, None, "yes")


def test_retuning_scope_must_be_a_boolean() -> None:
    with pytest.raises(SearchError, match=r"tuning\.per_class must be true or false, got 'yes'"):
        run_tuning(OmegaConf.create({"tuning": {"criterion": "event_f1"}}), None, "yes")
    with pytest.raises(SearchError, match="tuning.per_class"):  # a run's stored value too
        run_tuning(OmegaConf.create({"tuning": {"per_class": "no"}}), None)
