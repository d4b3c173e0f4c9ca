"""sed.audio: mono float32 at the configured rate, and a clear AudioError for each bad file."""

import re

import numpy as np
import pytest
import soundfile as sf

from sed.audio import AUDIO_EXTENSIONS, AudioError, audio_duration, load_audio, open_audio


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def test_resampling_keeps_a_tones_frequency(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(1000.0, 44100), 44100, subtype="FLOAT")
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 16000
    assert peak_frequency(audio, 16000) == pytest.approx(1000.0, abs=2.0)
    rms = np.sqrt(np.mean(audio[1000:-1000] ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_native_rate_when_no_rate_is_given(tmp_path):
    path = tmp_path / "tone.flac"
    sf.write(path, tone(440.0, 22050), 22050)
    audio = load_audio(path)
    assert len(audio) == 22050
    assert peak_frequency(audio, 22050) == pytest.approx(440.0, abs=2.0)
    assert audio_duration(path) == pytest.approx(1.0)


def test_stereo_is_mixed_down_by_mean(tmp_path):
    left, right = tone(300.0, 8000), tone(1700.0, 8000) * 0.25
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, 8000), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_common_formats_read(tmp_path, suffix):
    assert suffix in AUDIO_EXTENSIONS
    path = tmp_path / f"tone{suffix}"
    sf.write(path, tone(500.0, 16000, 0.5), 16000)
    audio = load_audio(path, 16000)
    assert len(audio) == 8000
    assert peak_frequency(audio, 16000) == pytest.approx(500.0, abs=4.0)


def write_truncated(path):
    sf.write(path, tone(440.0, 16000), 16000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_nan(path):
    samples = tone(440.0, 16000, 0.1)
    samples[100] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")


BAD_FILES = {
    "missing": (lambda path: None, "not found"),
    "garbage": (lambda path: path.write_bytes(b"this is not audio at all" * 40), "cannot read"),
    "truncated": (write_truncated, "truncated"),
    "empty": (lambda path: sf.write(path, np.zeros(0, np.float32), 16000), "no samples"),
    "nan": (write_nan, "NaN"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_audio_raises_a_clear_error_naming_the_file(tmp_path, case):
    write, message = BAD_FILES[case]
    path = tmp_path / f"{case}.wav"
    write(path)
    with pytest.raises(AudioError, match=message) as caught:
        load_audio(path, 16000)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "empty"])
def test_audio_duration_rejects_bad_files(tmp_path, case):
    write, message = BAD_FILES[case]
    path = tmp_path / f"{case}.wav"
    write(path)
    with pytest.raises(AudioError, match=message):
        audio_duration(path)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16k"])
def test_invalid_sample_rate_names_the_value(tmp_path, rate):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440.0, 16000, 0.1), 16000)
    with pytest.raises(AudioError, match=re.escape(f"sample_rate={rate!r}")):
        load_audio(path, rate)


def test_audio_error_is_a_value_error():
    assert issubclass(AudioError, ValueError)


@pytest.mark.parametrize(("native", "rate"), [(16000, 16000), (44100, 16000), (22050, 16000),
                                              (8000, 16000), (48000, 44100)])  # fmt: skip
def test_spans_equal_the_whole_file(tmp_path, native, rate):
    """Spans read (and resampled) on their own equal the whole file's samples, at every edge."""
    rng = np.random.default_rng(native)
    path = tmp_path / "noise.wav"
    stereo = rng.uniform(-0.5, 0.5, (int(native * 1.3) + 7, 2)).astype(np.float32)
    sf.write(path, stereo, native, subtype="FLOAT")
    whole = load_audio(path, rate)
    with open_audio(path, rate) as reader:
        assert reader.num_samples == len(whole)
        bounds = [0, 1, 157, 3000, 9999, len(whole) // 2, len(whole) - 5, len(whole)]
        pieces = [reader.read(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
        for a, b in ((-10, 40), (len(whole) - 3, len(whole) + 100), (50, 50)):
            np.testing.assert_array_equal(reader.read(a, b).shape, whole[max(a, 0) : b].shape)
    joined = np.concatenate(pieces)
    assert joined.dtype == np.float32
    if native == rate:
        np.testing.assert_array_equal(joined, whole)
    else:
        np.testing.assert_allclose(joined, whole, rtol=0, atol=1e-6)


def test_reader_names_a_bad_file(tmp_path):
    path = tmp_path / "bad.wav"
    sf.write(path, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    with open_audio(path, 16000) as reader:
        reader.read(0, 1)
        with pytest.raises(AudioError, match="bad.wav.*NaN"):
            reader.read(0, 300)
    with pytest.raises(AudioError, match="sample_rate"):
        with open_audio(path, 0):
            pass
