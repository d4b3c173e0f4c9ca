"""The embedded default dataset: seeded, procedural polyphonic scenes in the DESIGN folder format.

No real dataset can be downloaded, so a new user trains on this at once. Each clip is coloured
background noise (pink/brown mixture with a slowly varying level) plus 0..N events of eight
classes, each with its own signature, loudness envelope and a per-event SNR measured in the
class's band against the local background. Polyphony never exceeds `max_polyphony`.

Events are annotated where they can be heard, not where their envelope is non-zero (slow fades,
swells and pass-bys make the two differ by seconds): on a 10 ms frame grid, a frame of an event
is audible when the event's energy in its class band is at least AUDIBLE_DB relative to the
energy of everything else in the clip (background and other events) in that band. A class is
annotated over the audible frames of its events (clipped to each event's samples), with gaps
shorter than MERGE_GAP_SECONDS filled. An event never audible is not annotated (its sound stays
in the clip).
docs/synthetic.md gives the definition in full and the oracle ceiling it implies.

Sources (version 3, `sources=True`, the default): each class has SOURCES_PER_CLASS fixed
sources ("this dog", "this siren"), SOURCE_SPLITS of them heard only in train, validation or
test, so validation and test measure generalisation to unseen sound sources. A source fixes its
class renderer's identity parameters (pitch, formants, resonances, pulse timing, harmonic
amplitudes, ...) up to a small per-event jitter: a Latin-hypercube design per class and dataset
seed cuts each parameter's range into SOURCES_PER_CLASS equal strata and gives every source its
own stratum of every parameter (`_Voice`), and fixes each discrete choice (wail or yelp, single or
double ring, ...) per source, balanced within each split. Recording conditions (loudness
envelope, SNR, duration, placement, background) are drawn per event as before. `sources=False`
draws every event's identity from the whole class range: version 2's output, bit-identical.
Which source each event came from is in `Source.source` and ROOT/metadata/{split}_sources.tsv.

Every clip is drawn from its own generator, seeded by (seed, split, index), so a clip does not
depend on the other clips or on the split sizes, and the same params give bit-identical files.

    python -m sed.data.synthetic ROOT [--seed N] [--n-train N] [--n-validation N] [--n-test N]
                                      [--clip-seconds S] [--sample-rate SR] [--no-sources]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import fft as sfft
from scipy import signal

from sed.annotations import COLUMNS, write_tsv

try:  # POSIX advisory locks keep concurrent ensure() calls (parallel sweeps) from racing
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

# Bump when the generator's output changes for the same params. 2: audible extents; 3: the
# `sources` parameter (default on: per-split sound sources; off: version 2's output).
VERSION = 3
SPLITS = ("train", "validation", "test")
_SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}
SUBTYPE = "PCM_16"  # every clip is written as 16-bit PCM WAV
PEAK = 10 ** (-1 / 20)  # a clip whose peak exceeds -1 dBFS is scaled down to it (no clipping)

# Audibility (see the module docstring and docs/synthetic.md).
FRAME_SECONDS = 0.01  # annotation frame grid; frame t covers samples [t * hop, (t + 1) * hop)
AUDIBLE_DB = -6.0  # event-to-rest energy ratio in the class band at which a frame is audible
MERGE_GAP_SECONDS = 1.0  # a class inaudible for less than this stays one annotation
FLOOR_DB = -100.0  # the rest of the clip counts as at least this loud (dB re full-scale power)

# Sources (see the module docstring and docs/synthetic.md): source ids 0..SOURCES_PER_CLASS - 1 of
# each class, split by construction (the design's strata are permuted at random, so the order of
# the ids carries nothing).
SOURCES_PER_CLASS = 10
SOURCE_SPLITS: dict[str, range] = {
    "train": range(0, 6),
    "validation": range(6, 8),
    "test": range(8, 10),
}

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "n_train": 200,
    "n_validation": 50,
    "n_test": 50,
    "clip_seconds": 10.0,
    "sample_rate": 16000,
    "snr_db": (-5.0, 20.0),
    "events_per_clip": (2, 6),
    "empty_fraction": 0.04,
    "max_polyphony": 3,
    "background": True,
    "sources": True,
}


class SyntheticError(ValueError):
    """A bad generator parameter or a root folder that must not be overwritten."""


# --------------------------------------------------------------------------------------------
# Signal helpers. Every renderer returns float64 samples whose first and last samples are
# non-zero, so an event's rendered extent (Source.start .. Source.stop) is exactly its sound.


def _fmax(sr: int) -> float:
    """Highest frequency a renderer may put energy at (keeps clear of Nyquist)."""
    return 0.45 * sr


def _layout(
    rng: np.random.Generator, n: int, sr: int, draw: Callable[[int], tuple[float, float]]
) -> tuple[list[tuple[int, int]], int]:
    """Pulses (start, length) in samples filling about n samples; `draw(i)` gives (on, off) s."""
    pulses: list[tuple[int, int]] = []
    pos = 0
    while True:
        on, off = draw(len(pulses))
        length = max(1, int(on * sr))
        if pulses and pos + length > n:
            break
        pulses.append((pos, length))
        pos += length + max(1, int(off * sr))
        if pos >= n:
            break
    start, length = pulses[-1]
    return pulses, start + length


def _ramp(length: int, ramp: int) -> np.ndarray:
    """Gate of one pulse: linear ramps in and out, non-zero on every sample."""
    r = max(1, min(ramp, length // 2))
    i = np.arange(length)
    return np.minimum(1.0, np.minimum(i + 1, length - i) / (r + 1))


def _gate(pulses: list[tuple[int, int]], total: int, ramp: int) -> np.ndarray:
    """Sum of pulse gates (zero between pulses)."""
    g = np.zeros(total)
    for start, length in pulses:
        g[start : start + length] = _ramp(length, ramp)
    return g


def _tone(freq: np.ndarray, sr: int, rng: np.random.Generator, amps: Sequence[float]) -> np.ndarray:
    """Harmonic tone following the instantaneous frequency `freq` (Hz, one value per sample).

    Harmonics that would pass 0.45 * sr are dropped; sin(k*phase) comes from the Chebyshev
    recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x), two vector ops per harmonic.
    """
    phase = 2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi)
    peak = float(freq.max())
    s_cur = np.sin(phase)
    out = amps[0] * s_cur
    if len(amps) > 1:
        two_cos = 2 * np.cos(phase)
        s_prev = np.zeros(len(freq))
        for k, a in enumerate(amps[1:], start=2):
            if k * peak >= _fmax(sr):
                break
            s_prev, s_cur = s_cur, two_cos * s_cur - s_prev
            if a:
                out += a * s_cur
    return out


def _formant_synth(
    f0: np.ndarray,
    formants: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    tilt: float = 0.8,
    bandwidths: Sequence[float] = (90.0, 120.0, 180.0),
    gains: Sequence[float] = (1.0, 0.6, 0.3),
    ceiling: float = 4500.0,
) -> np.ndarray:
    """Additive voiced sound: harmonics of f0 weighted by formant resonances (formants [3, n]).

    Harmonic gains are computed at a 4 ms control rate and interpolated; sin(k*phase) comes from
    the Chebyshev recurrence, so the cost is a few vector ops per harmonic.
    """
    n = len(f0)
    fmax = min(ceiling, _fmax(sr))
    phase = 2 * np.pi * np.cumsum(f0) / sr + rng.uniform(0, 2 * np.pi)
    step = max(1, int(0.004 * sr))
    ctrl = np.arange(0, n + step, step)
    ctrl[-1] = n - 1
    ctrl = np.unique(np.minimum(ctrl, n - 1))
    f0c = f0[ctrl]
    fc = formants[:, ctrl]
    idx = np.arange(n)
    two_cos = 2 * np.cos(phase)
    s_prev = np.zeros(n)
    s_cur = np.sin(phase)
    out = np.zeros(n)
    for k in range(1, int(fmax / float(f0.min())) + 1):
        fk = k * f0c
        g = sum(
            gi / (1 + ((fk - fc[i]) / bw) ** 2)
            for i, (gi, bw) in enumerate(zip(gains, bandwidths, strict=True))
        )
        g = (g + 0.02) * (fk < fmax) * k**-tilt
        out += np.interp(idx, ctrl, g) * s_cur
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev
    return out


def _bandpassed_noise(
    rng: np.random.Generator, n: int, sr: int, lo: float, hi: float, order: int = 2
) -> np.ndarray:
    """White noise through a Butterworth band-pass (hi clamped below Nyquist)."""
    hi = min(hi, _fmax(sr))
    sos = signal.butter(order, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) + 1e-12


# --------------------------------------------------------------------------------------------
# Sources: the identity draws of a class renderer.


@functools.lru_cache(maxsize=1024)
def _design(seed: int, label: str, name: str) -> tuple[int, ...]:
    """Stratum of parameter `name` per source of `label` (a permutation of the strata): one
    column of the class's Latin-hypercube design for dataset `seed`."""
    key = zlib.crc32(f"{label}/{name}".encode())
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3, key]))
    return tuple(int(k) for k in rng.permutation(SOURCES_PER_CLASS))


def source_split(source: int) -> str:
    """The split whose clips use this source id."""
    return next(split for split, ids in SOURCE_SPLITS.items() if source in ids)


class _Voice:
    """Identity draws of one event. Free (source None, version 2): the whole range of every
    parameter, with exactly version 2's rng calls. Of a source: parameter `name` of [lo, hi] only
    inside the source's stratum of the class's design (a 1 / SOURCES_PER_CLASS slice of the
    range), each discrete choice fixed per source and balanced within its split."""

    def __init__(
        self, rng: np.random.Generator, label: str, source: int | None = None, seed: int = 0
    ):
        self.rng, self.label, self.source, self.seed = rng, label, source, seed

    def stratum(self, name: str, lo: float, hi: float) -> tuple[float, float]:
        """The part of [lo, hi] this voice draws parameter `name` from."""
        if self.source is None:
            return lo, hi
        k = _design(self.seed, self.label, name)[self.source]
        step = (hi - lo) / SOURCES_PER_CLASS
        return lo + k * step, lo + (k + 1) * step

    def uniform(self, name: str, lo: float, hi: float, size: int | None = None) -> Any:
        """An identity parameter drawn uniformly from this voice's stratum of [lo, hi]."""
        return self.rng.uniform(*self.stratum(name, lo, hi), size)

    def timbre(self, name: str, lo: float, hi: float, free: float) -> float:
        """A parameter version 2 held constant (`free`, no draw); a source draws it like uniform."""
        return free if self.source is None else float(self.uniform(name, lo, hi))

    def _position(self, name: str) -> float:
        """Where this source sits in (0, 1) among its split's sources, ordered by `name`'s design."""
        ids = SOURCE_SPLITS[source_split(self.source)]
        design = _design(self.seed, self.label, name)
        rank = sorted(design[i] for i in ids).index(design[self.source])
        return (rank + 0.5) / len(ids)

    def choice(self, name: str, p: float) -> bool:
        """True with probability p per event (free), or fixed per source: true for a share of
        about p of each split's sources (with p = 0.4 or 0.5, every split holds both kinds)."""
        if self.source is None:
            return bool(self.rng.random() < p)
        return self._position(name) < p

    def integers(self, name: str, k: int) -> int:
        """One of 0..k-1: per event (free), or fixed per source, spread evenly over each split."""
        if self.source is None:
            return int(self.rng.integers(k))
        return int(self._position(name) * k)


# --------------------------------------------------------------------------------------------
# Class renderers: (rng, n requested samples, sr, voice) -> samples (length about n). Identity
# parameters (what makes a source) come from voice; recording conditions (levels, phases, noise,
# placement) straight from rng.


def _alarm(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """Regular beeps of a bright tone, sometimes alternating between two pitches."""
    f0 = min(voice.uniform("pitch", 1800, 3000), 0.4 * sr)
    f1 = min(f0 * voice.uniform("second_pitch", 1.15, 1.3), 0.44 * sr)
    on, off = voice.uniform("on", 0.08, 0.22), voice.uniform("off", 0.05, 0.2)
    pulses, total = _layout(rng, n, sr, lambda i: (on, off))
    freq = np.full(total, f0)
    if voice.choice("alternating", 0.4):
        for start, length in pulses[1::2]:
            freq[start : start + length] = f1
    amps = (1.0, voice.timbre("h2", 0.1, 0.5, 0.3), voice.timbre("h3", 0.04, 0.25, 0.12))
    return _tone(freq, sr, rng, amps) * _gate(pulses, total, int(0.004 * sr))


def _bird(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """Fast high chirps: up/down sweeps and trills with irregular gaps."""
    lo, hi = min(2500.0, 0.3 * sr), min(6500.0, 0.44 * sr)
    pulses, total = _layout(
        rng, n, sr, lambda i: (voice.uniform("chirp", 0.03, 0.12), voice.uniform("gap", 0.02, 0.15))
    )
    freq = np.full(total, lo)
    amp = np.zeros(total)
    for start, length in pulses:
        u = np.arange(length) / max(1, length - 1)
        fa, fb = voice.uniform("chirp_start", lo, hi), voice.uniform("chirp_end", lo, hi)
        kind = voice.integers("kind", 3)
        if kind == 0:
            f = fa + (fb - fa) * u
        elif kind == 1:
            f = fa * (fb / fa) ** u
        else:
            centre = 0.5 * (fa + fb)
            depth = voice.uniform("trill_depth", 0.3, 1.0) * min(centre - lo, hi - centre)
            rate = voice.uniform("trill_rate", 20, 45)
            f = centre + depth * np.sin(2 * np.pi * rate * np.arange(length) / sr)
        freq[start : start + length] = f
        amp[start : start + length] = rng.uniform(0.4, 1.0) * np.sin(
            np.pi * (np.arange(length) + 1) / (length + 1)
        )
    return _tone(freq, sr, rng, (1.0, voice.timbre("h2", 0.05, 0.3, 0.15))) * amp


def _car(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """A passing car: engine harmonics and tyre noise whose pitch drops as it passes (Doppler)."""
    t = np.arange(n) / sr
    dur = n / sr
    tc, width = rng.uniform(0.35, 0.65) * dur, rng.uniform(0.1, 0.22) * dur
    v = rng.uniform(0.04, 0.1)
    doppler = 1 - v * np.tanh((t - tc) / (0.35 * width))  # 1+v approaching, 1-v receding
    edges = np.minimum(np.arange(n) + 1, n - np.arange(n)) / (0.15 * n + 1)
    passby = np.minimum(1.0, edges) / (1 + ((t - tc) / width) ** 2)  # fades in and out
    f_engine = voice.uniform("engine", 25, 45) * doppler
    rolloff = voice.timbre("rolloff", 0.6, 1.4, 1.0)  # harmonic k at k ** -rolloff
    engine = _tone(f_engine, sr, rng, [k**-rolloff for k in range(1, 17)])
    nper = 2 ** int(round(math.log2(0.032 * sr)))
    hop = nper // 4
    freqs, frames, z = signal.stft(rng.standard_normal(n), fs=sr, nperseg=nper, noverlap=nper - hop)
    centre = voice.uniform("tyre", 450, 1000) * np.interp(frames, t, doppler)
    fpos = np.maximum(freqs, 1.0)[:, None]
    mask = np.exp(-0.5 * (np.log2(fpos / centre[None, :]) / 0.7) ** 2)
    mask += 0.5 / (1 + (fpos / 250.0) ** 2)
    mask[freqs > _fmax(sr)] = 0
    _, tyre = signal.istft(z * mask, fs=sr, nperseg=nper, noverlap=nper - hop)
    tyre = np.pad(tyre, (0, max(0, n - len(tyre))))[:n]
    mix = engine / _rms(engine) * voice.uniform("engine_level", 0.3, 1.0) + tyre / _rms(tyre)
    return mix * passby


def _dog(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """Barks: short harmonic bursts with a falling pitch, formants and breathy noise."""
    pulses, total = _layout(
        rng, n, sr, lambda i: (voice.uniform("bark", 0.15, 0.3), voice.uniform("gap", 0.12, 0.4))
    )
    f0 = np.full(total, 400.0)
    env = np.zeros(total)
    for start, length in pulses:
        u = np.arange(length) / length
        f_start = voice.uniform("pitch", 350, 650)
        f0[start : start + length] = f_start * voice.uniform("fall", 0.55, 0.8) ** u
        attack = max(1, int(0.008 * sr))
        decay = np.exp(-u * voice.uniform("decay", 2.0, 4.0))
        env[start : start + length] = decay * _ramp(length, attack) * rng.uniform(0.6, 1.0)
    formants = np.array(
        [
            [voice.uniform("f1", 700, 1100)],
            [voice.uniform("f2", 1600, 2400)],
            [voice.uniform("f3", 2700, 3300)],
        ]
    ) * np.ones((1, total))
    tilt = voice.timbre("tilt", 0.3, 0.8, 0.5)
    voiced = _formant_synth(f0, formants, sr, rng, tilt=tilt, bandwidths=(150, 200, 250))
    breath = _bandpassed_noise(rng, total, sr, 600.0, 3500.0)
    breathiness = voice.uniform("breath", 0.15, 0.5)
    return (voiced / _rms(voiced) + breathiness * breath / _rms(breath)) * env


def _footsteps(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """Impulse train of heel/toe noise bursts through a low body resonance and a click resonance."""
    interval = voice.uniform("interval", 0.4, 0.65)
    burst = voice.uniform("burst", 0.01, 0.03)
    ring = 0.08
    starts = [0]
    while True:
        nxt = starts[-1] + int(interval * rng.uniform(0.92, 1.08) * sr)
        if nxt + int((burst + ring) * sr) > n:
            break
        starts.append(nxt)
    toe = voice.uniform("toe", 0.04, 0.09)
    total = starts[-1] + int((toe + burst + ring) * sr)
    excitation = np.zeros(total)
    blen = max(2, int(burst * sr))
    shape = np.exp(-np.arange(blen) / (blen / 4))
    for s in starts:
        level = rng.uniform(0.6, 1.0)
        excitation[s : s + blen] += level * shape * rng.standard_normal(blen)
        t0 = s + int(toe * sr)
        excitation[t0 : t0 + blen] += 0.5 * level * shape * rng.standard_normal(blen)
    b, a = signal.iirpeak(voice.uniform("body", 70, 180), voice.uniform("body_q", 2, 5), fs=sr)
    body = signal.lfilter(b, a, excitation)
    click_f = min(voice.uniform("click", 1500, 3500), _fmax(sr))
    b, a = signal.iirpeak(click_f, voice.uniform("click_q", 2, 4), fs=sr)
    click = signal.lfilter(b, a, excitation)
    return body / _rms(body) + voice.uniform("click_level", 0.1, 0.6) * click / _rms(click)


def _phone(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """A ringing phone: dual-tone bursts with a fast bell-like trill, single or double rings."""
    f1 = voice.uniform("tone", 700, 1300)
    f2 = f1 * voice.uniform("second_tone", 1.12, 1.35)
    trill = voice.uniform("trill", 15, 25)
    if voice.choice("single_ring", 0.5):
        on, off = voice.uniform("on", 0.4, 1.0), voice.uniform("off", 0.2, 0.5)
        pulses, total = _layout(rng, n, sr, lambda i: (on, off))
    else:
        on = voice.uniform("double_on", 0.3, 0.45)
        short = voice.uniform("double_short", 0.15, 0.25)
        long = voice.uniform("double_long", 0.6, 0.9)
        pulses, total = _layout(rng, n, sr, lambda i: (on, short if i % 2 == 0 else long))
    t = np.arange(total) / sr
    h3, level2 = voice.timbre("h3", 0.05, 0.3, 0.15), voice.timbre("second_level", 0.5, 1.0, 0.8)
    x = _tone(np.full(total, f1), sr, rng, (1.0, 0.0, h3)) + _tone(
        np.full(total, f2), sr, rng, (level2,)
    )
    am = 0.6 + 0.4 * np.sin(2 * np.pi * trill * t + rng.uniform(0, 2 * np.pi))
    return x * am * _gate(pulses, total, int(0.01 * sr))


def _siren(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """A siren: harmonic tone whose pitch wails (slow sine) or yelps (fast rising saw)."""
    t = np.arange(n) / sr
    centre = voice.uniform("centre", 650, 1000)
    depth = voice.uniform("depth", 0.2, 0.4) * centre
    start = rng.uniform(0, 2 * np.pi)
    if voice.choice("wail", 0.5):
        shape = np.sin(2 * np.pi * voice.uniform("wail_rate", 0.15, 0.5) * t + start)
    else:
        shape = signal.sawtooth(2 * np.pi * voice.uniform("yelp_rate", 2.5, 5.0) * t + start)
    b = voice.timbre("brightness", 0.6, 1.2, 1.0)  # scales harmonic k by b ** (k - 1)
    return _tone(centre + depth * shape, sr, rng, (1.0, 0.5 * b, 0.3 * b**2, 0.15 * b**3))


_VOWELS = np.array(  # F1, F2, F3 (Hz): a, e, i, o, u, ae, er
    [
        [730, 1090, 2440],
        [530, 1840, 2480],
        [270, 2290, 3010],
        [570, 840, 2410],
        [300, 870, 2240],
        [660, 1720, 2410],
        [490, 1350, 1690],
    ],
    dtype=float,
)


def _speech(rng: np.random.Generator, n: int, sr: int, voice: _Voice) -> np.ndarray:
    """Voice-like babble: gliding f0 with vibrato, vowel formants per syllable, some fricatives."""
    t = np.arange(n) / sr
    dur = n / sr
    f_base = voice.uniform("pitch", 90, 240)
    knots = np.arange(0, dur + 0.3, 0.3)
    intonation = np.interp(t, knots, rng.normal(0, 0.05, len(knots)))
    vibrato = voice.uniform("vibrato_depth", 0.01, 0.03) * np.sin(
        2 * np.pi * voice.uniform("vibrato_rate", 4, 7) * t + rng.uniform(0, 2 * np.pi)
    )
    f0 = f_base * (1 + 0.1 * (0.5 - t / dur)) * (1 + intonation) * (1 + vibrato)
    edges = [0.0]
    while edges[-1] < dur:
        edges.append(edges[-1] + voice.uniform("syllable", 0.12, 0.3))
    edges_arr = np.minimum(np.array(edges), dur)
    n_syl = len(edges_arr) - 1
    centres = 0.5 * (edges_arr[:-1] + edges_arr[1:])
    scale = voice.uniform("vowel_scale", 0.95, 1.05) * (1 + (f_base - 90) / 150 * 0.15)
    vowels = _VOWELS[rng.integers(len(_VOWELS), size=n_syl)] * scale
    formants = np.stack([np.interp(t, centres, vowels[:, i]) for i in range(3)])
    voiced = _formant_synth(f0, formants, sr, rng, tilt=voice.timbre("tilt", 0.6, 1.1, 0.8))
    syl = np.clip(np.searchsorted(edges_arr, t, side="right") - 1, 0, n_syl - 1)
    u = (t - edges_arr[syl]) / np.maximum(edges_arr[syl + 1] - edges_arr[syl], 1e-9)
    levels = rng.uniform(0.5, 1.0, n_syl)
    env = levels[syl] * (0.15 + 0.85 * np.sin(np.pi * np.clip(u, 0, 1)) ** 0.7)
    hissing = rng.random(n_syl) < 0.25
    fricative = np.where(hissing, voice.uniform("fricative", 0.2, 0.5, n_syl), 0.0)[syl]
    hiss = _bandpassed_noise(rng, n, sr, min(2500.0, 0.3 * sr), 6000.0)
    return (voiced / _rms(voiced) + fricative * hiss / _rms(hiss)) * env


@dataclass(frozen=True)
class _Spec:
    duration: tuple[float, float]  # requested duration range (s); pulse classes end on a pulse
    band: tuple[float, float]  # where most of the energy lies (Hz); the SNR is measured there
    render: Callable[[np.random.Generator, int, int, _Voice], np.ndarray]


_SPECS: dict[str, _Spec] = {
    "alarm": _Spec((0.4, 3.0), (1700.0, 4000.0), _alarm),
    "bird": _Spec((0.3, 2.5), (2300.0, 7500.0), _bird),
    "car": _Spec((2.0, 6.0), (20.0, 2000.0), _car),
    "dog": _Spec((0.2, 2.0), (300.0, 3500.0), _dog),
    "footsteps": _Spec((1.2, 5.0), (50.0, 4000.0), _footsteps),
    "phone": _Spec((1.0, 4.0), (650.0, 2000.0), _phone),
    "siren": _Spec((1.5, 6.0), (350.0, 1600.0), _siren),
    "speech": _Spec((0.6, 4.0), (100.0, 4000.0), _speech),
}

CLASSES: list[str] = sorted(_SPECS)
CLASS_BANDS: dict[str, tuple[float, float]] = {k: v.band for k, v in _SPECS.items()}
CLASS_DURATIONS: dict[str, tuple[float, float]] = {k: v.duration for k, v in _SPECS.items()}


def class_band(label: str, sample_rate: int) -> tuple[float, float]:
    """The class's characteristic band (Hz), clipped below Nyquist for this sample rate."""
    lo, hi = CLASS_BANDS[label]
    hi = min(hi, 0.5 * sample_rate)
    return min(lo, 0.5 * hi), hi


def _loudness(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A loudness envelope (flat, fade in/out, percussive decay or swell), non-zero everywhere."""
    i = np.arange(n)
    kind = rng.integers(4)
    if kind == 0:  # flat with short ramps
        attack, release = rng.uniform(0.005, 0.03) * sr, rng.uniform(0.01, 0.06) * sr
        body = np.ones(n)
    elif kind == 1:  # slow fades
        attack, release = rng.uniform(0.05, 0.25) * n, rng.uniform(0.05, 0.3) * n
        body = np.ones(n)
    elif kind == 2:  # percussive: fast attack, exponential decay to an audible end level
        attack, release = rng.uniform(0.002, 0.015) * sr, 0.01 * sr
        body = np.exp(np.log(rng.uniform(0.2, 0.6)) * i / n)
    else:  # swell
        attack, release = rng.uniform(0.25, 0.5) * n, rng.uniform(0.01, 0.05) * sr
        body = np.ones(n)
    a, r = max(1, int(attack)), max(1, int(release))
    ramp_in = np.minimum(1.0, (i + 1) / (a + 1))
    ramp_out = np.minimum(1.0, (n - i) / (r + 1))
    return body * np.minimum(ramp_in, ramp_out)


def render_event(
    label: str,
    seconds: float,
    sample_rate: int,
    rng: np.random.Generator,
    source: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """One event of `label` (about `seconds` long, shaped by a loudness envelope), unscaled.

    source: None draws the identity from the class's whole ranges (version 2); else an id in
    0..SOURCES_PER_CLASS - 1 of the class's sources under the design of dataset `seed`.
    """
    if label not in _SPECS:
        raise SyntheticError(f"unknown synthetic class {label!r}; known: {CLASSES}")
    if source is not None and source not in range(SOURCES_PER_CLASS):
        raise SyntheticError(f"source {source!r} not in 0..{SOURCES_PER_CLASS - 1}")
    voice = _Voice(rng, label, source, seed)
    x = _SPECS[label].render(rng, max(1, int(seconds * sample_rate)), sample_rate, voice)
    return x * _loudness(rng, len(x), sample_rate)


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


# --------------------------------------------------------------------------------------------
# Clips


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


def _render(split: str, index: int, params: dict[str, Any]) -> Scene:
    """One clip of the set; see render_scene."""
    sr = params["sample_rate"]
    n_clip = int(round(params["clip_seconds"] * sr))
    rng = _clip_rng(params["seed"], split, index)
    bg = _background(rng, n_clip, sr)
    lo, hi = params["events_per_clip"]
    n_events = 0 if rng.random() < params["empty_fraction"] else int(rng.integers(lo, hi + 1))
    active = np.zeros(n_clip, dtype=np.int8)
    sources: list[Source] = []
    mix = bg.copy() if params["background"] else np.zeros(n_clip)
    gap = int(0.1 * sr)
    ids = SOURCE_SPLITS[split]
    for _ in range(n_events):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        source = ids[int(rng.integers(len(ids)))] if params["sources"] else None
        spec = _SPECS[label]
        seconds = min(rng.uniform(*spec.duration), 0.9 * params["clip_seconds"])
        x = render_event(label, seconds, sr, rng, source, params["seed"])[:n_clip]
        n = len(x)
        snr = rng.uniform(*params["snr_db"])
        for _attempt in range(30):
            start = int(rng.integers(0, n_clip - n + 1))
            stop = start + n
            if active[start:stop].max(initial=0) >= params["max_polyphony"]:
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

    params are generate's (defaults from DEFAULTS); `background=False` leaves out the noise but
    keeps every event's level. Scene.sources[i].source says which source each event came from.
    """
    return _render(split, index, _check_params(params))


def render_clip(split: str, index: int, **params: Any) -> tuple[np.ndarray, pd.DataFrame]:
    """Audio (float32, before WAV quantisation) and event table of one clip, as generate writes it."""
    scene = render_scene(split, index, **params)
    return scene.audio, scene.events


# --------------------------------------------------------------------------------------------
# Parameters, writing, ensure, CLI


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Merge params into DEFAULTS and validate them; returns a JSON-comparable dict."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise SyntheticError(
            f"unknown synthetic dataset parameter(s) {unknown}; known: {sorted(DEFAULTS)}"
        )
    p = {**DEFAULTS, **params}

    def number(key: str, kind: type, lo: float, hi: float = math.inf) -> Any:
        value = p[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SyntheticError(f"synthetic dataset parameter {key}={value!r} must be a number")
        if kind is int and value != int(value):
            raise SyntheticError(f"synthetic dataset parameter {key}={value!r} must be an integer")
        if not lo <= value <= hi:
            raise SyntheticError(
                f"synthetic dataset parameter {key}={value!r} must be in [{lo}, {hi}]"
            )
        return kind(value)

    def pair(key: str, kind: type, lo: float, hi: float) -> list[Any]:
        value = p[key]
        try:
            a, b = (kind(v) for v in value)
        except (TypeError, ValueError):
            raise SyntheticError(
                f"synthetic dataset parameter {key}={value!r} must be a pair [low, high]"
            ) from None
        if not lo <= a <= b <= hi:
            raise SyntheticError(
                f"synthetic dataset parameter {key}={[a, b]} must be a pair [low, high] with "
                f"{lo} <= low <= high <= {hi}"
            )
        return [a, b]

    out = {
        "seed": number("seed", int, 0, 2**63 - 1),
        "n_train": number("n_train", int, 0),
        "n_validation": number("n_validation", int, 0),
        "n_test": number("n_test", int, 0),
        "clip_seconds": number("clip_seconds", float, 1.0, 600.0),
        "sample_rate": number("sample_rate", int, 8000, 192000),
        "snr_db": pair("snr_db", float, -30.0, 60.0),
        "events_per_clip": pair("events_per_clip", int, 0, 100),
        "empty_fraction": number("empty_fraction", float, 0.0, 1.0),
        "max_polyphony": number("max_polyphony", int, 1, 100),
        "background": p["background"],
        "sources": p["sources"],
    }
    for key in ("background", "sources"):
        if not isinstance(out[key], bool):
            raise SyntheticError(
                f"synthetic dataset parameter {key}={out[key]!r} must be true or false"
            )
    return out


def _generate_into(folder: Path, params: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Write every split of the set into `folder`; returns per-split statistics."""
    from tqdm.auto import tqdm

    sr = params["sample_rate"]
    sizes = {split: params[f"n_{split}"] for split in SPLITS}
    (folder / "metadata").mkdir(parents=True)
    stats: dict[str, Any] = {}
    with tqdm(
        total=sum(sizes.values()),
        desc="synthetic dataset",
        unit="clip",
        disable=None if progress else True,
    ) as bar:
        for split in SPLITS:
            audio_dir = folder / "audio" / split
            audio_dir.mkdir(parents=True)
            tables, names, durations, rendered_rows = [], [], [], []
            poly = np.zeros(params["max_polyphony"] + 1, dtype=np.int64)
            rendered = inaudible = 0
            for index in range(sizes[split]):
                scene = _render(split, index, params)
                name = clip_name(split, index)
                sf.write(str(audio_dir / name), scene.audio, sr, subtype=SUBTYPE)
                tables.append(scene.events)
                names.append(name)
                durations.append(len(scene.audio) / sr)
                active = np.zeros(len(scene.audio), dtype=np.int64)
                for onset, offset in zip(
                    scene.events["onset"], scene.events["offset"], strict=True
                ):
                    active[round(onset * sr) : round(offset * sr)] += 1
                poly += np.bincount(active, minlength=len(poly))[: len(poly)]
                rendered += len(scene.sources)
                inaudible += scene.heard.count(False)
                rendered_rows += [
                    (name, src.start / sr, src.stop / sr, src.label, src.source, heard)
                    for src, heard in zip(scene.sources, scene.heard, strict=True)
                ]
                bar.update()
            events = (
                pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
            )
            write_tsv(events, folder / "metadata" / f"{split}.tsv", names)
            pd.DataFrame({"filename": names, "duration": durations}).to_csv(
                folder / "metadata" / f"{split}_durations.tsv", sep="\t", index=False
            )
            counts = events["event_label"].value_counts()
            stats[split] = {
                "files": len(names),
                "files_without_events": len(set(names) - set(events["filename"])),
                "events": len(events),
                "rendered_events": rendered,
                "inaudible_events": inaudible,
                "events_per_class": {c: int(counts.get(c, 0)) for c in CLASSES},
                "polyphony_seconds": {str(k): round(int(v) / sr, 3) for k, v in enumerate(poly)},
            }
            if params["sources"]:  # every rendered event with its source (audible or not)
                columns = ["filename", "start", "stop", "event_label", "source", "heard"]
                rendered_events = pd.DataFrame(rendered_rows, columns=columns)
                rendered_events.to_csv(
                    folder / "metadata" / f"{split}_sources.tsv", sep="\t", index=False
                )
                used = rendered_events.groupby("event_label")["source"].unique()
                stats[split]["sources_per_class"] = {
                    c: sorted(int(i) for i in used.get(c, [])) for c in CLASSES
                }
    return stats


def _is_complete(root: Path) -> bool:
    """True when every split's metadata exists and every listed clip is on disk."""
    for split in SPLITS:
        durations = root / "metadata" / f"{split}_durations.tsv"
        if not (root / "metadata" / f"{split}.tsv").is_file() or not durations.is_file():
            return False
        names = pd.read_csv(durations, sep="\t", dtype={"filename": str})["filename"]
        if not all((root / "audio" / split / name).is_file() for name in names):
            return False
    return True


def _recorded_params(root: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("version") != VERSION:
        return None
    return info.get("params")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock next to root so concurrent generators do not race."""
    root.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(root.parent / f".{root.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate(root: Path, params: dict[str, Any], progress: bool) -> Path:
    """Generate into a sibling temp folder, then swap it in (never a half set at root)."""
    if root.exists() and not root.is_dir():
        raise SyntheticError(f"synthetic dataset root {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / "synthetic.json").is_file():
        raise SyntheticError(
            f"refusing to overwrite {root}: it is not empty and holds no synthetic.json "
            "(not a generated synthetic set); choose another root"
        )
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        stats = _generate_into(tmp, params, progress)
        info = {
            "generator": "sed.data.synthetic",
            "version": VERSION,
            "params": params,
            "classes": CLASSES,
            "audio": {"format": "WAV", "subtype": SUBTYPE, "peak_dbfs_max": -1.0},
            "stats": stats,
        }
        (tmp / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n")
        if root.exists():
            os.replace(root, old)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return root


def generate(
    root: str | os.PathLike[str],
    seed: int = 0,
    n_train: int = 200,
    n_validation: int = 50,
    n_test: int = 50,
    clip_seconds: float = 10.0,
    sample_rate: int = 16000,
    snr_db: Sequence[float] = (-5.0, 20.0),
    events_per_clip: Sequence[int] = (2, 6),
    empty_fraction: float = 0.04,
    max_polyphony: int = 3,
    background: bool = True,
    sources: bool = True,
    progress: bool = True,
) -> Path:
    """Write the synthetic set to root (DESIGN folder format + durations + synthetic.json).

    snr_db: per-event SNR range (dB, in the class's band vs the local background);
    events_per_clip: [min, max] events tried per clip; empty_fraction: share of clips with none;
    sources: per-split sound sources (metadata/{split}_sources.tsv lists every rendered event
    with its source); False gives version 2's set.
    """
    params = _check_params(
        {
            "seed": seed,
            "n_train": n_train,
            "n_validation": n_validation,
            "n_test": n_test,
            "clip_seconds": clip_seconds,
            "sample_rate": sample_rate,
            "snr_db": snr_db,
            "events_per_clip": events_per_clip,
            "empty_fraction": empty_fraction,
            "max_polyphony": max_polyphony,
            "background": background,
            "sources": sources,
        }
    )
    root = Path(root)
    with _locked(root):
        return _generate(root, params, progress)


def ensure(root: str | os.PathLike[str], progress: bool = True, **params: Any) -> Path:
    """Generate the set at root unless root/synthetic.json already records equal params."""
    wanted = _check_params(params)
    root = Path(root)
    with _locked(root):
        if _recorded_params(root) == wanted and _is_complete(root):
            return root
        return _generate(root, wanted, progress)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: generate the synthetic set at ROOT and say where and how long it took."""
    parser = argparse.ArgumentParser(
        prog="python -m sed.data.synthetic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "root", type=Path, help="output folder (replaced if it holds a synthetic set)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--n-train", type=int, default=DEFAULTS["n_train"])
    parser.add_argument("--n-validation", type=int, default=DEFAULTS["n_validation"])
    parser.add_argument("--n-test", type=int, default=DEFAULTS["n_test"])
    parser.add_argument("--clip-seconds", type=float, default=DEFAULTS["clip_seconds"])
    parser.add_argument("--sample-rate", type=int, default=DEFAULTS["sample_rate"])
    parser.add_argument(
        "--snr-db", type=float, nargs=2, default=DEFAULTS["snr_db"], metavar=("LOW", "HIGH")
    )
    parser.add_argument(
        "--events-per-clip",
        type=int,
        nargs=2,
        default=DEFAULTS["events_per_clip"],
        metavar=("MIN", "MAX"),
    )
    parser.add_argument("--empty-fraction", type=float, default=DEFAULTS["empty_fraction"])
    parser.add_argument("--max-polyphony", type=int, default=DEFAULTS["max_polyphony"])
    parser.add_argument(
        "--sources",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS["sources"],
        help="per-split sound sources (default); --no-sources writes the version 2 set",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        root = generate(
            args.root,
            seed=args.seed,
            n_train=args.n_train,
            n_validation=args.n_validation,
            n_test=args.n_test,
            clip_seconds=args.clip_seconds,
            sample_rate=args.sample_rate,
            snr_db=args.snr_db,
            events_per_clip=args.events_per_clip,
            empty_fraction=args.empty_fraction,
            max_polyphony=args.max_polyphony,
            sources=args.sources,
        )
    except SyntheticError as err:
        parser.error(str(err))
    elapsed = time.perf_counter() - start
    info = json.loads((root / "synthetic.json").read_text())
    files = sum(s["files"] for s in info["stats"].values())
    events = sum(s["events"] for s in info["stats"].values())
    print(f"wrote {files} clips with {events} events to {root.resolve()} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
