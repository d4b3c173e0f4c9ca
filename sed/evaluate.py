"""`python -m sed.evaluate run_dir=DIR [overrides]`: re-evaluate a finished run from its
checkpoint without training, optionally with other post-processing or a threshold sweep."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sed.data.datasets import FileDataset, collate
from sed.data.loading import load_corpus
from sed.inference import load_trained, predict_batches, resolve_device
from sed.outputs import HEADLINE, evaluate_split, write_json, write_split_results

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
        raise FileNotFoundError(f"{path} not found: run_dir={run_dir} is not a sed.train run")
    return OmegaConf.load(path)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the checkpoint on the requested splits; returns the flat metrics."""
    run_dir = Path(cfg.run_dir)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    device = resolve_device(cfg.device)
    trained = load_trained(checkpoint_path(run_dir, cfg.checkpoint), device)
    # The checkpoint holds the resolved training config; .hydra/config.yaml is the fallback.
    train_cfg = (
        OmegaConf.create(trained.config_yaml) if trained.config_yaml else run_config(run_dir)
    )
    overrides = {k: v for k, v in OmegaConf.to_container(cfg.postprocess).items() if v is not None}
    if "median_seconds" in overrides:
        overrides["median_frames"] = None
    pp = dataclasses.replace(trained.postprocessing, **overrides)
    classes, splits, _ = load_corpus(
        train_cfg.data.root,
        trained.logmel,
        Path(train_cfg.paths.cache_dir) / "features",
        classes=trained.classes,
        splits=tuple(cfg.splits),
        device=str(device),
        normalizer=trained.normalizer,
    )
    metrics: dict[str, Any] = {"checkpoint_epoch": trained.epoch}
    sweep_rows = []
    for split, data in splits.items():
        loader = torch.utils.data.DataLoader(
            FileDataset(data.features, data.targets, data.filenames),
            batch_size=int(cfg.batch_size),
            collate_fn=collate,
        )
        probs, loss = predict_batches(trained.model, loader, device, progress=True, desc=split)
        metrics[f"{split}/loss"] = loss
        metrics.update(
            write_split_results(out_dir, split, data, probs, classes, trained.hop_seconds, pp)
        )
        if cfg.sweep_thresholds:
            for threshold in cfg.thresholds:
                m, _ = evaluate_split(
                    data,
                    probs,
                    classes,
                    trained.hop_seconds,
                    dataclasses.replace(pp, threshold=float(threshold)),
                    psds=False,
                    classwise=False,
                )
                sweep_rows.append(
                    {
                        "split": split,
                        "threshold": float(threshold),
                        **{k: m[k] for k in HEADLINE},
                    }
                )
    write_json(metrics, out_dir / "metrics.json")
    write_json(pp.to_dict(), out_dir / "postprocess.json")
    print(f"\n{run_dir} ({cfg.checkpoint}, epoch {trained.epoch}), post-processing {pp.to_dict()}")
    headline = (*HEADLINE, "psds1", "psds2")
    for key in sorted(k for k in metrics if k.count("/") == 1 and k.split("/")[1] in headline):
        print(f"  {key:24s} {metrics[key]:.4f}")
    if sweep_rows:
        table = pd.DataFrame(sweep_rows)
        table.to_csv(out_dir / "thresholds.csv", index=False, float_format="%.6f")
        print("\nF1 / ER against threshold:\n" + table.to_string(index=False, float_format="%.3f"))
    print(f"\nresults written to {out_dir}")
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
