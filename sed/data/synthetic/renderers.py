"""The eight class renderers of the synthetic set, their specs (duration, band) and render_event.

A renderer is (rng, n requested samples, sr, voice) -> samples (length about n): identity
parameters (what makes a source) come from the voice (sed.data.synthetic.sources), recording
conditions (levels, phases, noise, placement) straight from rng. render_event shapes one
rendered event with a loudness envelope.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

from sed.data.synthetic.signals import (
    _bandpassed_noise,
    _fmax,
    _formant_synth,
    _gate,
    _layout,
    _ramp,
    _rms,
    _tone,
)
from sed.data.synthetic.sources import SOURCES_PER_CLASS, _Voice
from sed.errors import SyntheticError


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
