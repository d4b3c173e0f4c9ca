"""Free-running inference: a trained model over whole files -> per-file probabilities."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sed.checkpoints import build_model, load_checkpoint, require
from sed.features import LogMel, Normalizer
from sed.postprocess import PostProcessing


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else as torch.device understands it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for, but CUDA is not available here")
    return device


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over unmasked frames and classes only."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce.mean(-1) * mask).sum() / mask.sum().clamp_min(1)


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    batches: Iterable[dict],
    device: torch.device,
    amp: bool = False,
    progress: bool = False,
    desc: str = "predict",
) -> tuple[dict[str, np.ndarray], float]:
    """Run `model` free running (p_tf = 0) in eval mode over collated batches.

    Returns ({filename: probabilities [T, C] trimmed to the file's true length}, mean masked BCE
    loss against the batch targets, or nan when the batches carry no targets).
    """
    model.eval()
    probs: dict[str, np.ndarray] = {}
    loss_sum, count = 0.0, 0
    for batch in tqdm(batches, desc=desc, leave=False, disable=not progress):
        features = batch["features"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"
        ):
            logits = model(features)
        logits = logits.float()
        targets = batch.get("targets")
        if targets is not None and targets.shape[-1] == logits.shape[-1]:
            targets = targets.to(device, non_blocking=True)
            frames = int(mask.sum())
            loss_sum += float(masked_bce(logits, targets, mask)) * frames
            count += frames
        p = torch.sigmoid(logits).cpu().numpy()
        lengths = batch["mask"].sum(1).tolist()
        for name, item, length in zip(batch["filenames"], p, lengths, strict=True):
            probs[name] = item[: int(length)]
    return probs, (loss_sum / count if count else float("nan"))


@dataclass
class TrainedModel:
    """Everything a checkpoint carries for prediction: no config has to be supplied."""

    model: nn.Module
    logmel: LogMel
    normalizer: Normalizer
    classes: list[str]
    postprocessing: PostProcessing
    config_yaml: str
    epoch: int

    @property
    def hop_seconds(self) -> float:
        return self.logmel.hop_seconds


def load_trained(path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild model, features, normaliser, classes and post-processing from a checkpoint."""
    device = torch.device(device)
    state = load_checkpoint(path, map_location=device)
    model = build_model(require(state, "model_spec", path))
    model.load_state_dict(require(state, "model", path))
    model.to(device).eval()
    logmel = LogMel(**require(state, "features", path)).to(device)
    return TrainedModel(
        model=model,
        logmel=logmel,
        normalizer=Normalizer.from_state_dict(require(state, "normalizer", path)),
        classes=list(require(state, "classes", path)),
        postprocessing=PostProcessing.from_dict(require(state, "postprocess", path)),
        config_yaml=state.get("config_yaml", ""),
        epoch=int(state.get("epoch", 0)),
    )


@torch.no_grad()
def predict_waveform(
    trained: TrainedModel, waveform: np.ndarray, device: torch.device
) -> np.ndarray:
    """Probabilities [T, C] for one mono waveform at the model's sample rate."""
    x = torch.as_tensor(waveform, dtype=torch.float32, device=device)[None]
    features = trained.normalizer(trained.logmel(x))
    logits = trained.model(features.float())
    return torch.sigmoid(logits.float())[0].cpu().numpy()
