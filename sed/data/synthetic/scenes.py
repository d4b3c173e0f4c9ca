"""One clip of the synthetic set: background noise, placed and scaled events, mix and labels.

Every clip is drawn from its own generator, seeded by (seed, split, index), so a clip does not
depend on the other clips or on the split sizes, and the same params give the same clip.
render_scene gives a clip exactly as the writer (sed.data.synthetic.writing) stores it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import fft as sfft

from sed.annotations import COLUMNS
from sed.data.synthetic.audibility import _annotate
from sed.data.synthetic.params import SyntheticParams, check_params
from sed.data.synthetic.renderers import _SPECS, CLASSES, class_band, render_event
from sed.data.synthetic.signals import _rms
from sed.data.synthetic.sources import SOURCE_SPLITS

SPLITS = ("train", "validation", "test")
_SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}
PEAK = 10 ** (-1 / 20)  # a clip whose peak exceeds -1 dBFS is scaled down to it (no clipping)


def _band_power(x: np.ndarray, sr: int, band: tuple[float, float]) -> float:
    """Mean power of x inside band (Hz), from one FFT over the whole segment."""
    n_fft = sfft.next_fast_len(len(x), real=True)
    spec = sfft.rfft(x, n_fft)
    freqs = sfft.rfftfreq(n_fft, 1 / sr)
    keep = (freqs >= band[0]) & (freqs < band[1])
    return float(np.sum(np.abs(spec[keep]) ** 2)) / (len(x) * n_fft)


@functools.lru_cache(maxsize=8)
def _noise_shapes(n: int, sr: int) -> np.ndarray:
    """Unit-power pink (1/f), brown (1/f^2) and white power spectra [3, bins], none below 10 Hz."""
    freqs = np.fft.rfftfreq(n, 1 / sr)
    f = np.maximum(freqs, 20.0)
    keep = freqs >= 10.0
    shapes = np.stack([keep / f, keep / f**2, keep * 1.0])
    shapes /= shapes.sum(axis=1, keepdims=True)
    shapes.flags.writeable = False
    return shapes


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Pink/brown noise mixture with a faint hiss, a random level and a slowly varying gain.

    Shaped directly in the frequency domain (one inverse FFT of a random spectrum).
    """
    brown_share = rng.uniform(0.1, 0.8)
    hiss = 10 ** (-rng.uniform(25, 40) / 10)
    power = np.array([1 - brown_share, brown_share, hiss]) @ _noise_shapes(n, sr)
    re, im = rng.standard_normal((2, power.shape[0]))
    bg = np.fft.irfft((re + 1j * im) * np.sqrt(power), n)
    spacing = rng.uniform(1.0, 2.5)
    knots = np.arange(0, n / sr + spacing, spacing)
    level_db = np.clip(rng.normal(0, 2.0, len(knots)), -5, 5)
    gain_db = np.interp(np.arange(n) / sr, knots, level_db) + rng.uniform(-40, -30)
    return bg / _rms(bg) * 10 ** (gain_db / 20)


def clip_name(split: str, index: int) -> str:
    """File name of clip `index` of `split` (relative to the split's audio folder)."""
    return f"{split}_{index:04d}.wav"


def _clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_CODE[split], index]))


@dataclass(frozen=True)
class Source:
    """One rendered event as it sits in its clip: samples [start, start + len(signal))."""

    label: str
    start: int
    signal: np.ndarray  # float64, scaled exactly as mixed into the clip
    source: int | None = None  # its class's source id (SOURCE_SPLITS); None: sources=False

    @property
    def stop(self) -> int:
        return self.start + len(self.signal)


@dataclass(frozen=True)
class Scene:
    """One clip: its audio, its annotations (audible extents) and every rendered event."""

    audio: np.ndarray  # float32, before WAV quantisation
    events: pd.DataFrame  # COLUMNS; the annotations generate writes
    sources: list[Source]  # in rendering order, audible or not
    heard: list[bool]  # per source: audible in at least one frame (so annotated)


def _render(split: str, index: int, params: SyntheticParams) -> Scene:
    """One clip of the set; see render_scene."""
    sr = params.sample_rate
    n_clip = int(round(params.clip_seconds * sr))
    rng = _clip_rng(params.seed, split, index)
    bg = _background(rng, n_clip, sr)
    lo, hi = params.events_per_clip
    n_events = 0 if rng.random() < params.empty_fraction else int(rng.integers(lo, hi + 1))
    active = np.zeros(n_clip, dtype=np.int8)
    sources: list[Source] = []
    mix = bg.copy() if params.background else np.zeros(n_clip)
    gap = int(0.1 * sr)
    ids = SOURCE_SPLITS[split]
    for _ in range(n_events):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        source = ids[int(rng.integers(len(ids)))] if params.sources else None
        spec = _SPECS[label]
        seconds = min(rng.uniform(*spec.duration), 0.9 * params.clip_seconds)
        x = render_event(label, seconds, sr, rng, source, params.seed)[:n_clip]
        n = len(x)
        snr = rng.uniform(*params.snr_db)
        for _attempt in range(30):
            start = int(rng.integers(0, n_clip - n + 1))
            stop = start + n
            if active[start:stop].max(initial=0) >= params.max_polyphony:
                continue
            if any(
                s.label == label and start < s.stop + gap and s.start < stop + gap for s in sources
            ):
                continue
            break
        else:
            continue  # no room for this event: drop it
        band = class_band(label, sr)
        p_bg = _band_power(bg[start:stop], sr, band)
        p_ev = _band_power(x, sr, band)
        x = x * np.sqrt(10 ** (snr / 10) * p_bg / max(p_ev, 1e-30))
        mix[start:stop] += x
        active[start:stop] += 1
        sources.append(Source(label, start, x, source))
    peak = float(np.max(np.abs(mix))) if n_clip else 0.0
    if peak > PEAK:
        mix *= PEAK / peak
        sources = [replace(s, signal=s.signal * (PEAK / peak)) for s in sources]
    audio = mix.astype(np.float32)
    spans, heard = _annotate(audio.astype(np.float64), sources, sr)
    events = pd.DataFrame(
        {
            "filename": [clip_name(split, index)] * len(spans),
            "onset": [s / sr for s, _, _ in spans],
            "offset": [e / sr for _, e, _ in spans],
            "event_label": [lab for _, _, lab in spans],
        },
        columns=COLUMNS,
    )
    return Scene(audio, events, sources, heard)


def render_scene(split: str, index: int, **params: Any) -> Scene:
    """Clip `index` of `split` exactly as generate writes it, with its rendered events.

    params are SyntheticParams' fields (the others at their defaults); `background=False` leaves
    out the noise but keeps every event's level. Scene.sources[i].source says which source each
    event came from.
    """
    return _render(split, index, check_params(**params))


def render_clip(split: str, index: int, **params: Any) -> tuple[np.ndarray, pd.DataFrame]:
    """Audio (float32, before WAV quantisation) and event table of one clip, as generate writes."""
    scene = render_scene(split, index, **params)
    return scene.audio, scene.events
