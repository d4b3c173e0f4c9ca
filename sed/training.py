"""The training loop: teacher forcing / scheduled sampling, free-running validation, early
stopping, atomic resumable checkpoints, history.csv and TensorBoard."""

from __future__ import annotations

import contextlib
import copy
import csv
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from sed import distributed
from sed.checkpoints import load_checkpoint, require, save_checkpoint
from sed.data.datasets import collate
from sed.inference import masked_bce, predict_batches
from sed.io import atomic_write
from sed.sampling import TeacherForcingSampler

log = logging.getLogger(__name__)
MODES = ("max", "min")
BATCH_COLUMNS = ["batch", "epoch", "p_tf", "loss"]  # batches.csv


@dataclass
class TrainerSettings:
    """The training job's settings besides model, data, sampler and optimizer: configs/trainer/
    holds exactly these fields (plus `_target_`), so a config key is either used or an error."""

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


def _improved(value: float, best: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if mode == "max" else value < best


class Trainer:
    """Trains `model` with the teacher-forcing probability given by `sampler`, batch by batch.

    Randomness: one torch.Generator drives the forcing draws, another the shuffling (reseeded
    from `seed + epoch` every epoch), and the global torch RNG drives dropout; all their states go
    into every checkpoint, so a resumed run ends with the same numbers as an uninterrupted one.

    With `ema_decay`, an exponential moving average of the weights (and of the BatchNorm
    statistics) follows the trained weights step by step, with the usual warm-up (the decay is
    min(ema_decay, (1 + n) / (10 + n)) at update n), so early epochs are not dominated by the
    initial weights. The average is validated, saved as the checkpoints' `model` (what
    sed.evaluate and sed.predict load) and tested; the trained weights go into `train_model`.

    Under `torchrun` (sed.distributed): `batch_size` is the global batch, each rank trains on its
    shard of every batch in DistributedDataParallel (gradients averaged), the sampler steps once
    per global batch on every rank, rank 0 alone validates (its metrics and stop decision are
    broadcast) and writes checkpoints, logs and TensorBoard; every rank's generator states go
    into the checkpoints.
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
        self.best_value = float("nan")
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.writer = None

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
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "rng": self._rng_state(),
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
        for key in ("epoch", "batches_seen", "best_value", "best_epoch", "bad_epochs"):
            setattr(self, key, require(state, key, path))
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
            raise FloatingPointError(
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

    def train_epoch(self, loader: DataLoader, batch_log: csv.DictWriter | None) -> float:
        """One pass over the training data; one sampler step per batch."""
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
            if batch_log is not None:
                batch_log.writerow(
                    {
                        "batch": self.batches_seen,
                        "epoch": self.epoch + 1,
                        "p_tf": p_tf,
                        "loss": value,
                    }
                )
            if self.writer is not None:
                self.writer.add_scalar("train/batch_loss", value, self.batches_seen)
                self.writer.add_scalar("train/p_tf", p_tf, self.batches_seen)
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
        """Train until `epochs` or early stopping; restore the best weights at the end.

        `validate(probs)` gets the free-running validation probabilities {filename: [T, C]} and
        returns metrics named without the split prefix (frame_f1, event_f1, ...). `on_epoch(epoch,
        row)` is called after each epoch's checkpoint with its history row; an exception it raises
        (a search pruning the run) ends training there.
        """
        s = self.settings
        main = distributed.is_main()
        if s.resume and self.resume():
            print(f"resumed from {self.ckpt_dir / 'last.pt'} after epoch {self.epoch}")
        elif s.resume:
            print(
                f"trainer.resume=true but {self.ckpt_dir / 'last.pt'} does not exist: starting anew"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if s.tensorboard and main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.epoch)
        batches_path = self.run_dir / "batches.csv"
        if main and (self.epoch == 0 or not batches_path.exists()):
            batches_path.write_text(",".join(BATCH_COLUMNS) + "\n")
        elif main:
            _truncate_csv(batches_path, "batch", self.batches_seen)
        val_loader = self._loader(val_set, shuffle=False)
        stopped_early = False
        start = time.perf_counter() - self.train_seconds
        epochs_bar = tqdm(
            range(self.epoch, s.epochs),
            desc="epochs",
            initial=self.epoch,
            total=s.epochs,
            disable=None if s.progress else True,
        )
        opened = batches_path.open("a", newline="") if main else contextlib.nullcontext()
        with opened as handle:
            batch_log = csv.DictWriter(handle, fieldnames=BATCH_COLUMNS) if main else None
            for _ in epochs_bar:
                epoch_start = time.perf_counter()
                p_start = float(self.sampler.probability)
                if hasattr(train_set, "set_epoch"):  # augmentation drawn anew each epoch
                    train_set.set_epoch(self.epoch)
                train_loss = self.train_epoch(self._loader(train_set, True, self.epoch), batch_log)
                val_loss, metrics = float("nan"), {}
                if main:  # rank 0 validates; its row (and so every decision) is broadcast
                    handle.flush()
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
                self._log_epoch(row)
                value = row.get(s.monitor, val_loss if s.monitor == "validation_loss" else None)
                if value is None:
                    raise KeyError(
                        f"monitor={s.monitor!r} is not a validation metric; "
                        f"available: {sorted(row)}"
                    )
                if _improved(float(value), self.best_value, s.monitor_mode):
                    self.best_value, self.best_epoch, self.bad_epochs = float(value), self.epoch, 0
                    self.save("best")
                else:
                    self.bad_epochs += 1
                self.train_seconds = distributed.broadcast_object(time.perf_counter() - start)
                self.save("last")
                if s.keep_every and self.epoch % s.keep_every == 0:
                    self.save(f"epoch_{self.epoch:04d}")  # for studies of which epoch to keep
                if on_epoch is not None:
                    try:
                        on_epoch(self.epoch, row)
                    except BaseException:
                        if self.writer is not None:
                            self.writer.close()
                        raise
                epochs_bar.set_postfix(
                    {s.monitor: f"{value:.4f}", "best": f"{self.best_value:.4f}"}
                )
                if self.bad_epochs >= s.patience:
                    stopped_early = True
                    print(
                        f"early stopping after epoch {self.epoch}: no improvement of "
                        f"{s.monitor} for {s.patience} epochs"
                    )
                    break
                if s.max_minutes is not None and self.train_seconds > 60 * s.max_minutes:
                    print(f"trainer.max_minutes={s.max_minutes} reached after epoch {self.epoch}")
                    break
        if self.writer is not None:
            self.writer.close()
        self.write_history()
        distributed.barrier()  # rank 0 has written best.pt
        best = self.ckpt_dir / "best.pt"
        if best.is_file():  # the weights to test: the best epoch's (average, with ema_decay)
            self.model.load_state_dict(load_checkpoint(best, self.device)["model"])
        return FitResult(
            self.best_epoch,
            self.best_value,
            self.epoch,
            self.train_seconds,
            self.history,
            stopped_early,
        )

    def _log_epoch(self, row: dict[str, float]) -> None:
        self.write_history()
        if not sys.stderr.isatty() and distributed.is_main():
            # Logs and SLURM jobs get one line per epoch instead of progress-bar redraws.
            shown = dict.fromkeys(  # the monitor once, beside the usual validation numbers
                (
                    "validation_loss",
                    "validation/frame_f1",
                    "validation/event_f1",
                    self.settings.monitor,
                )
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
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(key if "/" in key else f"epoch/{key}", value, self.epoch)
            self.writer.flush()

    def write_history(self) -> None:
        """history.csv: one row per epoch (losses, validation metrics, p_tf, lr, seconds); atomic.
        Rank 0 writes it."""
        if not self.history or not distributed.is_main():
            return
        keys = list(dict.fromkeys(k for row in self.history for k in row))

        def write(handle: IO[str]) -> None:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)

        atomic_write(self.run_dir / "history.csv", write, text=True)


def _truncate_csv(path: Path, key: str, limit: int) -> None:
    """Drop rows whose `key` >= limit (batches logged after the checkpoint we resume from)."""
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if int(r[key]) < limit]

    def write(handle: IO[str]) -> None:
        writer = csv.DictWriter(handle, fieldnames=BATCH_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write, text=True)


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
