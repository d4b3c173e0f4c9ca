"""`python -m sed.train [+experiment=NAME] [method=baseline|tf|ss] [overrides]`: extract features,
train the CRNN with teacher forcing / scheduled sampling, evaluate the best checkpoint on
validation and test. `train(cfg)` is the whole job for a composed config (tests call it): checks
(sed.config_checks), run directory (sed.runs), assembly (sed.assemble), Trainer, final evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from sed import distributed
from sed.assemble import assemble, seed_everything
from sed.callbacks import Callback
from sed.checkpoints import load_checkpoint, save_checkpoint
from sed.cli import Job, run_job
from sed.config_checks import build, check_config, make_callbacks
from sed.data import synthetic
from sed.data.augment import Augment
from sed.data.folder import EVAL_SPLITS
from sed.environment import write_environment
from sed.inference import resolve_device
from sed.io import write_json
from sed.outputs import HEADLINE, evaluate_model, evaluate_split, summary_lines
from sed.plots import plot_learning_curves, plot_teacher_forcing
from sed.postprocess import PostProcessing
from sed.postprocess_search import Tuning
from sed.runs import (
    STATUS_FILE,
    began,
    claim_run_dir,
    interrupted,
    refuse_changed_config,
    refuse_changed_model,
    remove_unused,
)
from sed.training import Trainer

log = logging.getLogger(__name__)


def prepare_data(cfg: DictConfig) -> Path:
    """The dataset root (checked by check_config); the synthetic set is generated on first use."""
    root = Path(cfg.data.root)
    if cfg.data.get("generate") is not None:
        synthetic.ensure(root, **OmegaConf.to_container(cfg.data.generate, resolve=True))
    return root


def train(
    cfg: DictConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """The whole job for a composed config, in `cfg.paths.output_dir`; returns metrics.json's
    content. `callbacks` run after the config's (sed.tune's Pruner), `on_epoch(epoch, history_row)`
    after every epoch's checkpoint.
    Under `torchrun`, every rank trains in rank 0's run directory and rank 0 alone evaluates and
    writes; the other ranks return {}."""
    run_dir = Path(cfg.paths.output_dir)
    if not cfg.trainer.resume and distributed.requeued(run_dir):
        log.info("requeued job: resuming from %s", run_dir / "checkpoints" / "last.pt")
        cfg.trainer.resume = True
    # Everything that can be checked is checked before any data is generated, feature computed
    # or folder claimed.
    settings = check_config(cfg)
    configured = make_callbacks(cfg, settings)
    postprocessing = PostProcessing(**OmegaConf.to_container(cfg.postprocess, resolve=True))
    tuning: Tuning = build(cfg.tuning, "tuning")
    augment: Augment = build(cfg.augment, "augment")
    last = run_dir / "checkpoints" / "last.pt"
    previous = load_checkpoint(last) if settings.resume and last.is_file() else None
    if previous is not None:
        refuse_changed_config(cfg, previous, last)
    claim_run_dir(run_dir, settings.resume)
    seed_everything(int(cfg.seed))
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = distributed.init(resolve_device(settings.device, key="trainer.device"))
    # Rank 0's run directory on every rank (each rank's Hydra resolved its own timestamp).
    run_dir = Path(distributed.broadcast_object(str(run_dir)))
    environment = (
        write_environment(run_dir / "environment.json", device) if distributed.is_main() else {}
    )
    if not distributed.is_main():  # one log: rank 0's (the others still report warnings)
        logging.getLogger().setLevel(logging.WARNING)
    root = prepare_data(cfg)
    parts = assemble(cfg, settings, root, device, augment, postprocessing, environment)
    if previous is not None:
        refuse_changed_model(parts.meta, previous, last)
        del previous
    trainer = Trainer(
        parts.model, parts.sampler, parts.optimizer, settings, run_dir, device, int(cfg.seed),
        parts.meta, parts.scheduler, [*configured, *callbacks],
    )  # fmt: skip
    classes, hop = parts.classes, parts.hop_seconds

    def validate(probs: dict[str, np.ndarray]) -> dict[str, float]:
        metrics, _ = evaluate_split(
            parts.splits["validation"],
            probs,
            classes,
            hop,
            postprocessing,
            psds=False,
            classwise=False,
            events=settings.val_event_metrics,
        )
        return {k: v for k, v in metrics.items() if k in HEADLINE}

    sizes = len(parts.train_set), parts.num_batches
    log.info("training on %s: %d sequences, %d batches per epoch", device, *sizes)
    result = trainer.fit(parts.train_set, parts.val_set, validate, on_epoch)
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
        parts.model,
        {split: parts.splits[split] for split in EVAL_SPLITS},
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
    """Hydra entry point (sed.cli.run_job); returns the monitored validation metric for sweepers.
    A refused setting leaves no run directory; Ctrl-C prints the resume command."""
    run_dir = Path(cfg.paths.output_dir)
    job = Job(
        "train",
        run_dir / STATUS_FILE if distributed.context().rank == 0 else None,
        started=began(run_dir),
        tidy=lambda: remove_unused(run_dir),
        interrupted=lambda: interrupted(run_dir),
    )
    # The importable module's train, not __main__'s: a launcher (joblib, submitit) pickles this
    # function by value and then takes train by reference.
    from sed.train import train as run

    metrics = run_job(job, lambda: run(cfg))
    return float(metrics.get(f"best/{cfg.monitor}", float("nan")))


if __name__ == "__main__":
    main()
