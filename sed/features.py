"""Log-mel features: the LogMel module, an on-disk feature cache and dataset normalisation.

The frame grid, shared by features, targets (`sed.annotations.events_to_frames`) and predictions
(`sed.postprocess.frames_to_events`): frame i covers samples [i*hop, (i+1)*hop), i.e. seconds
[i*hop, (i+1)*hop) / sample_rate, and a waveform of N samples has T = ceil(N / hop) frames, so
every sample lies in exactly one frame. Feature frame i is the STFT window centred on sample
i*hop + hop//2, the middle of its interval ((i + 0.5) * hop, within half a sample for odd hop):
the signal is zero-padded by n_fft//2 - hop//2 on the left and as needed on the right (silence
outside the file, as librosa's default; reflecting would let a last frame centred past the end
see a mirror image of the audio before it).

Every clip's features depend on that clip alone (no batch-wide dB clamping), so features are
the same whether computed alone, in a batch, on CPU or on GPU, and can be cached per file.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sed.audio import AudioError, load_audio
from sed.environment import import_torchaudio
from sed.errors import FeatureError

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "FEATURE_VERSION",
    "FeatureCache",
    "FeatureError",
    "LogMel",
    "Normalizer",
    "num_frames",
]

# Bump whenever the feature computation changes in a way params do not capture: old cache
# entries then stop matching and are recomputed.
FEATURE_VERSION = 1
BACKENDS = ("torchlibrosa", "torchaudio")
# Frames x clips computed per STFT call; bounds memory on long recordings (results unchanged).
_CHUNK_FRAMES = 16384


def num_frames(num_samples: int, hop_length: int) -> int:
    """Frames of the grid for a waveform, ceil(samples / hop): frame i covers [i*hop, (i+1)*hop)."""
    if num_samples < 0 or hop_length <= 0:
        raise FeatureError(
            f"num_frames needs num_samples >= 0 and hop_length > 0, got {num_samples}, {hop_length}"
        )
    return -(-num_samples // hop_length)


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureError(f"feature parameter {key!r} must be an integer, got {value!r}")
    if not float(value).is_integer():
        raise FeatureError(f"feature parameter {key!r} must be an integer, got {value!r}")
    return int(value)


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureError(f"feature parameter {key!r} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise FeatureError(f"feature parameter {key!r} must be finite, got {value!r}")
    return value


def _window(name: str, length: int) -> torch.Tensor:
    """Periodic window as librosa/torchlibrosa build it (scipy.signal.get_window, fftbins=True)."""
    return torch.from_numpy(scipy.signal.get_window(name, length, fftbins=True)).float()


def _freeze(module: nn.Module) -> None:
    """Turn every parameter into a non-persistent buffer: constants follow .to(device) but are
    neither trained nor stored in state_dict (they are rebuilt from LogMel.params)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                del sub._parameters[name]
                sub.register_buffer(name, param.detach(), persistent=False)
        sub._non_persistent_buffers_set.update(sub._buffers)


@lru_cache(maxsize=4)
def _torchlibrosa_spectrogram(
    n_fft: int, hop_length: int, win_length: int, window: str
) -> nn.Module:
    """torchlibrosa's conv STFT, memoised: building its DFT weights takes ~0.5 s per instance.

    center=False: LogMel pads itself, so both backends frame the signal identically.
    """
    from torchlibrosa.stft import Spectrogram

    return Spectrogram(
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=False,
        power=2.0,
    )


class LogMel(nn.Module):
    """Log-mel energies in dB, waveform [B, samples] -> [B, T, n_mels] with T = ceil(samples / hop).

    Frame i is the window centred on its grid interval [i*hop, (i+1)*hop) (module docstring; zero
    padding), power spectrogram, librosa-style mel filters (slaney scale and norm),
    10 * log10(max(amin, mel)). backend="torchlibrosa" uses
    torchlibrosa's Spectrogram + LogmelFilterBank (the seed design); backend="torchaudio" uses
    torchaudio's MelSpectrogram + AmplitudeToDB with matching filters. top_db, if given, clamps
    each clip against its own maximum, never the batch's.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        win_length: int | None,
        hop_length: int,
        n_mels: int = 40,
        fmin: float = 0.0,
        fmax: float | None = None,
        backend: str = "torchlibrosa",
        window: str = "hann",
        amin: float = 1e-10,
        top_db: float | None = None,
    ) -> None:
        super().__init__()
        sample_rate = _as_int("sample_rate", sample_rate)
        n_fft = _as_int("n_fft", n_fft)
        win_length = n_fft if win_length is None else _as_int("win_length", win_length)
        hop_length = _as_int("hop_length", hop_length)
        n_mels = _as_int("n_mels", n_mels)
        fmin = _as_float("fmin", fmin)
        fmax = sample_rate / 2 if fmax is None else _as_float("fmax", fmax)
        amin = _as_float("amin", amin)
        top_db = None if top_db is None else _as_float("top_db", top_db)
        if sample_rate <= 0:
            raise FeatureError(f"feature parameter 'sample_rate' must be > 0, got {sample_rate}")
        if n_fft <= 0 or n_fft % 2:
            raise FeatureError(
                f"feature parameter 'n_fft' must be a positive even number, got {n_fft}"
            )
        if not 0 < win_length <= n_fft:
            raise FeatureError(
                f"feature parameter 'win_length' must be in (0, n_fft={n_fft}], got {win_length}"
            )
        if not 0 < hop_length <= n_fft:  # a larger hop skips samples, and n_fft//2 - hop//2 < 0
            raise FeatureError(
                f"feature parameter 'hop_length' must be in (0, n_fft={n_fft}], got {hop_length}"
            )
        if n_mels <= 0:
            raise FeatureError(f"feature parameter 'n_mels' must be > 0, got {n_mels}")
        if fmax > sample_rate / 2:
            raise FeatureError(
                f"feature parameter 'fmax' must be <= sample_rate / 2 = {sample_rate / 2}, got {fmax}"
            )
        if not 0 <= fmin < fmax:
            raise FeatureError(f"feature parameter 'fmin' must be in [0, fmax={fmax}), got {fmin}")
        if amin <= 0:
            raise FeatureError(f"feature parameter 'amin' must be > 0, got {amin}")
        if top_db is not None and top_db < 0:
            raise FeatureError(f"feature parameter 'top_db' must be >= 0 or null, got {top_db}")
        if backend not in BACKENDS:
            raise FeatureError(
                f"feature parameter 'backend' must be one of {BACKENDS}, got {backend!r}"
            )
        if not isinstance(window, str):
            raise FeatureError(f"feature parameter 'window' must be a window name, got {window!r}")
        try:
            _window(window, win_length)
        except ValueError as err:
            raise FeatureError(
                f"feature parameter 'window': unknown window {window!r} ({err})"
            ) from None

        self.sample_rate, self.n_fft, self.win_length = sample_rate, n_fft, win_length
        self.hop_length, self.n_mels, self.fmin, self.fmax = hop_length, n_mels, fmin, fmax
        self.backend, self.window, self.amin, self.top_db = backend, window, amin, top_db

        if backend == "torchlibrosa":
            from torchlibrosa.stft import LogmelFilterBank

            self.spectrogram = copy.deepcopy(
                _torchlibrosa_spectrogram(n_fft, hop_length, win_length, window)
            )
            # top_db=None: torchlibrosa's top_db clamps against the whole batch's maximum.
            self.mel = LogmelFilterBank(
                sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                ref=1.0, amin=amin, top_db=None,
            )  # fmt: skip
        else:
            import_torchaudio()  # a clear error for a mismatched torchaudio build
            import torchaudio

            self.spectrogram = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, win_length=win_length,
                hop_length=hop_length, f_min=fmin, f_max=fmax, n_mels=n_mels,
                window_fn=partial(_window, window), power=2.0, center=False,
                norm="slaney", mel_scale="slaney",
            )  # fmt: skip
            self.mel = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)
            self.mel.amin = amin
        _freeze(self)

    @property
    def params(self) -> dict[str, Any]:
        """Every parameter, as plain Python values: cache keys, checkpoints, LogMel(**params)."""
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "backend": self.backend,
            "window": self.window,
            "amin": self.amin,
            "top_db": self.top_db,
        }

    @property
    def hop_seconds(self) -> float:
        """Frame hop in seconds (the frame grid targets and predictions use)."""
        return self.hop_length / self.sample_rate

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())

    def _log_mel(self, frames: torch.Tensor) -> torch.Tensor:
        """Log-mel of an already padded signal [B, L] (no centring), [B, T, n_mels]."""
        if self.backend == "torchlibrosa":
            return self.mel(self.spectrogram(frames))[:, 0]
        return self.mel(self.spectrogram(frames)).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform [B, samples] -> log-mel [B, ceil(samples / hop_length), n_mels]."""
        if waveform.ndim != 2:
            raise FeatureError(
                f"LogMel expects a waveform [batch, samples], got shape {tuple(waveform.shape)}"
            )
        if waveform.shape[-1] == 0:
            raise FeatureError("LogMel got an empty waveform (0 samples)")
        buffer = next(self.buffers())
        total = num_frames(waveform.shape[-1], self.hop_length)
        # Window i spans padded samples [i*hop, i*hop + n_fft): centred on i*hop + hop//2.
        left = self.n_fft // 2 - self.hop_length // 2
        right = (total - 1) * self.hop_length + self.n_fft - left - waveform.shape[-1]
        x = F.pad(waveform.to(device=buffer.device, dtype=buffer.dtype), (left, right))
        step = max(1, _CHUNK_FRAMES // waveform.shape[0])
        if total <= step:
            out = self._log_mel(x)
        else:  # long recordings: frames are independent, so compute them a chunk at a time
            out = torch.cat(
                [
                    self._log_mel(
                        x[
                            :,
                            a * self.hop_length : (min(a + step, total) - 1) * self.hop_length
                            + self.n_fft,
                        ]
                    )
                    for a in range(0, total, step)
                ],
                dim=1,
            )
        if self.top_db is not None:  # per clip, unlike torchlibrosa's / torchaudio's top_db
            floor = out.amax(dim=(1, 2), keepdim=True) - self.top_db
            out = torch.maximum(out, floor)
        return out


class FeatureCache:
    """Log-mel features of audio files cached on disk as .npy, one file per (audio, params).

    The key hashes the audio file's identity (resolved path, size, mtime_ns), every LogMel
    parameter and FEATURE_VERSION, so a changed file or parameter never reuses stale features.
    A cache folder that cannot be written (read-only, full) is still read; what is not in it is
    computed without being stored, after one warning.
    """

    def __init__(
        self, cache_dir: str | os.PathLike, logmel: LogMel, device: str | torch.device = "cpu"
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.device = torch.device(device)
        self.logmel = logmel.to(self.device).eval()
        self.computed = 0  # files extracted (cache misses), for progress reports and tests
        self.reused = 0  # files read back from the cache
        self.writable = True  # False after a failed write: later misses are not stored

    def key(self, path: str | os.PathLike) -> str:
        """sha1 identifying the features of this file (as it is now) under these parameters."""
        resolved = Path(path).resolve()
        try:
            stat = resolved.stat()
        except OSError as err:
            raise AudioError(f"audio file not found: {path} ({err.strerror or err})") from None
        identity = {
            "path": str(resolved),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "params": self.logmel.params,
            "version": FEATURE_VERSION,
        }
        return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def path_for(self, path: str | os.PathLike) -> Path:
        """Where the features of this audio file are (or would be) cached."""
        return self.cache_dir / f"{self.key(path)}.npy"

    def compute(self, path: str | os.PathLike) -> np.ndarray:
        """Extract features of one file without touching the cache, float32 [T, n_mels]."""
        waveform = load_audio(path, self.logmel.sample_rate)
        x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None].to(self.device)
        try:
            with torch.inference_mode():
                features = self.logmel(x)[0]
        except FeatureError as err:
            raise FeatureError(f"{path}: {err}") from None
        return features.float().cpu().numpy()

    def _load(self, cached: Path) -> np.ndarray | None:
        """The cached array, or None when missing, unreadable or of the wrong shape."""
        try:
            features = np.load(cached, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if (
            features.ndim != 2
            or features.shape[1] != self.logmel.n_mels
            or features.dtype != np.float32
        ):
            return None
        return features

    def get(self, path: str | os.PathLike) -> np.ndarray:
        """Features of one audio file, float32 [T, n_mels]: from the cache, else extracted and stored."""
        cached = self.path_for(path)
        features = self._load(cached)
        if features is not None:
            self.reused += 1
            return features
        features = self.compute(path)
        self.computed += 1
        if self.writable:
            self._store(features, cached)
        return features

    def _store(self, features: np.ndarray, cached: Path) -> None:
        """Write `features` to `cached` atomically; on failure warn once and stop storing."""
        tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, features, allow_pickle=False)
            os.replace(tmp, cached)
        except OSError as err:
            self.writable = False
            log.warning(
                "feature cache %s cannot be written (%s): features are computed without being "
                "stored; give a writable folder with paths.cache_dir=DIR to cache them",
                self.cache_dir,
                err.strerror or err,
            )
        finally:
            with contextlib.suppress(OSError):  # gone once renamed, or its folder is unusable
                tmp.unlink(missing_ok=True)

    def extract(
        self, paths: Sequence[str | os.PathLike], desc: str = "features", progress: bool = True
    ) -> list[np.ndarray]:
        """Features of every file in order, with a tqdm progress bar (cached files are fast)."""
        return [
            self.get(p)
            for p in tqdm(
                paths,
                desc=desc,
                unit="file",
                disable=None if progress else True,
                dynamic_ncols=True,
            )
        ]


class Normalizer:
    """Per-mel-band standardisation with mean/std over all training frames (dataset level)."""

    def __init__(
        self,
        mean: Sequence[float] | np.ndarray | None = None,
        std: Sequence[float] | np.ndarray | None = None,
        min_std: float = 1e-2,
    ) -> None:
        if min_std <= 0:
            raise FeatureError(f"Normalizer 'min_std' must be > 0, got {min_std}")
        self.min_std = float(min_std)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = (
            None if std is None else np.maximum(np.asarray(std, dtype=np.float64), self.min_std)
        )
        if (self.mean is None) != (self.std is None) or (
            self.mean is not None and (self.mean.ndim != 1 or self.mean.shape != self.std.shape)
        ):
            raise FeatureError("Normalizer needs mean and std as two 1-D sequences of equal length")
        self._torch: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def fit(self, features: Iterable[np.ndarray]) -> Normalizer:
        """Mean/std per band over every frame of every [T, F] array (float64, Chan's merge)."""
        count, mean, m2 = 0, None, None
        for i, x in enumerate(features):
            x = np.asarray(x, dtype=np.float64)
            if x.ndim != 2 or (mean is not None and x.shape[1] != mean.shape[0]):
                width = "" if mean is None else f" with F = {mean.shape[0]}"
                raise FeatureError(
                    f"Normalizer.fit: item {i} has shape {x.shape}, expected [T, F]{width}"
                )
            if x.shape[0] == 0:
                continue
            if not np.isfinite(x).all():
                raise FeatureError(f"Normalizer.fit: item {i} contains non-finite values")
            n, x_mean = x.shape[0], x.mean(axis=0)
            x_m2 = ((x - x_mean) ** 2).sum(axis=0)
            if mean is None:
                count, mean, m2 = n, x_mean, x_m2
                continue
            total = count + n
            delta = x_mean - mean
            mean = mean + delta * (n / total)
            m2 = m2 + x_m2 + delta**2 * (count * n / total)
            count = total
        if count == 0:
            raise FeatureError("Normalizer.fit: no frames to fit on")
        self.mean = mean
        self.std = np.maximum(np.sqrt(m2 / count), self.min_std)
        self._torch.clear()
        return self

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """(x - mean) / std over the last (band) dimension; numpy stays numpy, torch stays torch."""
        if self.mean is None:
            raise FeatureError("Normalizer is not fitted: call fit() or from_state_dict() first")
        if x.shape[-1] != self.mean.shape[0]:
            raise FeatureError(
                f"Normalizer: expected {self.mean.shape[0]} bands, got shape {tuple(x.shape)}"
            )
        if isinstance(x, torch.Tensor):
            key = (x.device, x.dtype)
            if key not in self._torch:
                self._torch[key] = tuple(
                    torch.as_tensor(a, dtype=x.dtype, device=x.device)
                    for a in (self.mean, self.std)
                )
            mean, std = self._torch[key]
            return (x - mean) / std
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
        return ((x - self.mean) / self.std).astype(dtype, copy=False)

    def state_dict(self) -> dict[str, Any]:
        """Plain lists and floats, so checkpoints load with torch.load(weights_only=True)."""
        if self.mean is None:
            raise FeatureError("Normalizer is not fitted: nothing to save")
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "min_std": self.min_std}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        """Rebuild a fitted Normalizer from state_dict() output (lists or tensors)."""
        try:
            mean, std = (state[k] for k in ("mean", "std"))
        except KeyError as err:
            raise FeatureError(f"Normalizer state is missing key {err.args[0]!r}") from None
        if isinstance(mean, torch.Tensor):
            mean = mean.detach().double().cpu().numpy()
        if isinstance(std, torch.Tensor):
            std = std.detach().double().cpu().numpy()
        return cls(mean, std, min_std=float(state.get("min_std", 1e-2)))
