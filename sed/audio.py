"""Read audio files into mono float32 at a configured sample rate, with clear errors."""

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf

from sed.environment import import_torchaudio
from sed.errors import AudioError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioReader",
    "audio_duration",
    "load_audio",
    "open_audio",
]

# Extensions of the containers libsndfile (and so soundfile) decodes.
AUDIO_EXTENSIONS = tuple(".wav .flac .ogg .oga .aiff .aif .au .caf .w64 .rf64".split())
if "MP3" in sf.available_formats():
    AUDIO_EXTENSIONS += (".mp3",)

# libsndfile reads a truncated WAV/AIFF silently, but its log shows the shortfall, e.g.
# "data : 64000 (should be 31978)": the header declares more bytes than the file holds.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND) : (\d+) \(should be (\d+)\)", re.MULTILINE)


def load_audio(path: str | PathLike, sample_rate: int | None = None) -> np.ndarray:
    """Read any soundfile-readable file as mono float32 (channel mean), resampled to sample_rate.

    sample_rate=None keeps the file's own rate.
    """
    _check_rate(path, sample_rate)
    with _open(path) as f:
        data = f.read(dtype="float32", always_2d=True)
        native_rate = f.samplerate
    if not np.isfinite(data).all():
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    mono = data.mean(axis=1, dtype=np.float32)
    if sample_rate is not None and sample_rate != native_rate:
        mono = _resample(mono, native_rate, int(sample_rate))
    return np.ascontiguousarray(mono, dtype=np.float32)


def _resample(x: np.ndarray, native_rate: int, sample_rate: int) -> np.ndarray:
    """torchaudio's sinc resampling of a mono array; torch and torchaudio are imported here
    only, so reading annotations or durations never loads them."""
    import torch

    return import_torchaudio().resample(torch.from_numpy(x), native_rate, sample_rate).numpy()


class AudioReader:
    """One audio file as mono float32 at a sample rate, decoded a span at a time, so that a long
    recording never sits in memory whole: ``read(start, stop)`` is
    ``load_audio(path, sample_rate)[start:stop]`` (exactly, or to float tolerance where it
    resamples: each span is resampled from enough input around it). Made by `open_audio`."""

    def __init__(self, f: sf.SoundFile, path: str | PathLike, sample_rate: int | None) -> None:
        self.file, self.path = f, path
        self.native_rate = f.samplerate
        self.sample_rate = self.native_rate if sample_rate is None else int(sample_rate)
        g = math.gcd(self.native_rate, self.sample_rate)
        self._orig, self._new = (
            self.native_rate // g,
            self.sample_rate // g,
        )  # rates in lowest terms
        # torchaudio's sinc kernel reaches ceil(6 * orig / (0.99 * min(orig, new))) input samples
        # beyond each block of `orig`: whole blocks of margin, one more for safety.
        reach = math.ceil(6 * self._orig / (0.99 * min(self._orig, self._new)))
        self._margin = -(-reach // self._orig) + 1
        self.num_samples = -(-self._new * f.frames // self._orig)  # torchaudio's output length

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) at the reader's rate (clipped to the file), mono float32."""
        start, stop = max(0, start), min(self.num_samples, stop)
        if stop <= start:
            return np.zeros(0, np.float32)
        if self._orig == self._new:
            return self._decode(start, stop)
        j0, j1 = start // self._new, -(-stop // self._new)  # kernel positions covering the span
        i0 = max(0, (j0 - self._margin) * self._orig)
        i1 = min(self.file.frames, (j1 + self._margin) * self._orig)
        out = _resample(self._decode(i0, i1), self.native_rate, self.sample_rate)
        offset = i0 // self._orig * self._new
        return np.ascontiguousarray(out[start - offset : stop - offset], dtype=np.float32)

    def _decode(self, start: int, stop: int) -> np.ndarray:
        """Native-rate samples [start, stop), mono, checked finite; errors name the file."""
        try:
            self.file.seek(start)
            data = self.file.read(stop - start, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as error:
            raise AudioError(
                f"cannot read audio file {self.path} at sample {start}: {error}"
            ) from error
        if len(data) != stop - start:
            raise AudioError(f"audio file {self.path} ends at sample {start + len(data)}, before "
                             f"the {self.file.frames} its header declares")  # fmt: skip
        if not np.isfinite(data).all():
            raise AudioError(f"audio file {self.path} contains NaN or infinite samples")
        return data.mean(axis=1, dtype=np.float32)


@contextmanager
def open_audio(path: str | PathLike, sample_rate: int | None = None) -> Iterator[AudioReader]:
    """An `AudioReader` of path at sample_rate (None: the file's own), with load_audio's checks."""
    _check_rate(path, sample_rate)
    with _open(path) as f:
        yield AudioReader(f, path, sample_rate)


def _check_rate(path: str | PathLike, sample_rate: int | None) -> None:
    if sample_rate is not None and not (isinstance(sample_rate, Integral) and sample_rate > 0):
        raise AudioError(
            f"cannot load {path} at sample_rate={sample_rate!r}: "
            "the sample rate must be a positive whole number of Hz"
        )


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
