"""`python -m sed.doctor`: check the installation in a few seconds, as a table, and say how to
fix what is wrong (exit 1). The first thing to run when something is off."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sed.environment import (
    FIX,
    InstallError,
    check_pair,
    import_sed_eval,
    import_torchaudio,
    package_version,
    pandas_problem,
)

OK, WARN, FAIL = "ok", "warn", "FAIL"
# The lock the README installs through; present in a checkout (editable install) only.
LOCK = Path(__file__).resolve().parent.parent / "scripts" / "dev.lock"
CLUSTER = ("hydra-joblib-launcher", "hydra-submitit-launcher", "submitit", "optuna")


@dataclass
class Check:
    """One row of the table: what was checked, its status, what was found, and the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _guard(name: str, probe: Callable[[], Check]) -> Check:
    """Run one probe; an exception it did not expect is a failed row, never a crash."""
    try:
        return probe()
    except InstallError as error:
        return Check(name, FAIL, str(error).split(":")[0], str(error))
    except Exception as error:  # noqa: BLE001 - the doctor reports, it does not crash
        return Check(name, FAIL, f"{type(error).__name__}: {error}", FIX)


def check_python() -> Check:
    return Check("python", OK, f"{platform.python_version()} ({sys.executable})")


def check_torch() -> Check:
    import torch

    detail = f"{torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        detail += f"; CUDA {torch.version.cuda}, cuDNN {cudnn}: {names}"
    else:
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
        detail += f"; no CUDA device ({built}): trainer.device=auto uses the CPU"
    return Check("torch", OK, detail)


def check_torchaudio() -> Check:
    problem = check_pair()
    if problem:
        return Check("torchaudio", FAIL, f"{package_version('torchaudio')} (mismatch)", problem)
    import_torchaudio()
    return Check("torchaudio", OK, f"{package_version('torchaudio')}, same release as torch")


def check_soundfile() -> Check:
    import soundfile as sf

    formats = sorted(sf.available_formats())
    wanted = [f for f in ("WAV", "FLAC", "OGG") if f not in formats]
    detail = f"{sf.__version__}, {sf.__libsndfile_version__}; formats: {', '.join(formats)}"
    if wanted:
        return Check(
            "soundfile", FAIL, detail, f"libsndfile lacks {wanted}: pip install -U soundfile"
        )
    return Check("soundfile", OK, detail)


def check_metrics() -> Check:
    problem = pandas_problem()
    if problem:
        return Check(
            "sed_eval / sed_scores_eval", FAIL, f"pandas {package_version('pandas')}", problem
        )
    import_sed_eval()
    importlib.import_module("sed_scores_eval")
    return Check(
        "sed_eval / sed_scores_eval",
        OK,
        f"sed_eval {package_version('sed_eval')}, sed_scores_eval "
        f"{package_version('sed_scores_eval')} (pandas {package_version('pandas')}, setuptools "
        f"{package_version('setuptools')})",
    )


def check_hydra() -> Check:
    importlib.import_module("hydra")
    importlib.import_module("omegaconf")
    return Check(
        "hydra-core",
        OK,
        f"{package_version('hydra-core')} (omegaconf {package_version('omegaconf')})",
    )


def check_cluster() -> Check:
    missing = [name for name in CLUSTER if package_version(name) is None]
    found = ", ".join(f"{n} {package_version(n)}" for n in CLUSTER if n not in missing)
    if missing:
        return Check(
            "cluster extra (optional)",
            WARN,
            f"missing {', '.join(missing)}" + (f"; have {found}" if found else ""),
            'only for sweeps on joblib/SLURM and sed.tune: pip install -e ".[cluster]" '
            "-c scripts/dev.lock",
        )
    return Check("cluster extra (optional)", OK, found)


def check_writable(name: str, folder: Path) -> Check:
    """`folder` (created if needed) accepts a file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        return Check(
            name,
            FAIL,
            f"{folder}: {error.strerror or error}",
            "set SED_ROOT to a writable folder (data/ and outputs/ go under it)",
        )
    return Check(name, OK, f"{folder} is writable")


_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.+))?$")


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """{normalised name: version} of the lock's lines whose markers hold on this machine."""
    from packaging.markers import Marker

    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match and (match[3] is None or Marker(match[3]).evaluate()):
            pins[_normalise(match[1])] = match[2]
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_lock(lock: Path = LOCK) -> Check:
    """Whether the installed packages are the versions CI tested (scripts/dev.lock)."""
    if not lock.is_file():
        return Check("tested versions", WARN, f"no lock at {lock} (not a source checkout)")
    differ = []
    for name, version in sorted(locked_versions(lock).items()):
        installed = package_version(name)
        if installed is not None and installed.split("+", 1)[0] != version:
            differ.append(f"{name} {installed} (locked {version})")
    if differ:
        shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
        return Check("tested versions", WARN, f"differ from {lock.name}: {shown}", FIX)
    return Check("tested versions", OK, f"installed packages match {lock.name}")


def run_checks(data_dir: Path, cache_dir: Path) -> list[Check]:
    probes: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("torch", check_torch),
        ("torchaudio", check_torchaudio),
        ("soundfile", check_soundfile),
        ("sed_eval / sed_scores_eval", check_metrics),
        ("hydra-core", check_hydra),
        ("cluster extra (optional)", check_cluster),
        ("tested versions", check_lock),
        ("data folder", lambda: check_writable("data folder", data_dir)),
        ("cache folder", lambda: check_writable("cache folder", cache_dir)),
    ]
    return [_guard(name, probe) for name, probe in probes]


def table(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  status  found", f"{'-' * width}  ------  -----"]
    lines += [f"{c.name:<{width}}  {c.status:<6}  {c.detail}" for c in checks]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sed.doctor",
        description="Check the installation: versions, CUDA, audio I/O, metrics, folders.",
    )
    root = Path(os.environ.get("SED_ROOT") or Path.cwd())
    parser.add_argument(
        "--data-dir", type=Path, default=root / "data", help="(default: %(default)s)"
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="(default: DATA_DIR/cache)")
    args = parser.parse_args(argv)
    checks = run_checks(args.data_dir, args.cache_dir or args.data_dir / "cache")
    print(table(checks))
    failed = [c for c in checks if c.status == FAIL]
    for c in checks:
        if c.status != OK and c.fix:
            print(f"\n{c.name}: {c.fix}", file=sys.stderr if c.status == FAIL else sys.stdout)
    if failed:
        print(f"\n{len(failed)} check(s) failed.", file=sys.stderr)
        return 1
    print("\nsed is ready.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
