"""`python -m sed.tune [+experiment=NAME] [overrides] [tune.n_trials=N]`: a hyperparameter search
with Optuna's ask/tell API over the training config (configs/tune.yaml).

The study lives in SQLite (`study.db`) in the search directory, so a killed search restarted on
the same directory (`hydra.run.dir=DIR`) continues: finished trials stay, and the trial this
worker was running resumes from its run's `checkpoints/last.pt` (trainer.resume=true). Each trial
is an ordinary run directory (`trials/N`, with `.hydra/config.yaml` and `overrides.yaml`), so
`python -m sed.report DIR` tabulates a search like a sweep. Trials report the monitored validation
metric every epoch and are pruned by `tune.pruner`. The search directory also gets `trials.csv`,
`best.json` and `plots/{history,importance}.png`.

Why not Hydra's Optuna sweeper: its releases for hydra-core 1.3 require optuna < 3, and it runs a
trial as a whole Hydra job, so it cannot prune on per-epoch values.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

try:
    import optuna
    from optuna.trial import TrialState
except ImportError as error:  # the optional extra
    raise ImportError('sed.tune needs Optuna: pip install -e ".[cluster]"') from error

from sed.callbacks import Pruner
from sed.cli import Job, run_job
from sed.errors import ConfigError, DivergenceError
from sed.io import write_csv, write_json, write_text
from sed.runs import STATUS_FILE, remove_unused, unused
from sed.train import train

log = logging.getLogger(__name__)

__all__ = ["check_space", "run_search", "suggest", "trial_config", "write_results"]

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def suggest(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """One value per key of `space` ({key: {low, high[, log, step]} or {choices: [...]}}):
    integers where low and high are integers, floats otherwise."""
    params = {}
    for key, spec in space.items():
        spec = dict(spec)
        if "choices" in spec:
            params[key] = trial.suggest_categorical(key, list(spec["choices"]))
            continue
        try:
            low, high = spec.pop("low"), spec.pop("high")
        except KeyError:
            raise ConfigError(
                f"tune.space.{key} needs low and high (or choices), got {spec}"
            ) from None
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            params[key] = trial.suggest_int(key, low, high, **spec)
        else:
            params[key] = trial.suggest_float(key, float(low), float(high), **spec)
    return params


def trial_config(base: DictConfig, params: Mapping[str, Any], run_dir: Path) -> DictConfig:
    """The training config of one trial: `base` without the `tune` node, `params` set, the run
    directory `run_dir`. A key that the training config does not have is an error."""
    cfg = base.copy()
    with open_dict(cfg):
        cfg.pop("tune", None)
        for key, value in params.items():
            _require_key(cfg, key)
            OmegaConf.update(cfg, key, value, merge=False)
        cfg.paths.output_dir = str(run_dir)
    return cfg


_MISSING = object()


def _require_key(cfg: DictConfig, key: str) -> None:
    """Refuse a tune.space key that the training config `cfg` does not have."""
    if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
        raise ConfigError(
            f"tune.space.{key}: the training config has no key {key!r} (with this method, "
            "experiment and overrides)"
        )


def check_space(cfg: DictConfig) -> None:
    """Refuse, before a study is made, a `tune.space` key that the training config lacks or
    whose range is neither {low, high[, log, step]} nor {choices: [...]}."""
    space = OmegaConf.to_container(cfg.tune.space, resolve=True)
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"tune.space must map training config keys to ranges, got {space!r}")
    for key, spec in space.items():
        _require_key(cfg, key)
        if not isinstance(spec, dict) or not ("choices" in spec or {"low", "high"} <= set(spec)):
            raise ConfigError(f"tune.space.{key} needs low and high (or choices), got {spec}")


def _record(run_dir: Path, cfg: DictConfig, overrides: Sequence[str]) -> None:
    """.hydra/config.yaml and overrides.yaml, as Hydra writes them, so sed.report reads trials."""
    hydra_dir = run_dir / ".hydra"
    write_text(OmegaConf.to_yaml(cfg), hydra_dir / "config.yaml")
    write_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))), hydra_dir / "overrides.yaml")


def _direction(mode: str) -> str:
    return {"max": "maximize", "min": "minimize"}[mode]


def _run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    cfg: DictConfig,
    search_dir: Path,
    base_overrides: Sequence[str],
    resume: bool,
) -> None:
    """Train one trial in trials/NUMBER, reporting the monitor each epoch; tell the study."""
    params = dict(trial.params)
    run_dir = search_dir / "trials" / str(trial.number)
    trial_cfg = trial_config(cfg, params, run_dir)
    if resume:
        trial_cfg.trainer.resume = True
    overrides = [*base_overrides, *(f"{k}={v!r}" for k, v in params.items())]
    _record(run_dir, trial_cfg, overrides)
    monitor = str(cfg.monitor)
    log.info("trial %d%s: %s", trial.number, " (resumed)" if resume else "", overrides)

    try:
        metrics = train(trial_cfg, callbacks=[Pruner(trial, monitor)])
    except optuna.TrialPruned as pruned:
        log.info("trial %d pruned: %s", trial.number, pruned)
        study.tell(trial, state=TrialState.PRUNED)
        return
    except DivergenceError as error:  # a diverging setting: a failed trial, not a failed search
        log.warning("trial %d failed: %s", trial.number, error)
        study.tell(trial, state=TrialState.FAIL)
        return
    except Exception:
        study.tell(trial, state=TrialState.FAIL)
        raise
    value = float(metrics.get(f"best/{monitor}", float("nan")))
    if math.isfinite(value):
        study.tell(trial, value)
    else:
        study.tell(trial, state=TrialState.FAIL)


def run_search(
    cfg: DictConfig, search_dir: str | Path, base_overrides: Sequence[str] = ()
) -> optuna.Study:
    """Run this worker's part of the search in `search_dir` (created or continued): resume the
    trial it left running, then ask for trials until the study counts `tune.n_trials` finished,
    pruned or running ones. `base_overrides` are recorded in every trial's overrides.yaml."""
    check_space(cfg)
    search_dir = Path(search_dir)
    search_dir.mkdir(parents=True, exist_ok=True)
    settings = cfg.tune
    worker = int(settings.worker)
    study = optuna.create_study(
        study_name=str(settings.study_name),
        storage=f"sqlite:///{search_dir / 'study.db'}",
        load_if_exists=True,
        direction=_direction(str(cfg.monitor_mode)),
        sampler=instantiate(settings.sampler),
        pruner=instantiate(settings.pruner),
    )
    space = OmegaConf.to_container(settings.space, resolve=True)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.user_attrs.get("worker") == worker:  # left by this worker's killed process
            trial = optuna.Trial(study, frozen._trial_id)  # reopen it: ask() only makes new ones
            _run_trial(study, trial, cfg, search_dir, base_overrides, resume=True)
    while len(study.get_trials(deepcopy=False, states=COUNTED)) < int(settings.n_trials):
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        suggest(trial, space)
        _run_trial(study, trial, cfg, search_dir, base_overrides, resume=False)
    write_results(study, search_dir)
    return study


def write_results(study: optuna.Study, search_dir: str | Path) -> None:
    """trials.csv, best.json and plots/history.png, plots/importance.png (once two trials have
    completed) in the search directory."""
    search_dir = Path(search_dir)
    write_csv(study.trials_dataframe(), search_dir / "trials.csv", index=False)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return
    best = study.best_trial
    write_json(
        {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": str(search_dir / "trials" / str(best.number)),
            "completed": len(completed),
            "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        },
        search_dir / "best.json",
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    plots = search_dir / "plots"
    plots.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = oplt.plot_optimization_history(study)
        ax.figure.savefig(plots / "history.png", dpi=120, bbox_inches="tight")
        plt.close(ax.figure)
        if len(completed) >= 2:
            try:  # PED-ANOVA: needs no scikit-learn (fANOVA, optuna's old default, does)
                evaluator = optuna.importance.PedAnovaImportanceEvaluator()
                ax = oplt.plot_param_importances(study, evaluator=evaluator)
            except (ValueError, RuntimeError) as error:
                log.warning("no importance plot: %s", error)
            else:
                ax.figure.savefig(plots / "importance.png", dpi=120, bbox_inches="tight")
                plt.close(ax.figure)


@hydra.main(version_base="1.3", config_path="../configs", config_name="tune")
def main(cfg: DictConfig) -> float:
    """Hydra entry point (sed.cli.run_job); returns the best value found (NaN when no trial
    completed). A refused setting leaves no search directory."""
    hydra_cfg = HydraConfig.get()
    overrides = [o for o in hydra_cfg.overrides.task if not o.lstrip("+~").startswith("tune.")]
    search_dir = Path(hydra_cfg.runtime.output_dir)
    job = Job(
        "tune",
        search_dir / STATUS_FILE,
        started=lambda: not unused(search_dir),
        tidy=lambda: remove_unused(search_dir),
    )
    study = run_job(job, lambda: run_search(cfg, search_dir, overrides))
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return float("nan")
    log.info("best trial %d: %s = %.4f", study.best_trial.number, cfg.monitor, study.best_value)
    log.info("best parameters: %s", json.dumps(study.best_params))
    return float(study.best_value)


if __name__ == "__main__":
    main()
