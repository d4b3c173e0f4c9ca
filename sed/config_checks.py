"""The checks of a training config that need no data: every setting sed.train can refuse before a
data set is generated, a feature computed or a run directory claimed, each error naming its key
(seed, trainer, monitor, data.classes, data.generate, data.root, optimizer, sampler, model), and
the config groups built from the config (`build`, `config_model_spec`, `make_sampler`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from sed import schemas
from sed.callbacks import Callback, default_callbacks
from sed.checkpoints import build_model, model_spec
from sed.data import synthetic
from sed.errors import ConfigError, MissingFileError
from sed.outputs import HEADLINE
from sed.sampling import TeacherForcingSampler
from sed.training import TrainerSettings


def build(node: DictConfig, key: str) -> Any:
    """instantiate(node), with an error of the target's arguments reported as a ConfigError that
    names the config group `key`."""
    try:
        return instantiate(node)
    except InstantiationException as err:
        message = str(err.__cause__ or err)
        raise ConfigError(message if message.startswith(key) else f"{key}: {message}") from None


def config_model_spec(cfg: DictConfig, num_classes: int) -> dict[str, Any]:
    """The model spec (sed.checkpoints.model_spec) of the model group, for `num_classes`."""
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    target = kwargs.pop("_target_")
    return model_spec(target, {**kwargs, "num_classes": num_classes})


def make_sampler(cfg: DictConfig, num_batches: int) -> TeacherForcingSampler:
    """The sampler group (a `_partial_` config) completed with the batches per epoch."""
    return instantiate(cfg.sampler)(num_batches=num_batches)


def check_config(cfg: DictConfig) -> TrainerSettings:
    """Check every setting that needs no data (seed, trainer, monitor, data, optimizer, sampler,
    model), each error naming its key; returns the trainer settings."""
    if not _is_type(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    # Unknown keys and wrong types were refused while composing (sed.schemas); what `+KEY=...`
    # added past a schema is refused here.
    schemas.refuse_added_keys(cfg)
    settings: TrainerSettings = build(cfg.trainer, "trainer")
    if settings.max_minutes is not None and settings.max_minutes < 0:
        raise ConfigError(f"trainer.max_minutes must be >= 0 or null, got {settings.max_minutes}")
    names = monitor_names(settings.val_event_metrics)
    if settings.monitor not in names:
        hint = "" if settings.val_event_metrics else " (trainer.val_event_metrics=false)"
        raise ConfigError(f"monitor={settings.monitor!r} is not one of {names}{hint}")
    classes = check_classes(cfg.data.get("classes"))
    check_data(cfg.data)
    lr = cfg.optimizer.get("lr")
    if lr is not None and not (_is_type(lr, float) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"optimizer.lr must be a number > 0, got {lr!r}")
    try:
        build(cfg.optimizer, "optimizer")([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"optimizer: {err}") from None
    try:
        make_sampler(cfg, num_batches=1)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"sampler: {err}") from None
    # Without data.classes the data decide the number of classes; any count checks the rest.
    build_model(config_model_spec(cfg, len(classes) if classes else 1), "model")
    return settings


def check_data(data: DictConfig) -> None:
    """`data.generate`: parameters the synthetic generator takes (sed.data.synthetic.check_params);
    without it, `data.root` must be an existing folder (the error gives the data set's prepare
    command, when it has one)."""
    generate = data.get("generate")
    if generate is None:
        root = Path(data.root)
        if not root.is_dir():
            hint = data.get("prepare_command")
            raise MissingFileError(
                f"data.root={root} does not exist" + (f"; prepare it with: {hint}" if hint else "")
            )
        return
    # SyntheticError names the parameter's key (data.generate.NAME).
    synthetic.check_params(**OmegaConf.to_container(generate, resolve=True))


def _is_type(value: Any, kind: type) -> bool:
    """isinstance, where a bool is no number and an int is a float."""
    if kind in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def monitor_names(val_event_metrics: bool) -> list[str]:
    """What `monitor` may name: the losses and the validation metrics of every epoch, or `epoch`
    (with monitor_mode=max: keep the last epoch, never stop early)."""
    metrics = [m for m in HEADLINE if val_event_metrics or m.startswith("frame_")]
    return ["validation_loss", "train_loss", *(f"validation/{m}" for m in metrics), "epoch"]


def check_classes(classes: Any) -> list[str] | None:
    """`data.classes`: null (the training labels) or a list of distinct class names."""
    if classes is None:
        return None
    if not isinstance(classes, ListConfig | list) or not classes:
        raise ConfigError(
            f"data.classes must be a list of class names, e.g. data.classes=[car,dog] "
            f"(data.classes=[car] for one class), got {classes!r}"
        )
    names = list(classes)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"data.classes must hold class names, got {name!r} in {names}")
    if len(set(names)) < len(names):
        raise ConfigError(f"data.classes names a class twice: {names}")
    return names


def make_callbacks(cfg: DictConfig, settings: TrainerSettings) -> list[Callback]:
    """The callbacks group (configs/callbacks/), in its order, each entry built with errors
    naming `callbacks.NAME` (an entry set to null is left out); without the group, the same
    list from the trainer settings (sed.callbacks.default_callbacks)."""
    if cfg.get("callbacks") is None:
        return default_callbacks(settings)
    return [
        build(node, f"callbacks.{name}") for name, node in cfg.callbacks.items() if node is not None
    ]
