"""Shared by the tests: run an entry point as a user would type it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_sed(
    module: str, *args: str, root: Path, cwd: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` with data and outputs under `root` (SED_ROOT) and one thread;
    fails the calling test, with the end of the output, unless it exits 0."""
    env = {**os.environ, "SED_ROOT": str(root), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{module} {list(args)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    )
    return proc
