"""The training loop's callbacks (sed.training.Trainer): what a run logs, keeps and decides besides
the steps themselves. CSV logs, TensorBoard, early stopping, checkpoints, the time limit and hooks
(sed.tune's pruner) are each one class here; configs/callbacks/ chooses them (sed.train builds
them) and `default_callbacks` builds the same list from the trainer settings without a config.

The protocol, `Callback` (every hook a no-op), in the order the trainer calls it:

- `on_fit_start(trainer)`: once, after a resume and before the first epoch.
- `on_batch_end(trainer, row)`: after each optimizer step; `row` is batches.csv's row.
- `on_epoch_end(trainer, row) -> bool | None`: after each epoch's validation, with its history
  row (rank 0's, on every rank); update state and log here; True asks to stop after this epoch.
- `after_epoch(trainer, row)`: once every callback's `on_epoch_end` has run. Writers of the
  resumable state (Checkpoints) act here, so a checkpoint holds every callback's state of the
  epoch whatever their order, and so do hooks that may end the run with an exception (EpochHook,
  Pruner: listed after Checkpoints, they run once the epoch is saved).
- `on_fit_end(trainer, result)`: once; `result` is the FitResult, or None when fit() ends with an
  exception (then only files are closed).
- `state_dict()` / `load_state_dict(state)`: what must survive a resume, stored in every
  checkpoint under `callbacks[state_key]`.

Ranks: every hook runs on every rank (Trainer.save is a collective; rank 0 writes), and the
writers of files (CSVLogger, TensorBoard) act on rank 0 alone. Nothing here imports Hydra.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sed import distributed
from sed.checkpoints import load_checkpoint
from sed.io import atomic_write

if TYPE_CHECKING:
    from sed.training import FitResult, Trainer, TrainerSettings

__all__ = [
    "BATCH_COLUMNS",
    "CSVLogger",
    "Callback",
    "Checkpoints",
    "EarlyStopping",
    "EpochHook",
    "Monitor",
    "Pruner",
    "TensorBoard",
    "TimeLimit",
    "default_callbacks",
    "write_history",
]

MODES = ("max", "min")
BATCH_COLUMNS = ["batch", "epoch", "p_tf", "loss"]  # batches.csv


class Callback:
    """A no-op at every hook of the training loop; subclasses override what they need."""

    # Whether a stop this callback asks for counts as early stopping (FitResult.stopped_early).
    stops_early = False

    @property
    def state_key(self) -> str:
        """The name of this callback's state in checkpoints (`callbacks[state_key]`)."""
        return type(self).__name__

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume)."""

    def on_batch_end(self, trainer: Trainer, row: dict[str, float]) -> None:
        """After each optimizer step, with its batches.csv row."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float]) -> bool | None:
        """After each epoch's validation, with its history row; True asks to stop."""
        return None

    def after_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        """After every callback's on_epoch_end of the epoch."""

    def on_fit_end(self, trainer: Trainer, result: FitResult | None) -> None:
        """When fit() ends; `result` is None when it ends with an exception."""

    def state_dict(self) -> dict[str, Any]:
        """What must survive a resume (nothing, by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`."""


class Monitor:
    """The best value so far of one history column (`name`, larger or smaller is better as `mode`
    says) and the epochs since it improved. NaN never improves."""

    def __init__(self, name: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"monitor_mode must be one of {MODES}, got {mode!r}")
        self.name, self.mode = str(name), mode
        self.value = float("nan")  # the latest epoch's
        self.best_value = float("nan")
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, epoch: int, row: dict[str, float]) -> bool:
        """Take epoch `epoch`'s history row; whether it improved on the best so far."""
        value = row.get(self.name)
        if value is None:
            raise KeyError(
                f"monitor={self.name!r} is not a validation metric; available: {sorted(row)}"
            )
        self.value = float(value)
        if _improved(self.value, self.best_value, self.mode):
            self.best_value, self.best_epoch, self.bad_epochs = self.value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        """The checkpoints' `best_value`, `best_epoch` and `bad_epochs`."""
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_value = float(state["best_value"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])


def _improved(value: float, best: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if mode == "max" else value < best


class EarlyStopping(Callback):
    """Stop once `monitor` has not improved for `patience` epochs."""

    stops_early = True

    def __init__(self, monitor: str, mode: str, patience: int) -> None:
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.monitor = Monitor(monitor, mode)
        self.patience = int(patience)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float]) -> bool:
        self.monitor.update(trainer.epoch, row)
        if self.monitor.bad_epochs < self.patience:
            return False
        print(
            f"early stopping after epoch {trainer.epoch}: no improvement of "
            f"{self.monitor.name} for {self.patience} epochs"
        )
        return True

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state)


class Checkpoints(Callback):
    """checkpoints/last.pt after every epoch, best.pt when `monitor` improves, and epoch_NNNN.pt
    every `keep_every` epochs (Trainer.save: atomic, rank 0 writes); at the end of fit() the model
    gets best.pt's weights (the weight average, with ema_decay), the weights that are tested."""

    def __init__(self, monitor: str, mode: str, keep_every: int | None = None) -> None:
        if keep_every is not None and int(keep_every) < 1:
            raise ValueError(f"keep_every must be >= 1 or null, got {keep_every}")
        self.monitor = Monitor(monitor, mode)
        self.keep_every = None if keep_every is None else int(keep_every)
        self.improved = False

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float]) -> None:
        self.improved = self.monitor.update(trainer.epoch, row)

    def after_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        if self.improved:
            trainer.save("best")
        trainer.save("last")
        if self.keep_every and trainer.epoch % self.keep_every == 0:
            trainer.save(f"epoch_{trainer.epoch:04d}")  # for studies of which epoch to keep

    def on_fit_end(self, trainer: Trainer, result: FitResult | None) -> None:
        if result is None:
            return
        distributed.barrier()  # rank 0 has written best.pt
        best = trainer.ckpt_dir / "best.pt"
        if best.is_file():
            trainer.model.load_state_dict(load_checkpoint(best, trainer.device)["model"])

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state)


class CSVLogger(Callback):
    """history.csv (one row per epoch, rewritten atomically after each) and batches.csv (one row
    per batch: batch, epoch, p_tf, loss; on resume, cut back to the checkpoint's batches). Rank 0."""

    def __init__(self) -> None:
        self.handle: IO[str] | None = None
        self.writer: csv.DictWriter | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if not distributed.is_main():
            return
        path = trainer.run_dir / "batches.csv"
        if trainer.epoch == 0 or not path.exists():
            path.write_text(",".join(BATCH_COLUMNS) + "\n")
        else:
            _truncate_csv(path, "batch", trainer.batches_seen)
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=BATCH_COLUMNS)

    def on_batch_end(self, trainer: Trainer, row: dict[str, float]) -> None:
        if self.writer is not None:
            self.writer.writerow(row)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float]) -> None:
        if self.handle is not None:
            self.handle.flush()  # the epoch's batches are on disk before its checkpoint
            write_history(trainer.run_dir, trainer.history)

    def on_fit_end(self, trainer: Trainer, result: FitResult | None) -> None:
        if self.handle is None:
            return
        self.handle.close()
        self.handle = self.writer = None
        if result is not None:
            write_history(trainer.run_dir, trainer.history)


def write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    """RUN_DIR/history.csv: one row per epoch (losses, validation metrics, p_tf, lr, seconds);
    atomic. Nothing without a row."""
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)

    atomic_write(Path(run_dir) / "history.csv", write, text=True)


def _truncate_csv(path: Path, key: str, limit: int) -> None:
    """Drop rows whose `key` >= limit (batches logged after the checkpoint we resume from)."""
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r[key]) < limit]

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(handle, fieldnames=BATCH_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write, text=True)


class TensorBoard(Callback):
    """RUN_DIR/tensorboard/: batch loss and p_tf per batch, every finite number of the history row
    per epoch (a resumed run purges what was logged after its checkpoint). Rank 0; nothing when
    not `enabled` (trainer.tensorboard=false)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = bool(enabled)
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.enabled and distributed.is_main():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(trainer.run_dir / "tensorboard"), purge_step=trainer.epoch
            )

    def on_batch_end(self, trainer: Trainer, row: dict[str, float]) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/batch_loss", row["loss"], row["batch"])
            self.writer.add_scalar("train/p_tf", row["p_tf"], row["batch"])

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(key if "/" in key else f"epoch/{key}", value, trainer.epoch)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer, result: FitResult | None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class TimeLimit(Callback):
    """Stop after the first epoch that ends past `max_minutes` of training (wall time, counted
    over resumes); None: no limit. The run stays resumable from its last.pt."""

    def __init__(self, max_minutes: float | None = None) -> None:
        if max_minutes is not None and float(max_minutes) < 0:
            raise ValueError(f"max_minutes must be >= 0 or null, got {max_minutes}")
        self.max_minutes = None if max_minutes is None else float(max_minutes)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float]) -> bool:
        if self.max_minutes is None or trainer.train_seconds <= 60 * self.max_minutes:
            return False
        print(f"trainer.max_minutes={self.max_minutes:g} reached after epoch {trainer.epoch}")
        return True


class EpochHook(Callback):
    """Calls `function(epoch, history_row)` after each epoch (after Checkpoints when listed after
    it, as fit(on_epoch=...) puts it); an exception it raises ends training there."""

    def __init__(self, function: Callable[[int, dict[str, float]], None]) -> None:
        self.function = function

    def after_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        self.function(trainer.epoch, row)


class Pruner(Callback):
    """sed.tune's pruning: reports `monitor` to the Optuna `trial` after each epoch (a missing or
    non-finite value is not reported) and ends the run with optuna.TrialPruned when the study's
    pruner says so. List it after Checkpoints, so that the pruned epoch is saved first."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor = trial, str(monitor)

    def after_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        value = row.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=trainer.epoch)
        if self.trial.should_prune():
            import optuna  # the `cluster` extra, as sed.tune

            raise optuna.TrialPruned(f"{self.monitor}={value:.4f} at epoch {trainer.epoch}")


def default_callbacks(settings: TrainerSettings) -> list[Callback]:
    """The callbacks configs/callbacks/default.yaml lists, from the trainer settings: CSV logs,
    TensorBoard (trainer.tensorboard), early stopping (trainer.patience), checkpoints
    (trainer.keep_every) and the time limit (trainer.max_minutes), all on trainer.monitor."""
    return [
        CSVLogger(),
        TensorBoard(settings.tensorboard),
        EarlyStopping(settings.monitor, settings.monitor_mode, settings.patience),
        Checkpoints(settings.monitor, settings.monitor_mode, settings.keep_every),
        TimeLimit(settings.max_minutes),
    ]
