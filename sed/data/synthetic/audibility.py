"""Where a synthetic event can be heard: band energy per 10 ms frame and the audible extents.

On a FRAME_SECONDS grid, a frame of an event is audible when the event's energy in its class band
is at least AUDIBLE_DB relative to the energy of everything else in the clip in that band
(floored at FLOOR_DB). A class is annotated over the audible frames of its events (clipped to
each event's samples), with gaps shorter than MERGE_GAP_SECONDS filled (docs/synthetic.md).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from scipy import fft as sfft
from scipy import signal

from sed.data.synthetic.renderers import class_band

if TYPE_CHECKING:
    from sed.data.synthetic.scenes import Source

# Audibility (see the module docstring and docs/synthetic.md).
FRAME_SECONDS = 0.01  # annotation frame grid; frame t covers samples [t * hop, (t + 1) * hop)
AUDIBLE_DB = -6.0  # event-to-rest energy ratio in the class band at which a frame is audible
MERGE_GAP_SECONDS = 1.0  # a class inaudible for less than this stays one annotation
FLOOR_DB = -100.0  # the rest of the clip counts as at least this loud (dB re full-scale power)


def frame_hop(sample_rate: int) -> int:
    """Samples per annotation frame (FRAME_SECONDS at this rate)."""
    return int(round(FRAME_SECONDS * sample_rate))


def _spectra(x: np.ndarray, hop: int, frames: range, offset: int = 0) -> np.ndarray:
    """Hann-windowed spectra [frames, hop + 1] of x, whose sample 0 sits at clip sample offset.

    Frame t covers clip samples [t * hop, (t + 1) * hop); its window of 2 * hop samples is
    centred on it, [t * hop - hop // 2, t * hop - hop // 2 + 2 * hop), zeros outside x.
    """
    first = frames.start * hop - hop // 2 - offset
    need = (len(frames) + 1) * hop
    chunk = np.zeros(need)
    lo, hi = max(first, 0), min(first + need, len(x))
    if hi > lo:
        chunk[lo - first : hi - first] = x[lo:hi]
    windows = np.lib.stride_tricks.sliding_window_view(chunk, 2 * hop)[::hop][: len(frames)]
    return sfft.rfft(windows * _hann(2 * hop), axis=1)


@functools.lru_cache(maxsize=8)
def _hann(length: int) -> np.ndarray:
    return signal.get_window("hann", length)


def _in_band(spec: np.ndarray, sample_rate: int, band: tuple[float, float]) -> np.ndarray:
    """Per-frame power in band (Hz) from _spectra output, relative to full scale."""
    n = 2 * (spec.shape[1] - 1)
    freqs = sfft.rfftfreq(n, 1 / sample_rate)
    keep = (freqs >= band[0]) & (freqs < band[1])
    power = spec[:, keep].real ** 2 + spec[:, keep].imag ** 2
    return 2 * power.sum(axis=1) / (n * np.sum(_hann(n) ** 2))


def band_energy(
    x: np.ndarray,
    sample_rate: int,
    band: tuple[float, float],
    hop: int,
    frames: range | None = None,
) -> np.ndarray:
    """Power of x in band (Hz) per frame of hop samples, from a 2 * hop Hann window centred on it.

    Frame t covers samples [t * hop, (t + 1) * hop), its window [t * hop - hop // 2, t * hop -
    hop // 2 + 2 * hop) (zeros outside x); a full-scale sine in the band gives about 0.5.
    `frames` (default: every frame of x) selects a range of frames.
    """
    if frames is None:
        frames = range(-(-len(x) // hop))
    return _in_band(_spectra(x, hop, frames), sample_rate, band)


def audible_frames(event_energy: np.ndarray, rest_energy: np.ndarray) -> np.ndarray:
    """Frames where the event is audible: event >= 10 ** (AUDIBLE_DB / 10) * max(rest, FLOOR)."""
    floor = 10 ** (FLOOR_DB / 10)
    return event_energy >= 10 ** (AUDIBLE_DB / 10) * np.maximum(rest_energy, floor)


def _annotate(
    audio: np.ndarray, sources: list[Source], sr: int
) -> tuple[list[tuple[int, int, str]], list[bool]]:
    """Audible extents (start, stop sample, label) in the clip `audio`, and which sources are heard.

    Per source: runs of audible frames, clipped to the source's samples. Per class: the union of
    its sources' runs, with gaps shorter than MERGE_GAP_SECONDS filled.
    """
    hop = frame_hop(sr)
    max_gap = int(round(MERGE_GAP_SECONDS * sr))
    runs: dict[str, list[tuple[int, int]]] = {}
    heard = []
    n_frames = -(-len(audio) // hop)
    clip = _spectra(audio, hop, range(n_frames))
    for src in sources:  # the frames whose windows overlap src
        frames = range(
            max(0, (src.start + hop // 2) // hop - 1),
            min(n_frames, -(-(src.stop + hop // 2) // hop)),
        )
        band = class_band(src.label, sr)
        alone = _spectra(src.signal, hop, frames, offset=src.start)
        event = _in_band(alone, sr, band)
        rest = _in_band(clip[frames.start : frames.stop] - alone, sr, band)
        edges = np.diff(np.concatenate(([0], audible_frames(event, rest).astype(np.int8), [0])))
        first = (frames.start + np.flatnonzero(edges == 1)) * hop
        last = (frames.start + np.flatnonzero(edges == -1)) * hop
        spans = [(max(a, src.start), min(b, src.stop)) for a, b in zip(first, last, strict=True)]
        spans = [(a, b) for a, b in spans if a < b]  # a frame only its window shares with src
        runs.setdefault(src.label, []).extend(spans)
        heard.append(bool(spans))
    merged = []
    for label, spans in runs.items():
        current: list[int] = []
        for start, stop in sorted(spans):
            if current and start - current[1] < max_gap:
                current[1] = max(current[1], stop)
            else:
                if current:
                    merged.append((current[0], current[1], label))
                current = [start, stop]
        if current:
            merged.append((current[0], current[1], label))
    return sorted(merged), heard
