"""Run directories: claiming one (or refusing a folder that holds a run), refusing to resume with a
config that changes what the run computes, what Ctrl-C reports, the Hydra callback that checks an
output folder before Hydra writes to it, removing a folder a refused job left nothing in, and the
job's `status.json`.

status.json (sed.report reads it): `{"status": "running" | "finished" | "failed" | "interrupted",
"entry": "train" | "evaluate" | "predict" | "tune", "message": str | null, "started": ISO-8601,
"ended": ISO-8601 | null}`, written atomically.
"""

from __future__ import annotations

import inspect
import logging
import shlex
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sed import schemas
from sed.checkpoints import (
    CheckpointError,
    ModelSpecError,
    load_checkpoint,
    model_class,
    require,
)
from sed.errors import ConfigError
from sed.io import write_json

log = logging.getLogger(__name__)

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
    # configs/callbacks/default.yaml's copies of the resumable trainer keys above
    "callbacks.tensorboard.enabled",
    "callbacks.checkpoints.keep_every",
    "callbacks.time_limit.max_minutes",
    "paths",
    "tuning",
)
HOLDS_RUN = "{} already holds a run: continue it with trainer.resume=true, or give another {}"
STATUS_FILE = "status.json"
STATUSES = ("running", "finished", "failed", "interrupted")
# What Hydra writes into a job's output subdir before the job runs.
HYDRA_RECORD = ("config.yaml", "hydra.yaml", "overrides.yaml")


# ----------------------------------------------------------------------------- claiming


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


def unused(folder: Path) -> bool:
    """Whether `folder` holds nothing but what this Hydra job wrote before its work began:
    Hydra's record in its output subdir, the job's log files and status.json."""
    return _unused_paths(folder.resolve()) is not None


def remove_unused(folder: Path, up_to: Path | None = None) -> bool:
    """Delete `folder` if it is `unused`, then its empty parents up to and including `up_to`;
    returns whether `folder` was removed. A refused setting thus leaves no folder behind, while a
    folder holding anything else is kept as it is."""
    folder = folder.resolve()
    paths = _unused_paths(folder)
    if paths is None:
        return False
    files, dirs = paths
    for path in files:
        path.unlink(missing_ok=True)
    for path in [*dirs, folder]:
        path.rmdir()
    stop = up_to.resolve() if up_to is not None else folder
    parent = folder.parent
    while parent == stop or stop in parent.parents:
        try:
            parent.rmdir()
        except OSError:  # not empty: it held something before this job
            break
        parent = parent.parent
    return True


def _unused_paths(folder: Path) -> tuple[set[Path], list[Path]] | None:
    """(files, folders deepest first) that this job wrote into `folder` before its work began,
    or None when `folder` holds anything else (or is the working directory or above it)."""
    if not folder.is_dir() or folder in (Path.cwd(), *Path.cwd().parents):
        return None
    files = {folder / STATUS_FILE, *(p for p in _log_files() if folder in p.parents)}
    subdir = HydraConfig.get().output_subdir if HydraConfig.initialized() else None
    record = (folder / subdir).resolve() if subdir else None
    dirs: list[Path] = []
    if record is not None and folder in record.parents and record.is_dir():
        if any(p.name not in HYDRA_RECORD or not p.is_file() for p in record.iterdir()):
            return None
        files |= {record / name for name in HYDRA_RECORD}
        dirs.append(record)
        while dirs[-1].parent != folder:  # e.g. sed.tune's .tune/worker0
            dirs.append(dirs[-1].parent)
    if any(p not in files and p not in dirs for p in folder.rglob("*")):
        return None
    return files, dirs


def began(run_dir: Path) -> Callable[[], bool]:
    """A test of whether the training run in `run_dir` has begun since this call: it claimed
    checkpoints/ or (resumed) wrote its environment.json."""
    marks = [run_dir / "checkpoints", run_dir / "environment.json"]
    found = [signature(path) for path in marks]
    return lambda: [signature(path) for path in marks] != found


def signature(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of `path`, None if absent: a file written anew (atomically) changes it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _log_files() -> set[Path]:
    """The files the root logger writes to (the job's log)."""
    return {
        Path(handler.baseFilename).resolve()
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.FileHandler)
    }


# ----------------------------------------------------------------------------- resuming


def refuse_changed_config(cfg: DictConfig, state: dict[str, Any], path: Path) -> None:
    """Refuse to resume from the checkpoint `state` (read from `path`) with a config that
    changes what the run computes: any key outside RESUMABLE, named with both values."""
    old = _flatten(OmegaConf.to_container(OmegaConf.create(require(state, "config_yaml", path))))
    new = _flatten(OmegaConf.to_container(cfg, resolve=True))
    if not any(key.startswith("callbacks.") for key in old):
        # Trained before configs/callbacks/ existed: with default_callbacks, which the group's
        # default reproduces from the trainer keys compared here.
        new = {k: v for k, v in new.items() if not k.startswith("callbacks.")}
    # Trained before the groups' schemas filled in every setting (sed.schemas): a key the old
    # config lacks, holding the schema's default now, is the default the code used then.
    defaults = _flatten(schemas.defaults(cfg))
    new = {k: v for k, v in new.items() if k in old or k not in defaults or v != defaults[k]}
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
        if key == "model_spec" and key in state and _same_spec(state[key], meta[key]):
            continue
        if key in state and state[key] != meta[key]:
            raise ConfigError(
                f"trainer.resume=true, but the data give {key} {meta[key]}, while {path} holds "
                f"{state[key]}: start a new run"
            )


_ABSENT = object()


def _same_spec(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """The same model: the same class, and the same kwargs where a kwarg one spec lacks is the
    class's default (a spec stored before the model schema listed every argument)."""
    if not (isinstance(old, dict) and isinstance(new, dict)) or old.get("target") != new.get(
        "target"
    ):
        return False
    try:
        parameters = inspect.signature(model_class(new["target"])).parameters
    except (ModelSpecError, TypeError, ValueError):
        return old == new
    a, b = old.get("kwargs") or {}, new.get("kwargs") or {}
    for key in a.keys() | b.keys():
        default = parameters[key].default if key in parameters else _ABSENT
        if a.get(key, default) != b.get(key, default):
            return False
    return True


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


def interrupted(run_dir: Path) -> str:
    """What Ctrl-C reports for a training run: the last epoch saved and the command that resumes
    the run (temporary files of a write cut short are removed)."""
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


# ----------------------------------------------------------------------------- status.json


class RunStatus:
    """A job's status.json at `path`: `write(status, message)` records it, with the time the job
    started and, unless it is still running, the time it ended."""

    def __init__(self, path: Path, entry: str) -> None:
        self.path, self.entry, self.started = Path(path), entry, _now()

    def write(self, status: str, message: str | None = None) -> Path:
        """Write status.json atomically (folders are created)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {STATUSES}")
        record = {
            "status": status,
            "entry": self.entry,
            "message": message,
            "started": self.started,
            "ended": None if status == "running" else _now(),
        }
        return write_json(record, self.path)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- Hydra callback


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
