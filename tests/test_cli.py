"""The entry points' one wrapper (sed.cli.run_job) and the status.json it leaves: a user error is
one line on stderr and exit status 1, and a job refused before it wrote anything of its own leaves
no folder; Ctrl-C is exit status 130; anything else keeps its traceback. Each entry point is run
once as a user types it, with a setting it refuses before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from sed.cli import Job, run_job
from sed.errors import ConfigError
from sed.runs import STATUS_FILE, RunStatus, remove_unused

REPO = Path(__file__).resolve().parents[1]


def status_of(path: Path) -> dict:
    record = json.loads(path.read_text())
    assert set(record) == {"status", "entry", "message", "started", "ended"}
    datetime.fromisoformat(record["started"])
    if record["status"] != "running":
        assert datetime.fromisoformat(record["ended"]) >= datetime.fromisoformat(record["started"])
    return record


# ----------------------------------------------------------------------------- in-process


def test_a_finished_job_records_finished_and_returns_its_result(tmp_path: Path):
    seen: list[dict] = []

    def work() -> int:
        seen.append(status_of(tmp_path / STATUS_FILE))  # written before the work starts
        return 7

    assert run_job(Job("evaluate", tmp_path / STATUS_FILE), work) == 7
    assert seen[0]["status"] == "running" and seen[0]["ended"] is None
    record = status_of(tmp_path / STATUS_FILE)
    assert record["status"] == "finished" and record["entry"] == "evaluate"
    assert record["message"] is None and record["started"] == seen[0]["started"]


def test_a_user_error_is_one_line_exit_1_and_recorded_failed(tmp_path: Path, capsys):
    def work() -> None:
        raise ConfigError("splits=['dev']: unknown or no split(s)")

    with pytest.raises(SystemExit) as stopped:
        run_job(Job("evaluate", tmp_path / STATUS_FILE), work)
    assert stopped.value.code == "sed.evaluate: error: splits=['dev']: unknown or no split(s)"
    record = status_of(tmp_path / STATUS_FILE)
    assert record["status"] == "failed"
    assert record["message"] == "splits=['dev']: unknown or no split(s)"


def test_a_user_error_before_the_job_began_leaves_its_folder_as_found(tmp_path: Path):
    def tidy() -> None:
        tmp_path.rmdir()

    def work() -> None:
        assert status_of(tmp_path / STATUS_FILE)["status"] == "running"
        raise ConfigError("data.generate.n_train=-1 must be in [0, inf]")

    with pytest.raises(SystemExit):
        run_job(Job("train", tmp_path / STATUS_FILE, started=lambda: False, tidy=tidy), work)
    assert not tmp_path.exists()  # no status.json left for tidy to find


def test_a_refused_resume_keeps_the_runs_status(tmp_path: Path):
    status = tmp_path / STATUS_FILE
    RunStatus(status, "train").write("interrupted", "sed.train: interrupted after epoch 3; ...")
    found = status.read_bytes()

    def work() -> None:
        raise ConfigError("trainer.resume=true, but the config differs from ...")

    with pytest.raises(SystemExit):
        run_job(Job("train", status, started=lambda: False), work)
    assert status.read_bytes() == found
    with pytest.raises(SystemExit):  # once the job began, the refusal is its outcome
        run_job(Job("train", status, started=lambda: True), work)
    assert status_of(status)["status"] == "failed"


def test_ctrl_c_is_exit_130_with_its_message_recorded_interrupted(tmp_path: Path, capsys):
    def work() -> None:
        raise KeyboardInterrupt

    job = Job("train", tmp_path / STATUS_FILE, interrupted=lambda: "sed.train: interrupted ...")
    with pytest.raises(SystemExit) as stopped:
        run_job(job, work)
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "sed.train: interrupted ...\n"
    record = status_of(tmp_path / STATUS_FILE)
    assert record["status"] == "interrupted" and record["message"] == "sed.train: interrupted ..."
    with pytest.raises(SystemExit):
        run_job(Job("predict", tmp_path / STATUS_FILE), work)
    assert capsys.readouterr().err == "sed.predict: interrupted\n"


def test_a_bug_keeps_its_traceback_and_is_recorded_failed(tmp_path: Path):
    def work() -> None:
        raise RuntimeError("boom\nsecond line")

    with pytest.raises(RuntimeError, match="boom"):
        run_job(Job("tune", tmp_path / STATUS_FILE), work)
    record = status_of(tmp_path / STATUS_FILE)
    assert record["status"] == "failed" and record["message"] == "RuntimeError: boom\nsecond line"


def test_no_status_where_the_job_writes_none(tmp_path: Path):
    assert run_job(Job("train", None), lambda: 1) == 1
    assert list(tmp_path.iterdir()) == []


def test_status_refuses_an_unknown_state(tmp_path: Path):
    with pytest.raises(ValueError, match="'done' is not one of"):
        RunStatus(tmp_path / STATUS_FILE, "train").write("done")


def test_remove_unused_keeps_a_folder_that_holds_anything_else(tmp_path: Path):
    folder = tmp_path / "run" / "evaluations" / "now"
    folder.mkdir(parents=True)
    RunStatus(folder / STATUS_FILE, "evaluate").write("running")
    (folder / "metrics.json").write_text("{}")
    assert not remove_unused(folder, up_to=tmp_path / "run")
    assert (folder / "metrics.json").is_file() and (folder / STATUS_FILE).is_file()
    (folder / "metrics.json").unlink()
    assert remove_unused(folder, up_to=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []  # its empty parents up to run/ went with it


# ----------------------------------------------------------------------------- as a user runs it


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SED_ROOT": str(cwd),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_train_refuses_a_bad_generator_setting_in_one_line_leaving_no_run_dir(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = run(
        "-m", "sed.train", "data.generate.n_train=-1", f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = proc.stderr.splitlines()
    assert line.startswith("sed.train: error: ") and "data.generate.n_train" in line, line
    assert not run_dir.exists()
    assert not (tmp_path / "data").exists()  # no data set generated either


def test_evaluate_refuses_a_folder_that_is_no_run_in_one_line(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("not a run")
    proc = run("-m", "sed.evaluate", f"run_dir={tmp_path}", "device=cpu", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = proc.stderr.splitlines()
    wanted = f"run_dir={tmp_path} is not a sed.train run: it has no checkpoints/"
    assert line == f"sed.evaluate: error: {wanted}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no evaluations/


def test_predict_refuses_a_missing_input_in_one_line(tmp_path: Path):
    output = tmp_path / "out" / "events.tsv"
    proc = run(
        "-m",
        "sed.predict",
        f"checkpoint={tmp_path / 'best.pt'}",
        f"input={tmp_path / 'missing'}",
        f"output={output}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = proc.stderr.splitlines()
    wanted = f"input={tmp_path / 'missing'} is neither an audio file nor a folder"
    assert line == f"sed.predict: error: {wanted}"
    assert list(tmp_path.iterdir()) == []  # no output folder, no status.json


def test_tune_refuses_an_unknown_space_key_in_one_line_leaving_no_search_dir(tmp_path: Path):
    pytest.importorskip("optuna")
    search = tmp_path / "search"
    proc = run(
        "-m",
        "sed.tune",
        "+experiment=smoke",
        "+tune.space.nope={low:0.0,high:1.0}",
        f"hydra.run.dir={search}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = proc.stderr.splitlines()
    assert line.startswith("sed.tune: error: tune.space.nope: the training config has no key")
    assert not search.exists()


# `python -m sed.train` stopped by Ctrl-C once its run directory is claimed (before an epoch).
INTERRUPTED = """
import runpy
import sed.inference

def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

sed.inference.resolve_device = interrupted
runpy.run_module("sed.train", run_name="__main__", alter_sys=True)
"""


def test_an_interrupted_train_run_records_interrupted_with_the_resume_command(tmp_path: Path):
    run_dir = tmp_path / "run"
    proc = run("-c", INTERRUPTED, "+experiment=smoke", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr[-3000:]
    record = status_of(run_dir / STATUS_FILE)
    assert record["status"] == "interrupted" and record["entry"] == "train"
    assert record["message"] == proc.stderr.strip()
    assert record["message"].startswith("sed.train: interrupted before the first epoch ended;")


def test_a_sweep_runs_every_job_and_keeps_the_refused_ones_as_failed(tmp_path: Path):
    sweep = tmp_path / "sweep"
    proc = run(
        "-m",
        "sed.train",
        "-m",
        "+experiment=smoke",
        "optimizer.lr=-1,-2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "sed.train: error: optimizer.lr must be a number > 0, got -1" in proc.stderr
    assert "Traceback" not in proc.stderr
    for job, lr in (("0", -1.0), ("1", -2.0)):  # the second job ran after the first was refused
        record = status_of(sweep / job / STATUS_FILE)
        assert record["status"] == "failed"
        assert record["message"] == f"optimizer.lr must be a number > 0, got {lr}"
