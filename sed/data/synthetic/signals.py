"""Signal helpers of the synthetic generator's class renderers (pulse layouts, gates, tones).

Every renderer (sed.data.synthetic.renderers) returns float64 samples whose first and last
samples are non-zero, so an event's rendered extent (Source.start .. Source.stop) is exactly its
sound; these helpers keep to that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import signal


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
