"""The parts of a training run, built from its composed config: the featurised corpus, the
training and validation datasets, the model, teacher-forcing sampler, optimizer, scheduler and the
metadata every checkpoint carries (`assemble`). Every random draw happens in the same order on
every run of one config, so a run and its resumed twin build the same parts."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from sed.checkpoints import build_model
from sed.config_checks import config_model_spec, make_sampler
from sed.data.augment import Augment, AugmentedDataset
from sed.data.datasets import FileDataset, SequenceDataset
from sed.data.loading import SplitFeatures, load_corpus
from sed.errors import ConfigError
from sed.features import LogMel
from sed.postprocess import PostProcessing
from sed.sampling import TeacherForcingSampler
from sed.training import TrainerSettings

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Assembly:
    """What `assemble` builds: the corpus (classes, every split's features), the datasets, the
    batches per epoch, and what the Trainer takes (model, sampler, optimizer, scheduler, meta)."""

    classes: list[str]
    splits: dict[str, SplitFeatures]
    hop_seconds: float
    train_set: Dataset
    val_set: FileDataset
    num_batches: int
    model: torch.nn.Module
    sampler: TeacherForcingSampler
    optimizer: torch.optim.Optimizer
    scheduler: Any
    meta: dict[str, Any]


def assemble(
    cfg: DictConfig,
    settings: TrainerSettings,
    root: Path,
    device: torch.device,
    augment: Augment,
    postprocessing: PostProcessing,
    environment: dict[str, Any],
) -> Assembly:
    """Featurise the data set at `root` (cached under paths.cache_dir) and build the run's
    datasets, model (seeded anew: generating data or filling the feature cache on first use does
    not shift its draws), sampler, optimizer, scheduler and checkpoint metadata."""
    logmel = LogMel(**OmegaConf.to_container(cfg.features, resolve=True)).to(device)
    classes, splits, normalizer = load_corpus(
        root,
        logmel,
        Path(cfg.paths.cache_dir) / "features",
        classes=cfg.data.get("classes"),
        device=str(device),
    )
    log.info("classes (%d): %s", len(classes), ", ".join(classes))
    train_data, val_data = splits["train"], splits["validation"]
    train_set: Dataset = SequenceDataset(
        train_data.features, train_data.targets, train_data.filenames, seq_len=settings.seq_len
    )
    if augment.enabled:
        train_set = AugmentedDataset(
            train_set, augment, int(cfg.seed), normalizer.mean, normalizer.std
        )
    val_set = FileDataset(val_data.features, val_data.targets, val_data.filenames)
    num_batches = settings.batches_per_epoch(len(train_set))
    if num_batches < 1:
        raise ConfigError(
            f"trainer.drop_last=true leaves no training batch: {len(train_set)} training "
            f"sequences < trainer.batch_size={settings.batch_size}"
        )

    spec = config_model_spec(cfg, len(classes))
    seed_everything(int(cfg.seed))
    model = build_model(spec, where="model")
    # Channels-last convolutions: ~1.3x faster training steps on CPU (docs/benchmarks.md).
    model.conv.to(memory_format=torch.channels_last)
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
        "environment": environment,
    }
    return Assembly(
        classes,
        splits,
        logmel.hop_seconds,
        train_set,
        val_set,
        num_batches,
        model,
        sampler,
        optimizer,
        scheduler,
        meta,
    )
