"""Interrupted runs, as a user or a scheduler interrupts them: `python -m sed.train` killed with
SIGKILL in the middle of an epoch, or stopped with Ctrl-C (SIGINT), then resumed in its run
directory, ends with the same checkpoint, history and metrics, bit for bit, as a run that was
never interrupted (CPU, one thread). The real kills train for a few epochs and are marked slow;
the fast test checks what Ctrl-C reports without training (and tests/test_train.py's
test_resume_equals_uninterrupted resumes in-process)."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from sed.checkpoints import load_checkpoint
from sed.report import collect_runs
from sed.train import train

REPO = Path(__file__).resolve().parents[1]
# The smoke recipe, long enough to be interrupted mid-way, with patience that never stops it.
OVERRIDES = ["+experiment=smoke", "trainer.num_threads=1", "trainer.epochs=3", "trainer.patience=9"]


def env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SED_ROOT": str(root),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }


def start(args: list[str], root: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=root, env=env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_epoch(proc: subprocess.Popen, last: Path) -> None:
    """Wait until the run has saved its first epoch (last.pt is written atomically)."""
    deadline = time.monotonic() + 300
    while not last.is_file():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no epoch saved within 300 s"
        time.sleep(0.02)


def resume(command: list[str], root: Path) -> None:
    proc = subprocess.run(command, cwd=root, env=env(root), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout


def same(x: object, y: object) -> bool:
    """Equal, bit for bit: tensors by value and dtype, containers item by item, NaN == NaN."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return type(x) is type(y) and len(x) == len(y) and all(map(same, x, y))
    if isinstance(x, float) and math.isnan(x):
        return isinstance(y, float) and math.isnan(y)
    return x == y


# What the environment record (sed.environment) says of the process itself: its command line,
# start time and resumes differ between an in-process run and a killed and resumed `python -m`.
PROCESS_KEYS = ("command", "started", "resumes")


def assert_same_run(a: Path, b: Path) -> None:
    """Checkpoints (weights, optimizer, sampler, random states, counters, callbacks' states),
    history, batches and metrics agree bit for bit; only wall times, the config's run directory
    and the environment record's process (PROCESS_KEYS) differ."""
    for name in ("last.pt", "best.pt"):
        x, y = (load_checkpoint(run / "checkpoints" / name) for run in (a, b))
        assert x.keys() == y.keys()
        assert "callbacks" in x  # early stopping's and the best checkpoint's state
        for key in x.keys() - {"train_seconds", "history", "config_yaml", "environment"}:
            assert same(x[key], y[key]), (name, key)
        records = [
            {k: v for k, v in s["environment"].items() if k not in PROCESS_KEYS} for s in (x, y)
        ]
        assert same(*records), name
        timeless = [
            [{k: v for k, v in row.items() if k != "seconds"} for row in s["history"]]
            for s in (x, y)
        ]
        assert same(*timeless), name
    for name in ("history.csv", "batches.csv"):
        x, y = (pd.read_csv(run / name, float_precision="round_trip") for run in (a, b))
        pd.testing.assert_frame_equal(
            x.drop(columns="seconds", errors="ignore"),
            y.drop(columns="seconds", errors="ignore"),
            check_exact=True,
        )
    x, y = (json.loads((run / "metrics.json").read_text()) for run in (a, b))
    assert {k: v for k, v in x.items() if "seconds" not in k} == {
        k: v for k, v in y.items() if "seconds" not in k
    }


@pytest.fixture(scope="module")
def uninterrupted(cfg_train_global: DictConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run the interrupted ones must equal, trained in-process without interruption."""
    cfg = cfg_train_global.copy()
    for override in OVERRIDES[1:]:
        key, value = override.split("=")
        OmegaConf.update(cfg, key, int(value))
    cfg.paths.output_dir = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    threads = torch.get_num_threads()
    train(cfg)
    torch.set_num_threads(threads)
    return Path(cfg.paths.output_dir)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(uninterrupted: Path, sed_root: Path):
    run = sed_root / "killed"
    command = [sys.executable, "-m", "sed.train", *OVERRIDES, f"hydra.run.dir={run}"]
    proc = start(command, sed_root)
    wait_for_epoch(proc, run / "checkpoints" / "last.pt")
    proc.send_signal(signal.SIGKILL)  # now in epoch 2: no chance to clean up
    proc.wait()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] < 3
    assert not (run / "metrics.json").exists()
    # What a kill during a checkpoint write leaves behind (sed.io.atomic_write's temporary name).
    orphan = run / "checkpoints" / ".last.pt.4242.0123abcd.tmp"
    orphan.write_bytes(b"half a checkpoint")
    resume([*command, "trainer.resume=true"], sed_root)
    assert not orphan.exists()
    assert_same_run(uninterrupted, run)


@pytest.mark.slow
def test_ctrl_c_prints_the_resume_command_that_completes_the_run(
    uninterrupted: Path, sed_root: Path
):
    run = sed_root / "interrupted"
    proc = start([sys.executable, "-m", "sed.train", *OVERRIDES, f"hydra.run.dir={run}"], sed_root)
    wait_for_epoch(proc, run / "checkpoints" / "last.pt")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    found = re.search(
        r"^sed\.train: interrupted after epoch (\d); resume with: (.*)$", stderr, re.M
    )
    assert found, stderr[-3000:]
    assert int(found[1]) == load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]
    command = shlex.split(found[2])
    assert command[:5] == [
        "python",
        "-m",
        "sed.train",
        "trainer.resume=true",
        f"hydra.run.dir={run}",
    ]
    assert command[5:] == OVERRIDES
    resume([sys.executable, *command[1:]], sed_root)
    assert_same_run(uninterrupted, run)


# `python -m sed.train` interrupted by Ctrl-C after its third epoch, where a kill earlier had left
# a temporary checkpoint file behind (the interruption comes once the run directory is claimed).
INTERRUPTED = """
import runpy
from pathlib import Path
from hydra.core.hydra_config import HydraConfig
import sed.inference
from sed.checkpoints import save_checkpoint

def interrupted(*args, **kwargs):
    checkpoints = Path(HydraConfig.get().runtime.output_dir) / "checkpoints"
    save_checkpoint({"epoch": 3}, checkpoints / "last.pt")
    (checkpoints / ".last.pt.4242.0123abcd.tmp").write_bytes(b"half a checkpoint")
    raise KeyboardInterrupt

sed.inference.resolve_device = interrupted
runpy.run_module("sed.train", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_reports_the_epoch_and_the_resume_command(tmp_path: Path):
    run = tmp_path / "run"
    overrides = ["+experiment=smoke", "seed=7", "optimizer.lr=0.01"]
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, *overrides, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr == (
        "sed.train: interrupted after epoch 3; resume with: python -m sed.train "
        f"trainer.resume=true hydra.run.dir={run} +experiment=smoke seed=7 optimizer.lr=0.01\n"
    )
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]
    assert load_checkpoint(run / "checkpoints" / "last.pt") == {"epoch": 3}
    # The job log says so, without a traceback, and sed.report counts the run as interrupted
    # (status.json, sed.runs).
    assert "interrupted after epoch 3" in (run / "smoke.log").read_text()
    assert collect_runs(run)["status"].tolist() == ["interrupted"]
