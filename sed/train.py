"""`python -m sed.train [+experiment=NAME] [method=baseline|tf|ss] [overrides]`: extract features,
train the CRNN with teacher forcing / scheduled sampling, evaluate the best checkpoint on
validation and test. `train(cfg)` is the whole job for a composed config (tests call it)."""

from __future__ import annotations

import logging
import math
import random
import shlex
import sys
import tempfile
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from sed import distributed
from sed.checkpoints import (
    CheckpointError,
    build_model,
    load_checkpoint,
    model_spec,
    require,
    save_checkpoint,
)
from sed.data import synthetic
from sed.data.augment import Augment, AugmentedDataset
from sed.data.datasets import FileDataset, SequenceDataset
from sed.data.folder import EVAL_SPLITS
from sed.data.loading import load_corpus
from sed.environment import write_environment
from sed.features import LogMel
from sed.inference import USER_ERRORS, ConfigError, resolve_device
from sed.io import write_json
from sed.outputs import HEADLINE, evaluate_model, evaluate_split, summary_lines
from sed.plots import plot_learning_curves, plot_teacher_forcing
from sed.postprocess import PostProcessing
from sed.sampling import SamplerError, TeacherForcingSampler
from sed.training import Trainer, TrainerSettings
from sed.tuning import Tuning, TuningError

log = logging.getLogger(__name__)

# What `python -m sed.train` reports in one line (exit status 1) instead of a traceback.
TRAIN_ERRORS = (*USER_ERRORS, SamplerError, TuningError, FloatingPointError)
# Keys that may differ when a run is resumed: they change how long or where it runs, not what
# it computes (`tuning` acts only on the final evaluation, which a resumed run does itself).
RESUMABLE = (
    "trainer.epochs",
    "trainer.max_minutes",
    "trainer.keep_every",
    "trainer.resume",
    "trainer.progress",
    "trainer.tensorboard",
    "trainer.num_workers",
    "trainer.num_threads",
    "trainer.device",
    "paths",
    "tuning",
)


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


def config_model_spec(cfg: DictConfig, num_classes: int) -> dict[str, Any]:
    """The model spec (sed.checkpoints.model_spec) of the model group, for `num_classes`."""
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    target = kwargs.pop("_target_")
    return model_spec(target, {**kwargs, "num_classes": num_classes})


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
    # Everything that can be checked is checked before any data is generated, feature computed
    # or folder claimed.
    settings = check_config(cfg)
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
        raise ConfigError(
            f"trainer.drop_last=true leaves no training batch: {len(train_set)} training "
            f"sequences < trainer.batch_size={settings.batch_size}"
        )

    spec = config_model_spec(cfg, len(classes))
    # Seed again here: generating the data set or filling the feature cache on first use must
    # not shift the random draws of weight initialisation and training.
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
    if previous is not None:
        refuse_changed_model(meta, previous, last)
        del previous
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


# ----------------------------------------------------------------------------- checks


def build(node: DictConfig, key: str) -> Any:
    """instantiate(node), with an error of the target's arguments reported as a ConfigError that
    names the config group `key`."""
    try:
        return instantiate(node)
    except InstantiationException as err:
        message = str(err.__cause__ or err)
        raise ConfigError(message if message.startswith(key) else f"{key}: {message}") from None


def check_config(cfg: DictConfig) -> TrainerSettings:
    """Check every setting that needs no data (seed, trainer, monitor, data.classes, optimizer,
    sampler, model), each error naming its key; returns the trainer settings."""
    if not _is_type(cfg.seed, int):
        raise ConfigError(f"seed must be an integer, got {cfg.seed!r}")
    check_fields(cfg.trainer, TrainerSettings, "trainer")
    settings: TrainerSettings = build(cfg.trainer, "trainer")
    if settings.max_minutes is not None and settings.max_minutes < 0:
        raise ConfigError(f"trainer.max_minutes must be >= 0 or null, got {settings.max_minutes}")
    names = monitor_names(settings.val_event_metrics)
    if settings.monitor not in names:
        hint = "" if settings.val_event_metrics else " (trainer.val_event_metrics=false)"
        raise ConfigError(f"monitor={settings.monitor!r} is not one of {names}{hint}")
    classes = check_classes(cfg.data.get("classes"))
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


def check_fields(node: DictConfig, cls: type, key: str) -> None:
    """Each key of `node` (but `_target_`) is a field of the dataclass `cls` and has its type."""
    hints = typing.get_type_hints(cls)
    for name, value in node.items():
        if name == "_target_":
            continue
        if name not in hints:
            raise ConfigError(f"{key}.{name} is not a setting; known: {sorted(hints)}")
        types = typing.get_args(hints[name]) or (hints[name],)
        if not all(isinstance(t, type) for t in types):
            continue  # e.g. a Literal: the class checks it
        if not any(_is_type(value, t) for t in types):
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise ConfigError(f"{key}.{name} must be {wanted}, got {value!r}")


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_TYPE_NAMES[type(None)] = "null"


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


HOLDS_RUN = "{} already holds a run: continue it with trainer.resume=true, or give another {}"


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a sed.train run (checkpoints/ or metrics.json)."""
    return (folder / "checkpoints").exists() or (folder / "metrics.json").exists()


def claim_run_dir(run_dir: Path, resume: bool) -> None:
    """Make RUN_DIR/checkpoints/, refusing a folder that holds a run unless `resume`.

    mkdir is atomic: of two runs given one folder (started in the same instant) only the first
    gets it, and the other stops before it reads or writes any of the first one's files."""
    try:
        if (run_dir / "metrics.json").exists() and not resume:
            raise FileExistsError
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=resume)
    except FileExistsError:
        raise ConfigError(HOLDS_RUN.format(run_dir, "hydra.run.dir")) from None
    except OSError as err:
        raise ConfigError(
            f"cannot write the run directory {run_dir} ({err.strerror or err}); give a writable "
            "one with hydra.run.dir=DIR"
        ) from None
    if resume:
        remove_orphans(run_dir)


def remove_orphans(run_dir: Path) -> list[Path]:
    """Delete the temporary files (`.NAME.PID.ID.tmp`, sed.io.atomic_write) that a killed run
    left in RUN_DIR and RUN_DIR/checkpoints; returns them."""
    orphans = [*run_dir.glob(".*.tmp"), *(run_dir / "checkpoints").glob(".*.tmp")]
    for path in orphans:
        path.unlink(missing_ok=True)
    if orphans:
        log.info("removed %d temporary file(s) of an interrupted run", len(orphans))
    return orphans


def refuse_changed_config(cfg: DictConfig, state: dict[str, Any], path: Path) -> None:
    """Refuse to resume from the checkpoint `state` (read from `path`) with a config that
    changes what the run computes: any key outside RESUMABLE, named with both values."""
    old = _flatten(OmegaConf.to_container(OmegaConf.create(require(state, "config_yaml", path))))
    new = _flatten(OmegaConf.to_container(cfg, resolve=True))
    changed = [
        key
        for key in sorted(old.keys() | new.keys())
        if old.get(key, _ABSENT) != new.get(key, _ABSENT)
        and not any(key == k or key.startswith(k + ".") for k in RESUMABLE)
    ]
    if changed:
        diffs = "; ".join(f"{k}: {_show(old, k)} -> {_show(new, k)}" for k in changed)
        raise ConfigError(
            f"trainer.resume=true, but the config differs from the one {path} was trained with: "
            f"{diffs}. Resume with the checkpoint's values or start a new run (a resumed run may "
            f"change only {', '.join(RESUMABLE)})"
        )


def refuse_changed_model(meta: dict[str, Any], state: dict[str, Any], path: Path) -> None:
    """Refuse to resume when the data give other classes (so another model) than the
    checkpoint `state` (read from `path`) holds."""
    for key in ("classes", "model_spec"):
        if key in state and state[key] != meta[key]:
            raise ConfigError(
                f"trainer.resume=true, but the data give {key} {meta[key]}, while {path} holds "
                f"{state[key]}: start a new run"
            )


_ABSENT = object()


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b": value}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(flat: dict[str, Any], key: str) -> str:
    return "(absent)" if key not in flat else repr(flat[key])


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


# ----------------------------------------------------------------------------- entry point


class CheckOutputDir(Callback):
    """Hydra callback (configs/hydra/default.yaml): an output folder that cannot be written, or
    that holds a run (unless trainer.resume=true), is reported in one line naming its key before
    Hydra writes its config and log there (over the other run's)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # as run_job does next: ${hydra:...} resolves
        folder = check_writable(config.hydra.run.dir, "hydra.run.dir")
        if holds_run(folder) and not OmegaConf.select(config, "trainer.resume", default=False):
            sys.exit(f"sed.train: error: {HOLDS_RUN.format(folder, 'hydra.run.dir')}")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = check_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
        jobs = [job for job in folder.iterdir() if job.is_dir() and holds_run(job)]
        if jobs and not OmegaConf.select(config, "trainer.resume", default=False):
            sys.exit(f"sed.train: error: {HOLDS_RUN.format(jobs[0], 'hydra.sweep.dir')}")


def check_writable(folder: str, key: str) -> Path:
    """Create `folder` and a file in it, or exit with a one-line error naming `key`."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        sys.exit(f"sed.train: error: {key}={folder} cannot be written ({err.strerror or err})")
    return Path(folder)


class SweepJobError(CompactHydraException):
    """A sweep job's bad input: Hydra runs the other jobs, then reports it in one line."""


def log_to_files(level: int, message: str, exc_info: Any = None) -> None:
    """Write `message` (and a traceback) to the job's log files only: sed.report reads them, and
    the console gets the error once, from main or from Hydra."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def interrupted(cfg: DictConfig) -> str:
    """What Ctrl-C reports: the last epoch saved and the command that resumes the run."""
    run_dir = Path(cfg.paths.output_dir)
    remove_orphans(run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    try:
        epoch = int(load_checkpoint(last).get("epoch", 0))
    except CheckpointError:  # none saved yet
        epoch = 0
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    overrides = [o for o in overrides if not o.lstrip("+").startswith("trainer.resume=")]
    command = ["python", "-m", "sed.train", "trainer.resume=true", f"hydra.run.dir={run_dir}"]
    when = f"after epoch {epoch}" if epoch else "before the first epoch ended"
    return f"sed.train: interrupted {when}; resume with: {shlex.join(command + overrides)}"


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    """Hydra entry point; returns the monitored validation metric for sweepers.

    A bad input is reported in one line, exit status 1 (in a sweep the other jobs run first);
    Ctrl-C prints the command that resumes the run, exit status 130. The job's log file gets
    every failure's traceback, so that sed.report can tell a failed run from an unfinished one.
    """
    try:
        metrics = train(cfg)
    except KeyboardInterrupt:
        message = interrupted(cfg)
        log_to_files(logging.WARNING, message)
        print(message, file=sys.stderr)
        sys.exit(130)
    except TRAIN_ERRORS as err:
        log_to_files(logging.ERROR, "training failed", sys.exc_info())
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("sed.train: error: %s", err)
            raise SweepJobError(f"sed.train: error: {err}") from None
        sys.exit(f"sed.train: error: {err}")
    except Exception:
        # Hydra prints the traceback on the console.
        log_to_files(logging.ERROR, "training failed", sys.exc_info())
        raise
    return float(metrics.get(f"best/{cfg.monitor}", float("nan")))


if __name__ == "__main__":
    main()
