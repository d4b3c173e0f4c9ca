"""The training loop: teacher forcing / scheduled sampling, the weight average, free-running
validation, and the resumable state that atomic checkpoints hold. What a run logs, keeps and
decides besides (CSV logs, TensorBoard, early stopping, checkpoints, the time limit, pruning) are
callbacks (sed.callbacks) that the loop calls."""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from sed import distributed
from sed.callbacks import MODES, Callback, Checkpoints, EpochHook, Monitor, default_callbacks
from sed.checkpoints import load_checkpoint, require, save_checkpoint
from sed.data.datasets import collate
from sed.errors import DivergenceError
from sed.inference import masked_bce, predict_batches
from sed.sampling import TeacherForcingSampler

log = logging.getLogger(__name__)
# The checkpoints' record of the monitor (Trainer.monitor's), kept at the top level as before
# callbacks had their own entries; a callback with a Monitor resumes from it when it has none.
MONITOR_KEYS = ("best_value", "best_epoch", "bad_epochs")


@dataclass
class TrainerSettings:
    """The training job's settings besides model, data, sampler and optimizer: configs/trainer/
    holds exactly these fields (plus `_target_`), so a config key is either used or an error.
    `patience`, `monitor`, `monitor_mode`, `max_minutes`, `keep_every` and `tensorboard` are
    the callbacks' (sed.callbacks.default_callbacks, configs/callbacks/default.yaml)."""

    device: str = "auto"  # auto = CUDA when present, else CPU
    num_threads: int | None = None  # torch CPU threads; None keeps torch's default
    epochs: int = 60
    batch_size: int = 16
    drop_last: bool = False  # drop each epoch's last, smaller training batch (Drossos et al. do)
    seq_len: int = 512  # frames per training sequence
    grad_clip: float | None = 1.0
    patience: int = 15
    monitor: str = "validation_loss"
    monitor_mode: str = "min"
    val_event_metrics: bool = True  # event-based F1/ER on validation every epoch
    amp: bool = True
    num_workers: int = 0
    resume: bool = False
    max_minutes: float | None = None
    keep_every: int | None = None  # also keep checkpoints/epoch_NNNN.pt every this many epochs
    # Decay of an exponential moving average of the weights, updated after every optimizer step;
    # the average is what is validated, checkpointed as `model` and tested. None: the raw weights.
    ema_decay: float | None = 0.99
    progress: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "patience", "seq_len"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")
        if self.num_threads is not None and int(self.num_threads) < 1:
            raise ValueError(f"trainer.num_threads must be >= 1 or null, got {self.num_threads}")
        if self.keep_every is not None and int(self.keep_every) < 1:
            raise ValueError(f"trainer.keep_every must be >= 1 or null, got {self.keep_every}")
        if self.ema_decay is not None and not 0.0 < float(self.ema_decay) < 1.0:
            raise ValueError(
                f"trainer.ema_decay must lie in (0, 1) or be null, got {self.ema_decay}"
            )
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"trainer.grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.monitor_mode not in MODES:
            raise ValueError(f"monitor_mode must be one of {MODES}, got {self.monitor_mode!r}")

    def batches_per_epoch(self, sequences: int) -> int:
        """Training batches in one epoch over `sequences` training sequences."""
        full, rest = divmod(sequences, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)


@dataclass
class FitResult:
    """What fit() leaves behind: the best epoch and its monitored value, and the history."""

    best_epoch: int
    best_value: float
    epochs: int
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


class Trainer:
    """Trains `model` with the teacher-forcing probability given by `sampler`, batch by batch.

    Randomness: one torch.Generator drives the forcing draws, another the shuffling (reseeded
    from `seed + epoch` every epoch), and the global torch RNG drives dropout; all their states go
    into every checkpoint, so a resumed run ends with the same numbers as an uninterrupted one.

    `callbacks` (sed.callbacks; default: `default_callbacks(settings)`) log, save and decide when
    to stop; their states go into every checkpoint too.

    With `ema_decay`, an exponential moving average of the weights (and of the BatchNorm
    statistics) follows the trained weights step by step, with the usual warm-up (the decay is
    min(ema_decay, (1 + n) / (10 + n)) at update n), so early epochs are not dominated by the
    initial weights. The average is validated, saved as the checkpoints' `model` (what
    sed.evaluate and sed.predict load) and tested; the trained weights go into `train_model`.

    Under `torchrun` (sed.distributed): `batch_size` is the global batch, each rank trains on its
    shard of every batch in DistributedDataParallel (gradients averaged), the sampler steps once
    per global batch on every rank, rank 0 alone validates (its history row is broadcast, so
    every rank's callbacks decide alike) and writes checkpoints, logs and TensorBoard; every
    rank's generator states go into the checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        sampler: TeacherForcingSampler,
        optimizer: torch.optim.Optimizer,
        settings: TrainerSettings,
        run_dir: str | Path,
        device: torch.device,
        seed: int = 0,
        meta: dict[str, Any] | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> None:
        self.model = model.to(device)
        self.sampler = sampler
        self.optimizer = optimizer
        self.settings = settings
        self.device = device
        self.seed = int(seed)
        self.meta = dict(meta or {})
        self.scheduler = scheduler  # stepped once per training batch, like the sampler
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.dist = distributed.context()
        # Each rank draws its own forcing masks and dropout; rank 0 (and one process) as before.
        rank_seed = self.seed + 1_000_003 * self.dist.rank
        self.forcing_rng = torch.Generator(device=device).manual_seed(rank_seed + 1)
        if self.dist.distributed:
            torch.manual_seed(rank_seed)
        # The weight average (a copy never trained itself) is made before DDP wraps the model.
        self.ema: nn.Module | None = None
        if settings.ema_decay is not None:
            self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.net = distributed.wrap(self.model, device)  # the model, or DDP around it
        self.epoch = 0
        self.batches_seen = 0
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.callbacks = list(default_callbacks(settings) if callbacks is None else callbacks)
        keys = [c.state_key for c in self.callbacks if c.state_dict()]
        if len(keys) != len(set(keys)):
            raise ValueError(
                f"callbacks with state need distinct state keys (checkpoint entries), got {keys}"
            )

    @property
    def monitor(self) -> Monitor | None:
        """The monitor whose best epoch fit() reports and checkpoints record: the Checkpoints
        callback's (its best.pt holds the weights fit() leaves in the model), else the first
        callback's that has one; None without."""
        held = [c for c in self.callbacks if isinstance(getattr(c, "monitor", None), Monitor)]
        held.sort(key=lambda c: not isinstance(c, Checkpoints))
        return held[0].monitor if held else None

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, checkpointed as `model` and tested."""
        return self.model if self.ema is None else self.ema

    @torch.no_grad()
    def _update_ema(self) -> None:
        """One step of the weight average, after `batches_seen` earlier steps."""
        if self.ema is None or self.settings.ema_decay is None:
            return
        n = self.batches_seen + 1
        weight = 1.0 - min(float(self.settings.ema_decay), (1.0 + n) / (10.0 + n))
        for average, current in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            average.lerp_(current.detach(), weight)
        for average, current in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            if average.is_floating_point():
                average.lerp_(current, weight)
            else:  # BatchNorm's batch counter
                average.copy_(current)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue, plus `meta` (features, classes, normaliser...)."""
        state = {
            "model": self.eval_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "epoch": self.epoch,
            "batches_seen": self.batches_seen,
            **(self.monitor or Monitor("", "max")).state_dict(),  # MONITOR_KEYS
            "history": self.history,
            "train_seconds": self.train_seconds,
            "rng": self._rng_state(),
            "callbacks": {c.state_key: c.state_dict() for c in self.callbacks if c.state_dict()},
        }
        if self.ema is not None:
            state["train_model"] = self.model.state_dict()
        if self.dist.distributed:  # every rank's generators (a collective: all ranks call this)
            state["rng"]["ranks"] = distributed.all_gather_object(self._rng_state())
        state.update(self.meta)
        return state

    def _rng_state(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "forcing": self.forcing_rng.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict[str, Any], path: str | Path = "") -> None:
        """Restore a `state_dict()` (the whole training state, for resuming)."""
        if self.ema is None:
            self.model.load_state_dict(require(state, "model", path))
        else:
            self.model.load_state_dict(require(state, "train_model", path))
            self.ema.load_state_dict(require(state, "model", path))
        self.optimizer.load_state_dict(require(state, "optimizer", path))
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(require(state, "sampler", path))
        for key in ("epoch", "batches_seen"):
            setattr(self, key, require(state, key, path))
        monitored = {key: require(state, key, path) for key in MONITOR_KEYS}
        saved = state.get("callbacks") or {}
        for callback in self.callbacks:
            if callback.state_key in saved:
                callback.load_state_dict(saved[callback.state_key])
            elif isinstance(getattr(callback, "monitor", None), Monitor):  # an older checkpoint
                callback.load_state_dict(monitored)
        self.history = list(require(state, "history", path))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        rng = require(state, "rng", path)
        ranks = rng.get("ranks") or []
        if self.dist.distributed and len(ranks) == self.dist.world_size:
            rng = ranks[self.dist.rank]
        torch.set_rng_state(rng["torch"])
        self.forcing_rng.set_state(rng["forcing"].to(self.forcing_rng.get_state().device))
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save(self, name: str) -> Path:
        """Atomically write checkpoints/NAME.pt (rank 0 writes; every rank must call it)."""
        state, path = self.state_dict(), self.ckpt_dir / f"{name}.pt"
        return save_checkpoint(state, path) if distributed.is_main() else path

    def resume(self) -> bool:
        """Continue from checkpoints/last.pt when it exists; returns whether it did."""
        last = self.ckpt_dir / "last.pt"
        if not last.is_file():
            return False
        self.load_state_dict(load_checkpoint(last, map_location=self.device), last)
        return True

    # ------------------------------------------------------------------ loop
    def _loader(self, dataset: Dataset, shuffle: bool, epoch: int = 0) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if shuffle and self.dist.distributed:  # this rank's shard of one process's batches
            sampler = distributed.ShardedBatchSampler(
                len(dataset),  # type: ignore[arg-type]
                self.settings.batch_size,
                self.dist.rank,
                self.dist.world_size,
                generator,
                drop_last=self.settings.drop_last,
            )
            return DataLoader(
                dataset,
                batch_sampler=sampler,
                generator=generator,
                collate_fn=collate,
                num_workers=self.settings.num_workers,
                pin_memory=self.device.type == "cuda",
            )
        return DataLoader(
            dataset,
            batch_size=self.settings.batch_size,
            shuffle=shuffle,
            generator=generator if shuffle else None,
            collate_fn=collate,
            num_workers=self.settings.num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=shuffle and self.settings.drop_last,
        )

    def train_step(self, batch: dict[str, Any]) -> float:
        """One optimisation step on a collated batch at the sampler's current teacher-forcing
        probability (forward, masked BCE, backward, clipping, optimizer and sampler step);
        returns the loss. The model must be in training mode."""
        features = batch["features"].to(self.device, non_blocking=True)
        targets = batch["targets"].to(self.device, non_blocking=True)
        mask = batch["mask"].to(self.device, non_blocking=True)
        p_tf = float(self.sampler.probability)
        amp = self.settings.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = self.net(features, targets, p_tf=p_tf, generator=self.forcing_rng)
        loss = masked_bce(logits.float(), targets, mask)
        reported = distributed.mean(loss)  # the global batch's loss, on every rank
        if not torch.isfinite(reported):
            raise DivergenceError(
                f"training loss is {reported.item()} at epoch {self.epoch + 1}, batch "
                f"{self.batches_seen}: lower optimizer.lr or set trainer.grad_clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self._update_ema()
        if self.scheduler is not None:
            self.scheduler.step()
        self.sampler.step()
        return reported.item()

    def train_epoch(self, loader: DataLoader, callbacks: Sequence[Callback] = ()) -> float:
        """One pass over the training data; one sampler step per batch, after which each
        callback's on_batch_end gets the batch's row (batch, epoch, p_tf, loss)."""
        self.model.train()
        total, count = 0.0, 0
        bar = tqdm(
            loader,
            desc=f"epoch {self.epoch + 1}",
            leave=False,
            disable=None if self.settings.progress else True,  # None: bars on a terminal only
        )
        for batch in bar:
            p_tf = float(self.sampler.probability)
            value = self.train_step(batch)
            total, count = total + value, count + 1
            row = {"batch": self.batches_seen, "epoch": self.epoch + 1, "p_tf": p_tf, "loss": value}
            for callback in callbacks:
                callback.on_batch_end(self, row)
            self.batches_seen += 1
            bar.set_postfix(loss=f"{value:.4f}", p_tf=f"{p_tf:.3f}")
        return total / max(count, 1)

    def fit(
        self,
        train_set: Dataset,
        val_set: Dataset,
        validate: Callable[[dict[str, Any]], dict[str, float]],
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    ) -> FitResult:
        """Train until `epochs` or a callback stops it (early stopping, the time limit); the
        Checkpoints callback restores the best weights at the end.

        `validate(probs)` gets the free-running validation probabilities {filename: [T, C]} and
        returns metrics named without the split prefix (frame_f1, event_f1, ...). `on_epoch(epoch,
        row)` is called after each epoch's checkpoint with its history row (an EpochHook after the
        callbacks); an exception it raises (a search pruning the run) ends training there.
        """
        s = self.settings
        if s.resume and self.resume():
            print(f"resumed from {self.ckpt_dir / 'last.pt'} after epoch {self.epoch}")
        elif s.resume:
            print(
                f"trainer.resume=true but {self.ckpt_dir / 'last.pt'} does not exist: starting anew"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        callbacks = [*self.callbacks, *([EpochHook(on_epoch)] if on_epoch is not None else [])]
        try:
            for callback in callbacks:
                callback.on_fit_start(self)
            stoppers = self._epochs(train_set, val_set, validate, callbacks)
            monitor = self.monitor
            result = FitResult(
                monitor.best_epoch if monitor is not None else self.epoch,
                monitor.best_value if monitor is not None else float("nan"),
                self.epoch,
                self.train_seconds,
                self.history,
                any(c.stops_early for c in stoppers),
            )
        except BaseException:
            for callback in callbacks:  # close their files
                callback.on_fit_end(self, None)
            raise
        for callback in callbacks:
            callback.on_fit_end(self, result)
        return result

    def _epochs(
        self,
        train_set: Dataset,
        val_set: Dataset,
        validate: Callable[[dict[str, Any]], dict[str, float]],
        callbacks: Sequence[Callback],
    ) -> list[Callback]:
        """The epochs from `self.epoch` on, until `epochs` or a stop; the callbacks that asked
        to stop."""
        s = self.settings
        val_loader = self._loader(val_set, shuffle=False)
        start = time.perf_counter() - self.train_seconds
        epochs_bar = tqdm(
            range(self.epoch, s.epochs),
            desc="epochs",
            initial=self.epoch,
            total=s.epochs,
            disable=None if s.progress else True,
        )
        for _ in epochs_bar:
            epoch_start = time.perf_counter()
            p_start = float(self.sampler.probability)
            if hasattr(train_set, "set_epoch"):  # augmentation drawn anew each epoch
                train_set.set_epoch(self.epoch)
            train_loss = self.train_epoch(self._loader(train_set, True, self.epoch), callbacks)
            val_loss, metrics = float("nan"), {}
            if distributed.is_main():  # rank 0 validates; its row (so every decision) is broadcast
                probs, val_loss = predict_batches(
                    self.eval_model, val_loader, self.device, amp=s.amp, progress=False
                )
                metrics = {f"validation/{k}": v for k, v in validate(probs).items()}
            self.epoch += 1
            row = {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "validation_loss": val_loss,
                **metrics,
                "p_tf_start": p_start,
                "p_tf_end": float(self.sampler.probability),
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - epoch_start,
            }
            row = distributed.broadcast_object(row)
            self.history.append(row)
            self.train_seconds = distributed.broadcast_object(time.perf_counter() - start)
            self._log_epoch(row)
            # Every callback's state first, then what saves it (and hooks that may raise).
            stoppers = [c for c in callbacks if c.on_epoch_end(self, row)]
            for callback in callbacks:
                callback.after_epoch(self, row)
            if (monitor := self.monitor) is not None:
                epochs_bar.set_postfix(
                    {monitor.name: f"{monitor.value:.4f}", "best": f"{monitor.best_value:.4f}"}
                )
            if stoppers:
                return stoppers
        return []

    def _log_epoch(self, row: dict[str, float]) -> None:
        """Off a terminal (logs and SLURM jobs), one line per epoch instead of progress-bar
        redraws; rank 0."""
        if sys.stderr.isatty() or not distributed.is_main():
            return
        shown = dict.fromkeys(  # the monitor once, beside the usual validation numbers
            ("validation_loss", "validation/frame_f1", "validation/event_f1", self.settings.monitor)
        )
        values = ", ".join(
            f"{name} {row.get(name, float('nan')):.4f}"
            for name in shown
            if name in row or name == self.settings.monitor
        )
        log.info(
            "epoch %d/%d: train_loss %.4f, %s, p_tf %.3f, %.1f s",
            row["epoch"], self.settings.epochs, row["train_loss"], values, row["p_tf_end"],
            row["seconds"],
        )  # fmt: skip


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: float = 0.05, floor: float = 0.01
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first `warmup` share of `total_steps` batches, then cosine decay
    of the learning rate to `floor` times its peak (configs/scheduler/cosine.yaml)."""
    if not 0.0 <= warmup < 1.0 or not 0.0 <= floor <= 1.0 or total_steps < 1:
        raise ValueError(
            f"scheduler: warmup must be in [0, 1), floor in [0, 1] and total_steps >= 1, "
            f"got {warmup}, {floor}, {total_steps}"
        )
    ramp = max(1, round(warmup * total_steps))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        progress = min(1.0, (step - ramp) / max(1, total_steps - ramp))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
