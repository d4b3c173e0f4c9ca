"""`python -m sed.evaluate run_dir=DIR [overrides]`: re-evaluate a finished run from its
checkpoint without training, optionally with other post-processing or a threshold sweep.

With no overrides it reproduces the run's metrics.json: the same evaluation path
(`sed.outputs.evaluate_model`), batch size and autocast as the run's final evaluation.
`data.root=NEW` (and `paths.cache_dir=NEW`) point it at a dataset that moved.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sed.cli import Job, run_job
from sed.data.folder import EVAL_SPLITS, SPLITS
from sed.data.loading import SplitFeatures, load_corpus
from sed.environment import write_environment
from sed.errors import ConfigError, MissingFileError
from sed.inference import TrainedModel, load_trained, resolve_device
from sed.io import write_csv, write_json
from sed.outputs import HEADLINE, evaluate_model, evaluate_split, summary_lines
from sed.postprocess import SHIFTS, PostProcessing
from sed.postprocess_search import SearchSpace, Tuning
from sed.runs import STATUS_FILE, remove_unused, unused

log = logging.getLogger(__name__)


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """best | last | an explicit file."""
    if which in ("best", "last"):
        return run_dir / "checkpoints" / f"{which}.pt"
    return Path(which)


def run_config(run_dir: Path) -> DictConfig:
    """The training run's composed config (.hydra/config.yaml), with a clear error if absent."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise MissingFileError(f"{path} not found: run_dir={run_dir} is not a sed.train run")
    return OmegaConf.load(path)


def requested_splits(splits: Any) -> tuple[str, ...]:
    """The `splits` setting: null -> EVAL_SPLITS; otherwise known split names only."""
    if splits is None:
        return EVAL_SPLITS
    names = tuple(str(s) for s in splits)
    unknown = [s for s in names if s not in SPLITS]
    if unknown or not names:
        raise ConfigError(f"splits={list(names)}: unknown or no split(s); choose from {SPLITS}")
    return names


def sweep_thresholds(cfg: DictConfig) -> list[float]:
    """The `thresholds` of a threshold sweep (empty without `sweep_thresholds`), each in (0, 1)."""
    if not cfg.sweep_thresholds:
        return []
    values = list(cfg.thresholds or [])
    for value in values:
        if not (isinstance(value, int | float) and 0 < value < 1):
            raise ConfigError(f"thresholds={values}: every threshold must lie in (0, 1)")
    if not values:
        raise ConfigError("sweep_thresholds=true needs a non-empty thresholds list")
    return [float(v) for v in values]


def data_paths(cfg: DictConfig, train_cfg: DictConfig) -> tuple[Path, Path]:
    """(dataset root, feature cache folder): `data.root` / `paths.cache_dir` when given, else
    the training run's; a root that does not exist is an error naming the key."""
    given = cfg.get("data", {}).get("root")
    root = given or OmegaConf.select(train_cfg, "data.root", default=None)
    if root is None:
        raise ConfigError("the run's config has no data.root; pass data.root=DATASET_ROOT")
    if not Path(root).is_dir():
        where = "" if given else " (the run's; if the dataset moved, pass data.root=NEW_ROOT)"
        raise ConfigError(f"data.root={root} does not exist{where}")
    cache_dir = cfg.get("paths", {}).get("cache_dir") or OmegaConf.select(
        train_cfg, "paths.cache_dir", default=None
    )
    if cache_dir is None:
        raise ConfigError("the run's config has no paths.cache_dir; pass paths.cache_dir=DIR")
    return Path(root), Path(cache_dir)


def trained_splits(
    trained: TrainedModel, root: Path, cache_dir: Path, splits: Sequence[str]
) -> tuple[list[str], dict[str, SplitFeatures]]:
    """The dataset's `splits` featurised as the checkpoint was trained (its log-mel settings,
    classes and normaliser; features cached under `cache_dir`/features)."""
    classes, data, _ = load_corpus(
        root,
        trained.logmel,
        cache_dir / "features",
        classes=trained.classes,
        splits=tuple(splits),
        device=str(trained.device),
        normalizer=trained.normalizer,
    )
    return classes, data


def run_tuning(
    train_cfg: DictConfig,
    criterion: str | None,
    per_class: bool | None = None,
    class_thresholds: bool | None = None,
    max_segment_f1_drop: float | None = None,
) -> Tuning:
    """The run's post-processing search settings (plain values only: nothing read from the run
    selects code), with `criterion` / `per_class` / `class_thresholds` replacing the run's when
    given. A run made before the scope was a setting searched per class, one made before the
    boundary shifts searched none, one made before class thresholds searched without them, and
    one made before the segment-F1 guard searched without it; each keeps doing so."""
    stored = OmegaConf.to_container(train_cfg.get("tuning") or {}, resolve=True)
    space = {k: v for k, v in (stored.get("space") or {}).items() if k != "_target_"}
    if space:
        for name in SHIFTS:
            space.setdefault(name, [0.0])
    return Tuning(
        enabled=True,
        criterion=criterion or stored.get("criterion", "event_f1"),
        per_class=stored.get("per_class", True) if per_class is None else per_class,
        class_thresholds=(
            stored.get("class_thresholds", False) if class_thresholds is None else class_thresholds
        ),
        max_segment_f1_drop=(
            stored.get("max_segment_f1_drop")
            if max_segment_f1_drop is None
            else max_segment_f1_drop
        ),
        space=SearchSpace(**space),
    )


def evaluate(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Evaluate the checkpoint on the requested splits, writing results to `out_dir` (default:
    Hydra's output dir); returns the flat metrics."""
    run_dir = Path(cfg.run_dir)
    out_dir = Path(out_dir or HydraConfig.get().runtime.output_dir)
    # Every setting is checked before the checkpoint is loaded or a feature computed.
    if cfg.checkpoint in ("best", "last") and not (run_dir / "checkpoints").is_dir():
        raise ConfigError(f"run_dir={run_dir} is not a sed.train run: it has no checkpoints/")
    splits = requested_splits(cfg.splits)
    if cfg.get("tune") and "validation" not in splits:
        raise ConfigError(f"tune=true searches on the validation split; splits={list(splits)}")
    for key in ("tune_per_class", "tune_class_thresholds"):
        if cfg.get(key) not in (None, True, False):
            raise ConfigError(f"{key} must be true, false or null, got {cfg.get(key)!r}")
    drop = cfg.get("tune_max_segment_f1_drop")
    if drop is not None and (
        isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop <= 1
    ):
        raise ConfigError(
            f"tune_max_segment_f1_drop must be null or a number in [0, 1], got {drop!r}"
        )
    thresholds = sweep_thresholds(cfg)
    device = resolve_device(cfg.device)
    trained = load_trained(
        checkpoint_path(run_dir, cfg.checkpoint),
        device,
        batch_size=cfg.batch_size,
        amp=cfg.amp,
        postprocess=OmegaConf.to_container(cfg.postprocess, resolve=True),
    )
    # The checkpoint holds the resolved training config; .hydra/config.yaml is the fallback.
    train_cfg = (
        OmegaConf.create(trained.config_yaml) if trained.config_yaml else run_config(run_dir)
    )
    pp = trained.postprocessing
    root, cache_dir = data_paths(cfg, train_cfg)
    classes, data = trained_splits(trained, root, cache_dir, splits)
    metrics: dict[str, Any] = {"checkpoint_epoch": trained.epoch}
    tuning = None
    if cfg.get("tune"):
        # Search again on validation, from the run's fixed settings (with any overrides).
        tuning = run_tuning(
            train_cfg,
            cfg.get("tune_criterion"),
            cfg.get("tune_per_class"),
            cfg.get("tune_class_thresholds"),
            cfg.get("tune_max_segment_f1_drop"),
        )
        pp = PostProcessing.from_dict(
            OmegaConf.to_container(train_cfg.postprocess, resolve=True),
            OmegaConf.to_container(cfg.postprocess, resolve=True),
        )
    evaluated = evaluate_model(
        trained.model,
        data,
        out_dir,
        classes,
        trained.hop_seconds,
        pp,
        trained.device,
        batch_size=trained.batch_size,
        amp=trained.amp,
        progress=True,
        tuning=tuning,
        fixed=trained.postprocessing_fixed,
    )
    metrics.update(evaluated.metrics)
    probs, pp = evaluated.probs, evaluated.postprocessing
    write_json(metrics, out_dir / "metrics.json")
    write_environment(out_dir / "environment.json", trained.device)
    print(f"\n{run_dir} ({cfg.checkpoint}, epoch {trained.epoch}), post-processing {pp.to_dict()}")
    print("  " + "\n  ".join(summary_lines(metrics, splits)))
    if thresholds:
        table = threshold_sweep(data, probs, classes, trained.hop_seconds, pp, thresholds)
        write_csv(table, out_dir / "thresholds.csv", index=False, float_format="%.6f")
        print("\nF1 / ER against threshold:\n" + table.to_string(index=False, float_format="%.3f"))
    print(f"\nresults written to {out_dir}")
    return metrics


def threshold_sweep(
    data: Mapping[str, SplitFeatures],
    probs: Mapping[str, Mapping[str, np.ndarray]],
    classes: list[str],
    hop_seconds: float,
    pp: PostProcessing,
    thresholds: Sequence[float],
) -> pd.DataFrame:
    """HEADLINE metrics of every split at each threshold (other post-processing unchanged)."""
    rows = []
    for split, split_data in data.items():
        for threshold in thresholds:
            m, _ = evaluate_split(
                split_data,
                probs[split],
                classes,
                hop_seconds,
                pp.with_overrides({"threshold": float(threshold)}),
                psds=False,
                classwise=False,
            )
            rows.append(
                {"split": split, "threshold": float(threshold)} | {k: m[k] for k in HEADLINE}
            )
    return pd.DataFrame(rows)


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Hydra entry point (sed.cli.run_job): a bad input is reported in one line (no traceback),
    exit status 1, and the evaluation folder Hydra made is removed again (with its parents up to
    run_dir, when they are empty) if nothing was written to it."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    job = Job(
        "evaluate",
        out_dir / STATUS_FILE,
        started=lambda: not unused(out_dir),
        tidy=lambda: remove_unused(out_dir, up_to=Path(cfg.run_dir)),
    )
    run_job(job, lambda: evaluate(cfg, out_dir))


if __name__ == "__main__":
    main()
