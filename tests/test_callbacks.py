"""The training loop's callbacks (sed.callbacks) on a tiny CRNN: the order of the hooks, a callback
that asks to stop, early stopping and the time limit, checkpoints that hold every callback's state
whatever the callbacks' order (and resume from checkpoints written before callbacks had state),
hooks and the pruner raising after the epoch is saved, and configs/callbacks/default.yaml building
what `default_callbacks` builds."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from test_resume_kill import same

from sed.callbacks import (
    Callback,
    Checkpoints,
    CSVLogger,
    EarlyStopping,
    Monitor,
    Pruner,
    TensorBoard,
    TimeLimit,
    default_callbacks,
)
from sed.checkpoints import load_checkpoint, save_checkpoint
from sed.data.datasets import FileDataset, SequenceDataset
from sed.models.crnn import CRNN
from sed.sampling import ScheduledSampler
from sed.training import Trainer, TrainerSettings

# The monitor's value in epochs 1, 2, ...: best at 2, then worse twice (patience 2 stops at 4).
SCRIPT = [0.3, 0.5, 0.4, 0.45, 0.2, 0.1]


def _data() -> tuple[SequenceDataset, FileDataset]:
    """6 random files of 64 frames -> 12 training sequences of 32 frames (3 batches of 4)."""
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((64, 16)).astype(np.float32) for _ in range(6)]
    targs = [(rng.random((64, 3)) < 0.2).astype(np.float32) for _ in range(6)]
    names = [f"f{i}.wav" for i in range(6)]
    return SequenceDataset(feats, targs, names, seq_len=32), FileDataset(feats, targs, names)


def _settings(**values: Any) -> TrainerSettings:
    defaults = {
        "device": "cpu",
        "epochs": 6,
        "batch_size": 4,
        "seq_len": 32,
        "patience": 2,
        "monitor": "validation/frame_f1",
        "monitor_mode": "max",
        "progress": False,
        "tensorboard": False,
        "val_event_metrics": False,
        "amp": False,
    }
    return TrainerSettings(**{**defaults, **values})


def _trainer(run_dir: Path, callbacks: list[Callback] | None = None, **values: Any) -> Trainer:
    torch.manual_seed(0)
    model = CRNN(
        n_mels=16, num_classes=3, channels=4, pool_sizes=(2, 2), hidden=8, label_feedback=True
    )
    return Trainer(
        model,
        ScheduledSampler(3, gamma=1.0, p_min=0.0, p_max=1.0),
        torch.optim.Adam(model.parameters(), lr=0.05),
        _settings(**values),
        run_dir,
        torch.device("cpu"),
        seed=3,
        callbacks=callbacks,
    )


def _fit(trainer: Trainer, on_epoch: Callable | None = None):
    """fit() on the tiny data, validation frame F1 scripted by epoch (SCRIPT)."""
    train_set, val_set = _data()

    def validate(probs: dict) -> dict[str, float]:
        return {"frame_f1": SCRIPT[trainer.epoch]}  # trainer.epoch: the epochs before this one

    return trainer.fit(train_set, val_set, validate, on_epoch)


def _timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def assert_same_checkpoints(a: Path, b: Path) -> None:
    """Every checkpoint, history.csv and batches.csv of two runs agree bit for bit (wall times
    aside)."""
    names = sorted(p.name for p in (a / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (b / "checkpoints").iterdir())
    for name in names:
        x, y = (load_checkpoint(run / "checkpoints" / name) for run in (a, b))
        assert x.keys() == y.keys(), name
        for key in x.keys() - {"train_seconds", "history"}:
            assert same(x[key], y[key]), (name, key)
        assert same(_timeless(x["history"]), _timeless(y["history"])), name
    for name in ("history.csv", "batches.csv"):
        x, y = (pd.read_csv(run / name, float_precision="round_trip") for run in (a, b))
        pd.testing.assert_frame_equal(
            x.drop(columns="seconds", errors="ignore"), y.drop(columns="seconds", errors="ignore")
        )


class Recorder(Callback):
    """Records every hook; asks to stop after epoch `stop_at`."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.calls: list[tuple] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self.calls.append(("start", trainer.epoch))

    def on_batch_end(self, trainer: Trainer, row: dict) -> None:
        self.calls.append(("batch", row["batch"]))

    def on_epoch_end(self, trainer: Trainer, row: dict) -> bool:
        self.calls.append(("epoch_end", row["epoch"], _saved_epoch(trainer)))
        return row["epoch"] == self.stop_at

    def after_epoch(self, trainer: Trainer, row: dict) -> None:
        self.calls.append(("after", row["epoch"], _saved_epoch(trainer)))

    def on_fit_end(self, trainer: Trainer, result: Any) -> None:
        self.calls.append(("end", None if result is None else result.epochs))


def _saved_epoch(trainer: Trainer) -> int | None:
    last = trainer.ckpt_dir / "last.pt"
    return load_checkpoint(last)["epoch"] if last.is_file() else None


def test_hooks_run_in_order_and_any_callback_may_stop(tmp_path: Path) -> None:
    recorder = Recorder(stop_at=2)
    settings = _settings(patience=9)
    trainer = _trainer(tmp_path, [*default_callbacks(settings), recorder], patience=9)
    result = _fit(trainer)
    assert (result.epochs, result.stopped_early, result.best_epoch) == (2, False, 2)
    # Every on_epoch_end runs before any after_epoch: the checkpoint is the epoch's in after_epoch.
    assert recorder.calls == [
        ("start", 0),
        *[("batch", i) for i in range(3)],
        ("epoch_end", 1, None),
        ("after", 1, 1),
        *[("batch", i) for i in range(3, 6)],
        ("epoch_end", 2, 1),
        ("after", 2, 2),
        ("end", 2),
    ]


def test_early_stopping_counts_epochs_without_improvement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _fit(_trainer(tmp_path))
    assert (result.epochs, result.best_epoch, result.best_value) == (4, 2, 0.5)
    assert result.stopped_early
    assert "early stopping after epoch 4: no improvement of validation/frame_f1 for 2" in (
        capsys.readouterr().out
    )
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    expected = {"best_value": 0.5, "best_epoch": 2, "bad_epochs": 2}
    assert {k: state[k] for k in expected} == expected
    assert state["callbacks"] == {"EarlyStopping": expected, "Checkpoints": expected}
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 2


def test_checkpoints_hold_the_same_state_whatever_the_callbacks_order(tmp_path: Path) -> None:
    settings = _settings(keep_every=3)
    _fit(_trainer(tmp_path / "default", keep_every=3))
    _fit(_trainer(tmp_path / "reversed", default_callbacks(settings)[::-1], keep_every=3))
    assert sorted(p.name for p in (tmp_path / "default" / "checkpoints").iterdir()) == [
        "best.pt",
        "epoch_0003.pt",
        "last.pt",
    ]
    assert_same_checkpoints(tmp_path / "default", tmp_path / "reversed")


@pytest.mark.parametrize("older", [False, True], ids=["checkpoint", "pre-callbacks checkpoint"])
def test_resume_continues_the_callbacks_state(tmp_path: Path, older: bool) -> None:
    """Interrupted after epoch 1 (the time limit), then resumed: the same run, early stopping at
    epoch 4, also from a checkpoint written before callbacks had entries of their own."""
    full = _fit(_trainer(tmp_path / "full"))
    part = tmp_path / "part"
    assert _fit(_trainer(part, max_minutes=0)).epochs == 1
    if older:
        last = part / "checkpoints" / "last.pt"
        state = load_checkpoint(last)
        del state["callbacks"]
        save_checkpoint(state, last)
    resumed = _fit(_trainer(part, resume=True))
    assert (resumed.epochs, resumed.best_epoch, resumed.stopped_early) == (4, 2, True)
    assert same(_timeless(resumed.history), _timeless(full.history))
    assert_same_checkpoints(tmp_path / "full", part)


def test_time_limit_stops_after_the_epoch_past_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _fit(_trainer(tmp_path, max_minutes=0))
    assert (result.epochs, result.stopped_early) == (1, False)
    assert "trainer.max_minutes=0 reached after epoch 1" in capsys.readouterr().out
    assert _fit(_trainer(tmp_path / "none", [TimeLimit(None)], epochs=2)).epochs == 2


def test_an_epoch_hook_raises_after_the_epoch_is_saved_and_files_are_closed(
    tmp_path: Path,
) -> None:
    callbacks = default_callbacks(_settings(tensorboard=True))
    recorder = Recorder()

    def hook(epoch: int, row: dict) -> None:
        raise RuntimeError(f"stop at {epoch}, {_saved_epoch(trainer)} saved")

    trainer = _trainer(tmp_path, [*callbacks, recorder], tensorboard=True)
    with pytest.raises(RuntimeError, match="stop at 1, 1 saved"):
        _fit(trainer, on_epoch=hook)
    assert recorder.calls[-1] == ("end", None)
    csv_log, board = callbacks[0], callbacks[1]
    assert isinstance(csv_log, CSVLogger) and csv_log.handle is None
    assert isinstance(board, TensorBoard) and board.writer is None
    assert len((tmp_path / "batches.csv").read_text().splitlines()) == 1 + 3
    assert any((tmp_path / "tensorboard").iterdir())


def test_pruner_reports_each_epoch_and_prunes_after_its_checkpoint(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")

    class Trial:  # what Pruner uses of optuna.Trial
        def __init__(self) -> None:
            self.reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) == 2

    trial = Trial()
    settings = _settings(patience=9)
    trainer = _trainer(
        tmp_path, [*default_callbacks(settings), Pruner(trial, "validation/frame_f1")]
    )
    with pytest.raises(optuna.TrialPruned, match="validation/frame_f1=0.5000 at epoch 2"):
        _fit(trainer)
    assert trial.reports == [(0.3, 1), (0.5, 2)]
    assert _saved_epoch(trainer) == 2
    # A missing or non-finite value is not reported.
    pruner, row = Pruner(trial, "validation/frame_f1"), {"validation/frame_f1": math.nan}
    pruner.after_epoch(trainer, row)
    pruner.after_epoch(trainer, {})
    assert len(trial.reports) == 2


def test_without_callbacks_nothing_is_written(tmp_path: Path) -> None:
    result = _fit(_trainer(tmp_path, [], epochs=2))
    assert (result.epochs, result.best_epoch, result.stopped_early) == (2, 2, False)
    assert math.isnan(result.best_value)
    assert list(tmp_path.iterdir()) == []


def test_the_monitor_must_be_in_the_history_row(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, [EarlyStopping("validation/event_f1", "max", 3)])
    with pytest.raises(KeyError, match=r"monitor='validation/event_f1' is not a validation"):
        _fit(trainer)


def test_callback_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="monitor_mode must be one of"):
        Monitor("validation_loss", "lowest")
    with pytest.raises(ValueError, match="patience must be >= 1"):
        EarlyStopping("validation_loss", "min", 0)
    with pytest.raises(ValueError, match="keep_every must be >= 1"):
        Checkpoints("validation_loss", "min", keep_every=0)
    with pytest.raises(ValueError, match="max_minutes must be >= 0"):
        TimeLimit(-1)
    twice = [EarlyStopping("validation_loss", "min", 3), EarlyStopping("validation_loss", "min", 5)]
    with pytest.raises(ValueError, match="distinct state keys"):
        _trainer(tmp_path, twice)


def _describe(callbacks: list[Callback]) -> list[tuple]:
    """Each callback's class and settings (a Monitor as its name and mode)."""
    return [
        (
            type(c).__name__,
            {
                k: (v.name, v.mode) if isinstance(v, Monitor) else v
                for k, v in vars(c).items()
                if k not in ("handle", "writer", "improved")
            },
        )
        for c in callbacks
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        [
            "trainer.patience=3",
            "trainer.keep_every=2",
            "trainer.tensorboard=false",
            "trainer.max_minutes=5",
            "monitor=validation_loss",
            "monitor_mode=min",
        ],
    ],
    ids=["defaults", "overridden"],
)
def test_the_config_group_builds_the_default_callbacks(
    compose: Callable[..., DictConfig], overrides: list[str]
) -> None:
    """configs/callbacks/default.yaml reads the trainer settings: it builds what
    default_callbacks builds from them, in the same order."""
    group = [] if "callbacks" in compose("train") else ["+callbacks=default"]
    cfg = compose("train", *group, *overrides)
    built = [instantiate(node) for node in cfg.callbacks.values() if node is not None]
    settings = instantiate(cfg.trainer)
    assert _describe(built) == _describe(default_callbacks(settings))
    assert _describe(_trainer(Path("unused")).callbacks) == _describe(
        default_callbacks(_settings())
    )
