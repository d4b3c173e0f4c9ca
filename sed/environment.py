"""The installed environment: guarded imports of packages with known incompatibilities, and the
provenance record (`environment.json`) that every run keeps beside its numbers."""

from __future__ import annotations

import hashlib
import importlib
import os
import platform
import socket
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from sed.errors import InstallError

__all__ = [
    "FIX",
    "InstallError",
    "check_pair",
    "environment_record",
    "write_environment",
    "git_state",
    "import_sed_eval",
    "import_torchaudio",
    "package_version",
    "pandas_problem",
]

# The command that installs exactly what CI tested (README "Set-up").
FIX = 'pip install -e ".[dev]" -c scripts/dev.lock'

# Packages whose versions every run records (distribution names).
RECORDED = (
    "torch",
    "torchaudio",
    "numpy",
    "pandas",
    "scipy",
    "sed_eval",
    "sed_scores_eval",
    "hydra-core",
    "omegaconf",
    "soundfile",
    "torchlibrosa",
    "setuptools",
)


def package_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None if it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> str:
    """'2.11.0+cu130' -> '2.11.0' (the local build tag does not change the ABI pairing)."""
    return version.split("+", 1)[0]


def check_pair() -> str | None:
    """Why the installed torch and torchaudio cannot work together (they must be the same
    release), from their metadata alone; None when they match or torchaudio is absent."""
    torch_v, audio_v = package_version("torch"), package_version("torchaudio")
    if torch_v is None or audio_v is None or _release(torch_v) == _release(audio_v):
        return None
    return (
        f"torchaudio {audio_v} does not match torch {torch_v}: torchaudio's compiled library "
        f"works only with the torch release it was built for. Install the tested pair: {FIX}"
    )


def import_torchaudio() -> ModuleType:
    """`torchaudio.functional`, or an InstallError naming both versions and the fix instead of a
    linker message (only resampling and the torchaudio feature backend need it)."""
    problem = check_pair()
    if problem:
        raise InstallError(problem)
    try:
        return importlib.import_module("torchaudio.functional")
    except (ImportError, OSError) as error:
        raise InstallError(
            f"torchaudio {package_version('torchaudio')} cannot be loaded with torch "
            f"{package_version('torch')} ({type(error).__name__}: {error}). Install the tested "
            f"pair: {FIX}"
        ) from error


def pandas_problem() -> str | None:
    """Why the installed pandas breaks sed_scores_eval (pandas 3), or None."""
    version = package_version("pandas")
    if version is not None and int(version.split(".", 1)[0]) >= 3:
        return (
            f"pandas {version} is installed, but sed_scores_eval (PSDS, frame scores) breaks on "
            f'pandas 3: pip install "pandas>=2.2,<3" (or {FIX})'
        )
    return None


def import_sed_eval() -> ModuleType:
    """`sed_eval`, or an InstallError for the known causes of its import failing: setuptools >=
    81 (dcase_util imports pkg_resources, which it removed) and pandas 3 (sed_scores_eval)."""
    problem = pandas_problem()
    if problem:
        raise InstallError(problem)
    try:
        with warnings.catch_warnings():
            # dcase_util imports pkg_resources, which setuptools 80 (the locked release) marks
            # deprecated with a UserWarning on every start; sed pins setuptools < 81 for it, so
            # the warning says nothing a user can act on and would precede every one-line error.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return importlib.import_module("sed_eval")
    except ModuleNotFoundError as error:
        if error.name == "pkg_resources":
            raise InstallError(
                f"sed_eval cannot be imported: its dependency dcase_util needs pkg_resources, "
                f"which setuptools {package_version('setuptools')} no longer has: "
                f'pip install "setuptools<81" (or {FIX})'
            ) from error
        raise


# ----------------------------------------------------------------------------- provenance


def git_state(folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit of the source tree sed runs from, whether it has changes (and a hash of
    the diff when it has), or nulls when it is not a git checkout."""
    root = Path(folder) if folder is not None else Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff_sha256": None}
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    dirty = bool(status.strip())
    diff = git("diff", "HEAD") if dirty else None
    return {
        "commit": commit.strip(),
        "dirty": dirty,
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff is not None else None,
    }


def _cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, sysctl on macOS, platform otherwise)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            done = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def environment_record(device: Any = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Where and with what a job ran: sed's version and git state, the command line, package
    versions, the compute device, CPU, threads, host and start time (environment.json)."""
    import torch

    import sed

    device = torch.device(device) if device is not None else torch.device("cpu")
    cuda = torch.cuda.is_available()
    device_name = _cpu_model()
    if device.type == "cuda" and cuda:
        device_name = torch.cuda.get_device_name(device)
    return {
        "sed_version": sed.__version__,
        "git": git_state(),
        "command": [sys.executable, *(sys.argv if argv is None else argv)],
        "python": platform.python_version(),
        "packages": {name: package_version(name) for name in RECORDED},
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": str(device),
        "device_name": device_name,
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_environment(path: str | os.PathLike, device: Any = None) -> dict[str, Any]:
    """Write this job's environment_record to `path` and return it. A file already there (a
    resumed run) keeps its first record; this job's is appended to its "resumes" list."""
    import json

    from sed.io import write_json

    record = environment_record(device)
    path = Path(path)
    try:
        first = json.loads(path.read_text())
    except (OSError, ValueError):
        first = None
    if isinstance(first, dict) and "sed_version" in first:
        first["resumes"] = [*first.get("resumes", []), record]
        record = first
    write_json(record, path)
    return record
