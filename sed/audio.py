"""Read audio files into mono float32 at a configured sample rate, with clear errors."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional

__all__ = ["AUDIO_EXTENSIONS", "AudioError", "audio_duration", "load_audio"]

# Extensions of the containers libsndfile (and so soundfile) decodes.
AUDIO_EXTENSIONS = tuple(".wav .flac .ogg .oga .aiff .aif .au .caf .w64 .rf64".split())
if "MP3" in sf.available_formats():
    AUDIO_EXTENSIONS += (".mp3",)

# libsndfile reads a truncated WAV/AIFF silently, but its log shows the shortfall, e.g.
# "data : 64000 (should be 31978)": the header declares more bytes than the file holds.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND) : (\d+) \(should be (\d+)\)", re.MULTILINE)


class AudioError(ValueError):
    """An audio file that cannot be used: missing, unreadable, truncated, empty or non-finite."""


def load_audio(path: str | PathLike, sample_rate: int | None = None) -> np.ndarray:
    """Read any soundfile-readable file as mono float32 (channel mean), resampled to sample_rate.

    sample_rate=None keeps the file's own rate.
    """
    if sample_rate is not None and not (isinstance(sample_rate, Integral) and sample_rate > 0):
        raise AudioError(
            f"cannot load {path} at sample_rate={sample_rate!r}: "
            "the sample rate must be a positive whole number of Hz"
        )
    with _open(path) as f:
        data = f.read(dtype="float32", always_2d=True)
        native_rate = f.samplerate
    if not np.isfinite(data).all():
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    mono = data.mean(axis=1, dtype=np.float32)
    if sample_rate is not None and sample_rate != native_rate:
        waveform = torch.from_numpy(mono)
        mono = torchaudio.functional.resample(waveform, native_rate, int(sample_rate)).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_duration(path: str | PathLike) -> float:
    """Duration in seconds from the file header (no decoding), with the same checks as load_audio."""
    with _open(path) as f:
        return f.frames / f.samplerate


@contextmanager
def _open(path: str | PathLike) -> Iterator[sf.SoundFile]:
    """Open path with soundfile, turning every way it can fail into an AudioError naming it."""
    if not Path(path).is_file():
        raise AudioError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(path) as f:
            short = _SHORT_CHUNK.search(f.extra_info)
            if short and int(short[1]) > int(short[2]):
                raise AudioError(
                    f"audio file {path} is truncated: its header declares {short[1]} bytes "
                    f"of audio but only {short[2]} are present"
                )
            if f.frames == 0:
                raise AudioError(f"audio file {path} has no samples (zero length)")
            yield f
    except sf.SoundFileError as error:
        raise AudioError(f"cannot read audio file {path}: {error}") from error
