"""sed.tune: an Optuna search over the smoke experiment, its SQLite study surviving a killed
search, and pruning on the per-epoch validation metric. Skipped without the `cluster` extra."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import run_sed
from omegaconf import DictConfig, OmegaConf, open_dict

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from sed import tune  # noqa: E402
from sed.errors import ConfigError  # noqa: E402
from sed.report import report  # noqa: E402

Compose = Callable[..., DictConfig]


@pytest.fixture
def tune_cfg(compose: Compose, sed_root: Path) -> DictConfig:
    """configs/tune.yaml on the smoke experiment: 3 one-epoch trials, data under sed_root."""
    cfg = compose(
        "tune", "+experiment=smoke", "trainer.num_threads=1", "trainer.epochs=1", "tune.n_trials=3"
    )
    with open_dict(cfg):
        cfg.paths.root_dir = str(sed_root)
    threads = torch.get_num_threads()
    yield cfg
    torch.set_num_threads(threads)


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_killed_search_resumes_to_three_trials(
    tune_cfg: DictConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    search = tmp_path / "search"
    calls: list[int] = []

    def killed_in_trial_1(cfg: DictConfig, callbacks=()):  # the process dies after an epoch
        calls.append(1)

        def hook(epoch: int, row: dict) -> None:
            if cfg.paths.output_dir.endswith("trials/1"):
                raise KeyboardInterrupt

        return real_train(cfg, on_epoch=hook, callbacks=callbacks)

    real_train = tune.train
    monkeypatch.setattr(tune, "train", killed_in_trial_1)
    with pytest.raises(KeyboardInterrupt):
        tune.run_search(tune_cfg, search, ["+experiment=smoke"])
    study = optuna.load_study(
        study_name=tune_cfg.tune.study_name, storage=f"sqlite:///{search / 'study.db'}"
    )
    assert states(study) == [TrialState.COMPLETE, TrialState.RUNNING]
    assert (search / "trials" / "1" / "checkpoints" / "last.pt").is_file()

    monkeypatch.setattr(tune, "train", real_train)
    study = tune.run_search(tune_cfg, search, ["+experiment=smoke"])
    assert states(study) == [TrialState.COMPLETE] * 3  # trial 1 continued, not started anew
    assert len(calls) == 2
    log = (search / "trials" / "1" / "history.csv").read_text().splitlines()
    assert len(log) == 2  # header + the one epoch trained before the kill
    best = json.loads((search / "best.json").read_text())
    assert best["value"] == study.best_value and best["completed"] == 3
    assert (search / "plots" / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert len((search / "trials.csv").read_text().splitlines()) == 4
    # Each trial is a run that sed.report tabulates with the searched keys.
    runs = report(search, verbose=False, hparams=False, n_resamples=0).runs
    assert runs["status"].tolist() == ["finished"] * 3
    for key in tune_cfg.tune.space:
        values = runs[key].tolist()
        assert values == [t.params[key] for t in study.trials], key


def test_pruned_trial_is_marked_pruned(tune_cfg: DictConfig, tmp_path: Path) -> None:
    with open_dict(tune_cfg):
        tune_cfg.tune.n_trials = 1
        # frame F1 is never above 2: pruned at its first report
        tune_cfg.tune.pruner = OmegaConf.create(
            {"_target_": "optuna.pruners.ThresholdPruner", "lower": 2.0}
        )
    study = tune.run_search(tune_cfg, tmp_path / "search", [])
    (trial,) = study.get_trials(deepcopy=False)
    assert trial.state == TrialState.PRUNED and trial.intermediate_values.keys() == {1}
    run = tmp_path / "search" / "trials" / "0"
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "metrics.json").exists()


def test_unknown_space_key_names_it(tune_cfg: DictConfig, tmp_path: Path) -> None:
    with open_dict(tune_cfg):
        tune_cfg.tune.space = {"sampler.nope": {"low": 0.0, "high": 1.0}}
    with pytest.raises(ConfigError, match=r"tune\.space\.sampler\.nope"):
        tune.run_search(tune_cfg, tmp_path / "search", [])
    assert not (tmp_path / "search").exists()  # refused before a study is made


@pytest.mark.slow
def test_cli_search(sed_root: Path, tmp_path: Path) -> None:
    """`python -m sed.tune` through Hydra: two trials, the study and the trial runs in the dir."""
    search = tmp_path / "cli"
    command = [
        "+experiment=smoke",
        "trainer.epochs=1",
        "tune.n_trials=2",
        f"hydra.run.dir={search}",
    ]
    run_sed("sed.tune", *command, root=sed_root, cwd=tmp_path)
    assert (search / "study.db").is_file() and (search / "best.json").is_file()
    assert sorted(p.name for p in (search / "trials").iterdir()) == ["0", "1"]
    assert not (search / ".hydra").exists() and (search / ".tune" / "worker0").is_dir()
