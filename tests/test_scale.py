"""Scaling out with Hydra's launchers (the `cluster` extra; skipped without it): local parallel
sweeps with joblib and submitit's local executor, the SLURM preset down to the sbatch script it
would submit (nothing is submitted), and requeued jobs resuming in their own run directory."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import run_sed
from omegaconf import DictConfig, OmegaConf, open_dict

pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
submitit = pytest.importorskip("submitit")
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher  # noqa: E402

from sed.distributed import requeued  # noqa: E402
from sed.report import report  # noqa: E402
from sed.train import train  # noqa: E402

Compose = Callable[..., DictConfig]


def sweep(sed_root: Path, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m sed.train -m +experiment=smoke seed=1,2 OVERRIDES` into `sweep_dir`."""
    command = [
        "-m",
        "+experiment=smoke",
        "seed=1,2",
        "trainer.epochs=1",
        "trainer.num_threads=1",
        f"hydra.sweep.dir={sweep_dir}",
        *overrides,
    ]
    return run_sed("sed.train", *command, root=sed_root)


def two_finished_runs(sweep_dir: Path) -> pd.DataFrame:
    """Two finished runs in distinct directories (jobs started together), listed by sed.report
    with bootstrap intervals around the metrics their final evaluation computed."""
    result = report(sweep_dir, verbose=False, hparams=False, n_resamples=50)
    runs = result.runs
    assert [Path(r).name for r in runs["run_dir"]] == ["0", "1"]
    assert runs["status"].tolist() == ["finished", "finished"]
    assert sorted(runs["seed"]) == [1, 2]
    intervals = pd.read_csv(result.out_dir / "intervals.csv")
    point = intervals[intervals["metric"] == "test/segment_f1"]["value"].tolist()
    assert point == pytest.approx(runs["test/segment_f1"].tolist())  # per_file/ sums to metrics
    return runs


def test_joblib_sweep_runs_two_jobs_in_parallel(sed_root: Path, tmp_path: Path) -> None:
    proc = sweep(sed_root, tmp_path / "joblib", "hydra/launcher=local", "hydra.launcher.n_jobs=2")
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    two_finished_runs(tmp_path / "joblib")


@pytest.mark.slow
def test_submitit_local_sweep(sed_root: Path, tmp_path: Path) -> None:
    sweep(sed_root, tmp_path / "submitit", "hydra/launcher=submitit_local")
    two_finished_runs(tmp_path / "submitit")
    assert list((tmp_path / "submitit" / ".submitit").iterdir())  # submitit's job records


class _Submitted(Exception):
    """Raised where submitit would call sbatch."""


def test_slurm_preset_composes_to_an_sbatch_script(
    compose: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose(
        "train",
        "+experiment=smoke",
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        hydra_node=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.cpus_per_task) == ("gpu", 1, 8)
    assert (launcher.mem_gb, launcher.timeout_min, launcher.array_parallelism) == (32, 240, 16)
    assert launcher.max_num_timeout > 0 and launcher.additional_parameters.requeue is True

    # The plugin's own launch(), stopped where submitit would run sbatch: the script it submits.
    scripts: list[str] = []
    make_text = submitit.slurm.slurm.SlurmExecutor._make_submission_file_text

    def capture(self, command: str, uid: str) -> str:
        scripts.append(make_text(self, command, uid))
        raise _Submitted

    monkeypatch.setattr(submitit.slurm.slurm.SlurmExecutor, "_make_submission_file_text", capture)
    bin_dir = tmp_path / "bin"  # submitit looks for srun before it builds anything
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
        cfg.hydra.job.name = "train"
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    plugin = SlurmLauncher(**params)
    plugin.config, plugin.hydra_context, plugin.task_function = cfg, None, None
    with pytest.raises(_Submitted):
        plugin.launch([["seed=1"], ["seed=2"], ["seed=3"]], initial_job_idx=0)
    (script,) = scripts
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32GB",
        "#SBATCH --time=240",
        "#SBATCH --array=0-2%3",
        "#SBATCH --requeue",
        "#SBATCH --signal=USR2@120",
    ):
        assert line in script, line


def test_requeue_resubmits_the_same_job() -> None:
    """submitit's checkpoint hook of the plugin resubmits the job with its arguments unchanged:
    the same overrides and job number, hence the same run directory (shared on purpose)."""
    args = (["seed=2"], "hydra.sweep.dir", 1, "job_id_for_1", {})
    delayed = SlurmLauncher().checkpoint(*args)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.args == args


def test_requeued_only_under_submitit_with_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    assert not requeued(tmp_path)  # a run outside submitit never resumes by itself
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert requeued(tmp_path)
    assert not requeued(tmp_path / "fresh")


def test_requeued_job_resumes_in_its_run_dir(
    cfg_train: DictConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(cfg_train.paths.output_dir)
    cfg_train.trainer.epochs = 2
    preempted = cfg_train.copy()
    preempted.trainer.max_minutes = 0  # stops after epoch 1, as a preempted job would
    assert train(preempted)["epochs"] == 1
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")  # the requeued job: same config, same dir
    metrics = train(cfg_train)
    assert "resumed from" in capsys.readouterr().out
    assert metrics["epochs"] == 2
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and [row["epoch"] for row in state["history"]] == [1, 2]
