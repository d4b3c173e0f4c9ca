"""The one wrapper of every Hydra entry point (sed.train, sed.evaluate, sed.predict, sed.tune):
how a job ends, on the console, in its log and in its status.json.

- a user error (any `sed.errors.SedError`): one line `sed.ENTRY: error: MESSAGE` on stderr, exit
  status 1; in a Hydra multirun the job fails with Hydra's one-line report and the other jobs
  still run. Outside a multirun, a job refused before it began its own work leaves the folder as
  it found it: no folder at all when Hydra made it for this job.
- Ctrl-C: one line (for sed.train, the command that resumes the run), exit status 130.
- anything else is a bug: Hydra prints its traceback.

Every failure's traceback goes to the job's log file, and status.json records how the job ended
(sed.runs.RunStatus).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode

from sed import schemas
from sed.errors import SedError
from sed.io import atomic_write
from sed.runs import RunStatus

log = logging.getLogger(__name__)

# Every entry point imports this module before Hydra composes its config: the config groups'
# schemas must be in the ConfigStore by then.
schemas.register()

T = TypeVar("T")


class SweepJobError(CompactHydraException):
    """A sweep job's bad input: Hydra runs the other jobs, then reports it in one line."""


@dataclass
class Job:
    """One entry point's job: `entry` (train, evaluate, predict, tune); where its status.json
    goes (None: this process writes none, e.g. a torchrun rank other than 0); `started`, whether
    the job has begun writing results of its own (None: always counted as begun); `tidy`, which
    removes the folder a job left that had not begun (Hydra's record, its log); and
    `interrupted`, the Ctrl-C message."""

    entry: str
    status: Path | None
    started: Callable[[], bool] | None = None
    tidy: Callable[[], object] | None = None
    interrupted: Callable[[], str] | None = None


def run_job(job: Job, work: Callable[[], T]) -> T:
    """`work()`, ended as the module docstring says; returns its result."""
    name = f"sed.{job.entry}"
    status = RunStatus(job.status, job.entry) if job.status is not None else None
    found = _read(status.path) if status is not None else None  # a previous job's record
    if status is not None and status.path.parent.is_dir():
        _record(status, "running")
    try:
        result = work()
    except KeyboardInterrupt:
        message = job.interrupted() if job.interrupted else f"{name}: interrupted"
        log_to_files(logging.WARNING, message)
        _record(status, "interrupted", message)
        print(message, file=sys.stderr)
        sys.exit(130)
    except SedError as err:
        log_to_files(logging.ERROR, f"{name} failed", sys.exc_info())
        sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        # Refused before it began: the folder's record stays as it was (a refused resume leaves
        # the run interrupted, not failed). A sweep keeps its jobs: sed.report counts failures.
        if not sweep and job.started is not None and not job.started():
            _restore(status, found)
            if job.tidy is not None:
                job.tidy()
        else:
            _record(status, "failed", str(err))
        if sweep:
            log.error("%s: error: %s", name, err)
            raise SweepJobError(f"{name}: error: {err}") from None
        sys.exit(f"{name}: error: {err}")
    except Exception as err:
        # Hydra prints the traceback on the console.
        log_to_files(logging.ERROR, f"{name} failed", sys.exc_info())
        _record(status, "failed", "".join(traceback.format_exception_only(err)).strip())
        raise
    _record(status, "finished")
    return result


def _record(status: RunStatus | None, state: str, message: str | None = None) -> None:
    """Write status.json; a folder that cannot be written is logged, never raised (the job's
    own outcome is what the user must see)."""
    if status is None:
        return
    try:
        status.write(state, message)
    except OSError as err:
        log.warning("cannot write %s (%s)", status.path, err.strerror or err)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _restore(status: RunStatus | None, found: bytes | None) -> None:
    """Put back the status.json the job found (none: remove the one it wrote)."""
    if status is None:
        return
    try:
        if found is None:
            status.path.unlink(missing_ok=True)
        else:
            atomic_write(status.path, lambda handle: handle.write(found))
    except OSError as err:
        log.warning("cannot restore %s (%s)", status.path, err.strerror or err)


def log_to_files(level: int, message: str, exc_info: object = None) -> None:
    """Write `message` (and a traceback) to the job's log files only: the console gets the error
    once, from run_job or from Hydra."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), exc_info)  # type: ignore[arg-type]
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
