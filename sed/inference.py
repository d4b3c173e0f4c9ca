"""Free-running inference: a trained model over whole files -> per-file probabilities."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sed.audio import AudioReader
from sed.checkpoints import (
    CheckpointError,
    ModelSpecError,
    build_model,
    load_checkpoint,
    plain_kwargs,
    require,
)
from sed.data.datasets import FileDataset, collate
from sed.errors import ConfigError
from sed.features import LogMel, Normalizer, num_frames
from sed.postprocess import PostProcessError, PostProcessing


def resolve_device(name: str | torch.device = "auto", key: str = "device") -> torch.device:
    """'auto' -> CUDA when present, else CPU; otherwise cpu, cuda or cuda:N (that must exist
    here). Errors name the config `key`."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"{key}={name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{key}={name!r} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{key}={name!r}: there are only {count} CUDA device(s) here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={name!r} asked for, but MPS is not available here")
    return device


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over unmasked frames and classes only."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (bce.mean(-1) * mask).sum() / mask.sum().clamp_min(1)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of at most `batch_size` files of one length each (lengths
    ascending, ties in the given order), so that evaluation never pads a file."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    buckets: dict[int, list[int]] = {}
    for index, length in sorted(enumerate(lengths), key=lambda item: item[1]):
        buckets.setdefault(int(length), []).append(index)
    return [
        bucket[start : start + batch_size]
        for bucket in buckets.values()
        for start in range(0, len(bucket), batch_size)
    ]


def file_loader(
    dataset: FileDataset, batch_size: int, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """Whole-file evaluation batches without padding (see `length_batches`)."""
    lengths = [len(x) for x in dataset.features]
    return DataLoader(
        dataset,
        batch_sampler=length_batches(lengths, batch_size),
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )


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

    A batch holding files of different lengths is run as one sub-batch per length, because
    padding would change the last frames of the shorter files (it is non-zero after the first
    conv); `file_loader` makes batches that need no splitting. `amp` is bf16 autocast, on CUDA
    only. `progress` shows a bar where stderr is a terminal (never in a log file). Returns
    ({filename: probabilities [T, C]}, mean masked BCE against the batch targets, or nan when
    the batches carry no targets).
    """
    model.eval()
    probs: dict[str, np.ndarray] = {}
    loss_sum, count = 0.0, 0
    for batch in tqdm(batches, desc=desc, leave=False, disable=None if progress else True):
        lengths = batch["mask"].sum(1)
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero()[:, 0]
            features = batch["features"][rows, :length].to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"
            ):
                logits = model(features)
            logits = logits.float()
            targets = batch.get("targets")
            if targets is not None and targets.shape[-1] == logits.shape[-1]:
                targets = targets[rows, :length].to(device, non_blocking=True)
                mask = batch["mask"][rows, :length].to(device, non_blocking=True)
                frames = int(mask.sum())
                loss_sum += float(masked_bce(logits, targets, mask)) * frames
                count += frames
            for row, item in zip(rows.tolist(), torch.sigmoid(logits).cpu().numpy(), strict=True):
                probs[batch["filenames"][row]] = item
    return probs, (loss_sum / count if count else float("nan"))


def predict_files(
    model: nn.Module,
    features: Sequence[np.ndarray],
    filenames: Sequence[str],
    device: torch.device,
    *,
    batch_size: int,
    amp: bool,
    targets: Sequence[np.ndarray] | None = None,
    progress: bool = False,
    desc: str = "predict",
) -> tuple[dict[str, np.ndarray], float]:
    """Free-running probabilities {filename: [T, C]} of whole files (in the given order) and the
    mean loss against `targets` (nan without): the one inference path of train, evaluate and
    predict. A file's probabilities do not depend on the files batched with it."""
    dataset = FileDataset(features, targets, filenames)
    loader = file_loader(dataset, batch_size, pin_memory=device.type == "cuda")
    probs, loss = predict_batches(model, loader, device, amp=amp, progress=progress, desc=desc)
    return {name: probs[name] for name in dataset.filenames}, loss


@dataclass
class TrainedModel:
    """Everything a checkpoint carries for prediction: no config has to be supplied.

    `batch_size` and `amp` default to the training run's (trainer.batch_size, trainer.amp), so
    that evaluating again gives the numbers of the run's final evaluation.
    """

    model: nn.Module
    logmel: LogMel
    normalizer: Normalizer
    classes: list[str]
    postprocessing: PostProcessing
    config_yaml: str
    epoch: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 16
    amp: bool = False
    postprocessing_fixed: PostProcessing | None = None  # the run's settings before tuning

    @property
    def hop_seconds(self) -> float:
        return self.logmel.hop_seconds

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """Normalised log-mel [T, n_mels] of a mono waveform at the model's sample rate, computed
        as for training (sed.data.loading): LogMel, then the normaliser in float32 numpy."""
        x = torch.as_tensor(np.ascontiguousarray(waveform), dtype=torch.float32)
        with torch.inference_mode():
            logmel = self.logmel(x[None].to(self.device))[0].float().cpu().numpy()
        return self.normalizer(logmel).astype(np.float32)

    def predict(
        self,
        features: Sequence[np.ndarray],
        filenames: Sequence[str],
        progress: bool = False,
        desc: str = "predict",
    ) -> dict[str, np.ndarray]:
        """Probabilities {filename: [T, C]} of normalised features (see `predict_files`)."""
        probs, _ = predict_files(
            self.model,
            features,
            filenames,
            self.device,
            batch_size=self.batch_size,
            amp=self.amp,
            progress=progress,
            desc=desc,
        )
        return probs

    @property
    def streams(self) -> bool:
        """Whether `stream` can run this model chunk by chunk with the whole-file result: it
        needs the model's `stream` (CRNN) and features without a per-file top_db clamp."""
        return hasattr(self.model, "stream") and self.logmel.top_db is None

    def stream_shape(self, num_samples: int) -> tuple[int, int]:
        """The shape [T, C] of `stream`'s probabilities for a file of `num_samples` samples."""
        return num_frames(num_samples, self.logmel.hop_length), len(self.classes)

    @torch.no_grad()
    def stream(
        self,
        reader: AudioReader,
        chunk_frames: int,
        progress: bool = False,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probabilities [T, C] of a whole file read and predicted `chunk_frames` frames at a time:
        memory is bounded by the chunk, and the result is the one-pass result to float tolerance.

        Each chunk of frames [a, b) gets the audio its feature windows cover (zero outside the
        file, sed.features' frame grid), receptive_field_radius frames of conv context either
        side, and the previous chunk's GRU state (the fed-back label follows from it).

        The probabilities go into `out` (float32 [T, C], see `stream_shape`; e.g. a np.memmap of
        the file they are saved to), or into one array allocated before the first chunk: no
        per-chunk array outlives its chunk. Kept per-chunk arrays pinned the allocator's heap
        between the chunks' large transient buffers, so that memory grew with the recording
        (docs/benchmarks.md, issue 22).
        """
        if not self.streams:
            raise ConfigError("this model cannot be streamed (needs CRNN.stream and top_db=null)")
        if chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be >= 1, got {chunk_frames}")
        hop, n_fft = self.logmel.hop_length, self.logmel.n_fft
        left = n_fft // 2 - hop // 2  # feature frame i's window starts at sample i*hop - left
        shape = self.stream_shape(reader.num_samples)
        total = shape[0]
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
        radius = self.model.receptive_field_radius
        self.model.eval()
        state = None
        starts = range(0, total, chunk_frames)
        for a in tqdm(
            starts, desc="chunks", unit="chunk", leave=False, disable=None if progress else True
        ):
            b = min(total, a + chunk_frames)
            fa, fb = max(0, a - radius), min(total, b + radius)  # frames with conv context
            first = max(0, fa - -(-left // hop))  # audio from a frame boundary covering fa's window
            waveform = reader.read(first * hop, (fb - 1) * hop - left + n_fft)
            features = torch.from_numpy(self.features(waveform)[fa - first : fb - first])
            del waveform  # this chunk's buffers go before the next chunk's are allocated
            with torch.autocast(
                self.device.type,
                dtype=torch.bfloat16,
                enabled=self.amp and self.device.type == "cuda",
            ):
                logits, state = self.model.stream(
                    features[None].to(self.device), state, context=(a - fa, fb - b)
                )
            del features
            out[a:b] = torch.sigmoid(logits[0].float()).cpu().numpy()
            del logits
        return out


def load_trained(
    path: str | Path,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    amp: bool | None = None,
    postprocess: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Rebuild model, features, normaliser, classes and post-processing from a checkpoint;
    `batch_size` / `amp` None take the training run's values from the config it carries, and
    the non-null `postprocess` overrides (the entry points' `postprocess.*`) replace stored
    post-processing settings (also ones no longer valid, e.g. a threshold of 1.5).

    Every field is checked (model class against the sed.models allow-list, plain keyword
    arguments) before anything is built; errors name the file and the field.
    """
    device = torch.device(device)
    state = load_checkpoint(path, map_location=device)
    model = build_model(require(state, "model_spec", path), where=f"checkpoint {path}, model_spec")
    try:
        model.load_state_dict(require(state, "model", path))
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path}: weights do not fit model_spec: {err}") from None
    model.to(device).eval()
    model.conv.to(memory_format=torch.channels_last)  # as sed.train runs it
    with _field(path, "features"):
        features = plain_kwargs(require(state, "features", path), f"checkpoint {path}, features")
        logmel = LogMel(**features).to(device).eval()
    with _field(path, "normalizer"):
        normalizer = Normalizer.from_state_dict(require(state, "normalizer", path))
    stored = require(state, "postprocess", path)
    try:
        postprocessing = PostProcessing.from_dict(stored, postprocess)
    except (PostProcessError, TypeError):
        try:  # the checkpoint's own settings at fault, or the overrides?
            PostProcessing.from_dict(stored)
        except (PostProcessError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {path}, postprocess: {err} (override it: postprocess.KEY=VALUE)"
            ) from None
        raise
    fixed = None
    if state.get("postprocess_fixed") is not None and not any(
        v is not None for v in (postprocess or {}).values()
    ):
        with _field(path, "postprocess_fixed"):
            fixed = PostProcessing.from_dict(state["postprocess_fixed"])
    classes = require(state, "classes", path)
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"checkpoint {path}: classes must be a list of str, got {classes!r}")
    config_yaml = state.get("config_yaml", "")
    with _field(path, "config_yaml"):
        config = yaml.safe_load(config_yaml) if config_yaml else {}
        trainer = (config or {}).get("trainer", {}) or {}
        batch_size = int(trainer.get("batch_size", 16) if batch_size is None else batch_size)
        amp = bool(trainer.get("amp", False) if amp is None else amp)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return TrainedModel(
        model=model,
        logmel=logmel,
        normalizer=normalizer,
        classes=list(classes),
        postprocessing=postprocessing,
        config_yaml=config_yaml,
        epoch=int(state.get("epoch", 0)),
        device=device,
        batch_size=batch_size,
        amp=amp,
        postprocessing_fixed=fixed,
    )


@contextmanager
def _field(path: str | Path, key: str) -> Iterator[None]:
    """Re-raise a bad checkpoint field's error as a CheckpointError naming the file and field."""
    try:
        yield
    except (TypeError, ValueError, AttributeError, yaml.YAMLError) as err:
        if isinstance(err, CheckpointError | ModelSpecError):
            raise
        raise CheckpointError(f"checkpoint {path}, {key}: {err}") from None


def predict_waveform(
    trained: TrainedModel, waveform: np.ndarray, device: torch.device | None = None
) -> np.ndarray:
    """Probabilities [T, C] for one mono waveform at the model's sample rate (on the model's
    device; `device` is accepted for older callers and must be that device)."""
    if device is not None and torch.device(device) != trained.device:
        raise ValueError(f"the model is on {trained.device}, not on {device}")
    return trained.predict([trained.features(waveform)], ["waveform"])["waveform"]
