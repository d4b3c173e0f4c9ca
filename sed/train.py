"""`python -m sed.train [+experiment=NAME] [method=baseline|tf|ss] [overrides]`: extract features,
train the CRNN with teacher forcing / scheduled sampling, evaluate the best checkpoint on
validation and test. `train(cfg)` is the whole job for a composed config (tests call it)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sed import distributed
from sed.checkpoints import build_model, load_checkpoint, model_spec, save_checkpoint
from sed.data import synthetic
from sed.data.augment import Augment, AugmentedDataset
from sed.data.datasets import FileDataset, SequenceDataset
from sed.data.folder import EVAL_SPLITS
from sed.data.loading import load_corpus
from sed.features import LogMel
from sed.inference import resolve_device
from sed.io import write_json
from sed.outputs import HEADLINE, evaluate_model, evaluate_split, summary_lines
from sed.plots import plot_learning_curves, plot_teacher_forcing
from sed.postprocess import PostProcessing
from sed.sampling import TeacherForcingSampler
from sed.training import Trainer, TrainerSettings
from sed.tuning import Tuning

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_data(cfg: DictConfig) -> Path:
    """The dataset root; the synthetic set is generated on first use (or when its params change)."""
    root = Path(cfg.data.root)
    if cfg.data.get("generate") is not None:
        synthetic.ensure(root, **OmegaConf.to_container(cfg.data.generate, resolve=True))
    elif not root.is_dir():
        hint = cfg.data.get("prepare_command")
        raise FileNotFoundError(
            f"data.root={root} does not exist" + (f"; prepare it with: {hint}" if hint else "")
        )
    return root


def make_sampler(cfg: DictConfig, num_batches: int) -> TeacherForcingSampler:
    """The sampler group (a `_partial_` config) completed with the batches per epoch."""
    return instantiate(cfg.sampler)(num_batches=num_batches)


def train(
    cfg: DictConfig, on_epoch: Callable[[int, dict[str, float]], None] | None = None
) -> dict[str, Any]:
    """The whole job for a composed config, in `cfg.paths.output_dir`; returns metrics.json's
    content. `on_epoch(epoch, history_row)` is called after every epoch (sed.tune prunes with it).
    Under `torchrun`, every rank trains in rank 0's run directory and rank 0 alone evaluates and
    writes; the other ranks return {}."""
    run_dir = Path(cfg.paths.output_dir)
    if not cfg.trainer.resume and distributed.requeued(run_dir):
        log.info("requeued job: resuming from %s", run_dir / "checkpoints" / "last.pt")
        cfg.trainer.resume = True
    settings: TrainerSettings = instantiate(cfg.trainer)
    # Settings that can be checked are checked before any data is generated or feature computed.
    postprocessing = PostProcessing(**OmegaConf.to_container(cfg.postprocess, resolve=True))
    tuning: Tuning = instantiate(cfg.tuning)
    augment: Augment = instantiate(cfg.augment)
    seed_everything(int(cfg.seed))
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = distributed.init(resolve_device(settings.device, key="trainer.device"))
    # Rank 0's run directory on every rank (each rank's Hydra resolved its own timestamp).
    run_dir = Path(distributed.broadcast_object(str(run_dir)))
    if not distributed.is_main():  # one log: rank 0's (the others still report warnings)
        logging.getLogger().setLevel(logging.WARNING)
    root = prepare_data(cfg)

    logmel = LogMel(**OmegaConf.to_container(cfg.features, resolve=True)).to(device)
    hop = logmel.hop_seconds
    classes, splits, normalizer = load_corpus(
        root,
        logmel,
        Path(cfg.paths.cache_dir) / "features",
        classes=cfg.data.get("classes"),
        device=str(device),
    )
    log.info("classes (%d): %s", len(classes), ", ".join(classes))
    train_data, val_data = splits["train"], splits["validation"]
    train_set = SequenceDataset(
        train_data.features, train_data.targets, train_data.filenames, seq_len=settings.seq_len
    )
    if augment.enabled:
        train_set = AugmentedDataset(
            train_set, augment, int(cfg.seed), normalizer.mean, normalizer.std
        )
    val_set = FileDataset(val_data.features, val_data.targets, val_data.filenames)
    num_batches = settings.batches_per_epoch(len(train_set))
    if num_batches < 1:
        raise ValueError(
            f"trainer.drop_last=true leaves no training batch: {len(train_set)} training "
            f"sequences < trainer.batch_size={settings.batch_size}"
        )

    model_kwargs = {
        k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "_target_"
    }
    spec = model_spec(cfg.model._target_, {**model_kwargs, "num_classes": len(classes)})
    # Seed again here: generating the data set or filling the feature cache on first use must
    # not shift the random draws of weight initialisation and training.
    seed_everything(int(cfg.seed))
    model = build_model(spec, where="config model")
    sampler = make_sampler(cfg, num_batches)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    scheduler = None
    if cfg.get("scheduler"):
        scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=settings.epochs * num_batches)
    meta = {
        "model_spec": spec,
        "features": logmel.params,
        "classes": classes,
        "normalizer": normalizer.state_dict(),
        "postprocess": postprocessing.to_dict(),
        "config_yaml": OmegaConf.to_yaml(cfg, resolve=True),
    }
    trainer = Trainer(
        model, sampler, optimizer, settings, run_dir, device, int(cfg.seed), meta, scheduler
    )

    def validate(probs: dict[str, np.ndarray]) -> dict[str, float]:
        metrics, _ = evaluate_split(
            val_data,
            probs,
            classes,
            hop,
            postprocessing,
            psds=False,
            classwise=False,
            events=settings.val_event_metrics,
        )
        return {k: v for k, v in metrics.items() if k in HEADLINE}

    log.info(
        "training on %s: %d sequences, %d batches per epoch", device, len(train_set), num_batches
    )
    result = trainer.fit(train_set, val_set, validate, on_epoch)
    if not distributed.is_main():
        return {}

    metrics: dict[str, Any] = {
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "train_seconds": result.train_seconds,
        f"best/{settings.monitor}": result.best_value,
        "stopped_early": result.stopped_early,
    }
    start = time.perf_counter()
    evaluated = evaluate_model(
        model,
        {split: splits[split] for split in EVAL_SPLITS},
        run_dir,
        classes,
        hop,
        postprocessing,
        device,
        batch_size=settings.batch_size,
        amp=settings.amp,
        progress=settings.progress,
        tuning=tuning,
    )
    metrics.update(evaluated.metrics)
    if tuning.enabled:
        store_postprocessing(trainer.ckpt_dir, evaluated.postprocessing)
    metrics["eval_seconds"] = time.perf_counter() - start
    write_json(metrics, run_dir / "metrics.json")
    write_training_plots(run_dir, settings.monitor, result.best_epoch)
    log.info("final evaluation:\n  %s", "\n  ".join(summary_lines(metrics, EVAL_SPLITS)))
    return metrics


def store_postprocessing(ckpt_dir: Path, postprocessing: PostProcessing) -> None:
    """Put the post-processing chosen on validation into the run's checkpoints, so that
    sed.predict and sed.evaluate apply it; the fixed settings stay as `postprocess_fixed`."""
    for path in sorted(ckpt_dir.glob("*.pt")):
        state = load_checkpoint(path)
        state.setdefault("postprocess_fixed", state.get("postprocess"))
        state["postprocess"] = postprocessing.to_dict()
        save_checkpoint(state, path)


def write_training_plots(run_dir: Path, monitor: str, best_epoch: int) -> None:
    """Learning curves and p_tf over batches from history.csv / batches.csv."""
    history = pd.read_csv(run_dir / "history.csv")
    plot_learning_curves(
        history, run_dir / "plots" / "learning_curves.png", monitor=monitor, best_epoch=best_epoch
    )
    plot_teacher_forcing(
        pd.read_csv(run_dir / "batches.csv"), run_dir / "plots" / "teacher_forcing.png"
    )


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the monitored validation metric for sweepers."""
    try:
        metrics = train(cfg)
    except Exception:
        # Hydra prints a job's exception to stderr only; the job log lets sed.report tell a
        # failed run from an unfinished one.
        log.exception("training failed")
        raise
    return float(metrics.get(f"best/{cfg.monitor}", float("nan")))


if __name__ == "__main__":
    main()
