"""Tests for sed.features: LogMel against librosa, per-clip independence, cache, Normalizer."""

import errno
import json
import os
import re

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

import sed.features as features_module
from sed.audio import AudioError, load_audio
from sed.features import FEATURE_VERSION, FeatureCache, LogMel, Normalizer, num_frames

SYNTHETIC = {"sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320}
DROSSOS = {
    "sample_rate": 44100,
    "n_fft": 1024,
    "win_length": 1024,
    "hop_length": 512,
    "window": "hamming",
}
# An odd hop: frame i is centred on sample i*hop + hop//2, half a sample before (i + 0.5) * hop.
ODD_HOP = {"sample_rate": 22050, "n_fft": 1024, "win_length": 800, "hop_length": 441}
BACKENDS = ["torchlibrosa", "torchaudio"]


def signal(sample_rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Noise plus two tones, one switching on half-way: a spectrum with structure in time and frequency."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    y = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440 * t)
    y += 0.2 * np.sin(2 * np.pi * 3000 * t) * (t > seconds / 2)
    return y.astype(np.float32)


def grid_pad(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The documented grid by hand: window i centred on sample i*hop + hop//2, ceil(N/hop) frames."""
    frames = -(-y.size // hop)
    left = n_fft // 2 - hop // 2
    right = (frames - 1) * hop + n_fft - left - y.size
    return np.pad(y, (left, right))  # zeros: silence outside the file


def librosa_logmel(y: np.ndarray, params: dict) -> np.ndarray:
    """Reference: librosa's power mel spectrogram of the grid-padded signal, in dB; [T, n_mels]."""
    mel = librosa.feature.melspectrogram(
        y=grid_pad(y.astype(np.float64), params["n_fft"], params["hop_length"]),
        sr=params["sample_rate"],
        n_fft=params["n_fft"],
        hop_length=params["hop_length"],
        win_length=params["win_length"],
        window=params.get("window", "hann"),
        center=False,
        power=2.0,
        n_mels=40,
    )
    return 10 * np.log10(np.maximum(1e-10, mel)).T


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "params", [SYNTHETIC, DROSSOS, ODD_HOP], ids=["synthetic", "drossos", "odd_hop"]
)
def test_logmel_matches_librosa(params, backend):
    y = signal(params["sample_rate"], 2.0)
    ours = LogMel(**params, n_mels=40, backend=backend)(torch.from_numpy(y)[None])[0].numpy()
    ref = librosa_logmel(y, params)
    assert ours.shape == ref.shape == (num_frames(y.size, params["hop_length"]), 40)
    # float32 STFT (and torchaudio's own float32 slaney filters) against librosa's float64 STFT:
    # measured < 2e-4 dB on this 45 dB-range signal; a wrong window, padding, scale or norm is
    # off by tenths of a dB or more.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)


def test_logmel_float64_matches_librosa_tightly():
    y = signal(16000, 1.0)
    ours = LogMel(**SYNTHETIC).double()(torch.from_numpy(y.astype(np.float64))[None])[0].numpy()
    # Only the float32-stored DFT and filter weights differ from librosa here (measured ~1e-6 dB).
    np.testing.assert_allclose(ours, librosa_logmel(y, SYNTHETIC), rtol=0, atol=2e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("samples", [1, 100, 319, 320, 321, 600, 1500, 16000, 16001])
def test_frame_count(backend, samples):
    out = LogMel(**SYNTHETIC, backend=backend)(torch.ones(2, samples))
    assert out.shape == (2, -(-samples // 320), 40) == (2, num_frames(samples, 320), 40)
    assert torch.isfinite(out).all()


def test_short_clip_matches_librosa():
    # Shorter than n_fft: most of every window is padding, and it must be zeros.
    y = signal(16000, 0.02)
    ours = LogMel(**SYNTHETIC).double()(torch.from_numpy(y.astype(np.float64))[None])[0].numpy()
    np.testing.assert_allclose(ours, librosa_logmel(y, SYNTHETIC), rtol=0, atol=1e-3)


def quiet_and_loud() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(1)
    quiet = 1e-3 * rng.standard_normal(16000)
    quiet[4000:8000] = 0  # digital silence: -100 dB, far below any batch-wide top_db floor
    loud = 10 * rng.standard_normal(16000)
    return torch.tensor(quiet, dtype=torch.float32), torch.tensor(loud, dtype=torch.float32)


@pytest.mark.parametrize("top_db", [None, 40.0])
@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_features_do_not_depend_on_batch(backend, top_db):
    quiet, loud = quiet_and_loud()
    logmel = LogMel(**SYNTHETIC, backend=backend, top_db=top_db)
    alone = logmel(quiet[None])[0]
    in_batch = logmel(torch.stack([loud, quiet, loud]))[1]
    # A batch-wide clamp (torchlibrosa's, torchaudio's 3-D top_db) moves the silent frames by
    # tens of dB; batched convolution alone may
    # differ from the single-clip one in the last float32 bits (measured 8e-6 dB).
    torch.testing.assert_close(in_batch, alone, rtol=0, atol=1e-4)
    if top_db is not None:
        assert alone.max() - alone.min() <= top_db + 1e-4
        assert alone.min() > -100 + 1  # the per-clip floor did clamp the silence


def test_backends_agree():
    y = torch.from_numpy(signal(44100, 1.0))[None]
    a = LogMel(**DROSSOS, backend="torchlibrosa")(y)
    b = LogMel(**DROSSOS, backend="torchaudio")(y)
    assert a.shape == b.shape
    # Same slaney filters and framing; only float32 rounding (measured < 2e-4 dB) differs.
    torch.testing.assert_close(a, b, rtol=0, atol=1e-3)


def test_params_roundtrip_and_no_state():
    logmel = LogMel(**DROSSOS, n_mels=32, fmin=50, backend="torchaudio", top_db=90)
    params = logmel.params
    assert params["fmax"] == 22050.0 and params["window"] == "hamming" and params["n_mels"] == 32
    assert json.loads(json.dumps(params)) == params
    assert LogMel(**params).params == params
    # Constants are non-persistent buffers: nothing to train, nothing in checkpoints.
    assert list(logmel.parameters()) == [] and len(logmel.state_dict()) == 0
    assert len(list(logmel.buffers())) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_buffers_follow_module(backend):
    logmel = LogMel(**SYNTHETIC, backend=backend).double()
    assert all(b.dtype == torch.float64 for b in logmel.buffers())
    out = logmel(torch.from_numpy(signal(16000, 0.1))[None])  # float32 input is cast to the module
    assert out.dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_matches_cpu(backend):
    y = torch.from_numpy(signal(16000, 2.0))[None]
    logmel = LogMel(**SYNTHETIC, backend=backend)
    cpu = logmel(y)
    gpu = logmel.to("cuda")(y.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-2)


def test_long_input_chunking_is_exact(monkeypatch):
    y = torch.from_numpy(np.stack([signal(16000, 3.0, seed=s) for s in range(2)]))
    logmel = LogMel(**SYNTHETIC)
    whole = logmel(y)
    monkeypatch.setattr(features_module, "_CHUNK_FRAMES", 50)  # 25 frames per call for 2 clips
    chunked = logmel(y)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"hop_length": 0}, "hop_length"),
        ({"hop_length": 2048}, "hop_length"),
        ({"win_length": 2048}, "win_length"),
        ({"fmax": 9000.0}, "fmax"),
        ({"n_mels": 0}, "n_mels"),
        ({"n_fft": 1023}, "n_fft"),
        ({"fmin": 8000.0}, "fmin"),
        ({"window": "no-such-window"}, "window"),
        ({"backend": "librosa"}, "backend"),
        ({"sample_rate": 16000.5}, "sample_rate"),
        ({"top_db": -1.0}, "top_db"),
    ],
)
def test_invalid_params_name_the_key(change, key):
    with pytest.raises(ValueError, match=key):
        LogMel(**{**SYNTHETIC, **change})


def test_waveform_must_be_batched():
    with pytest.raises(ValueError, match="batch"):
        LogMel(**SYNTHETIC)(torch.zeros(1000))


def write_wav(path, seed=0, seconds=1.0, sample_rate=16000):
    sf.write(path, signal(sample_rate, seconds, seed), sample_rate, subtype="FLOAT")
    return path


def test_cache_reuses_and_matches_direct_extraction(tmp_path, monkeypatch):
    wav = write_wav(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC))
    first = cache.get(wav)
    monkeypatch.chdir(tmp_path)
    second = cache.get("a.wav")  # relative path to the same file: same key
    assert (cache.computed, cache.reused) == (1, 1)
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and first.shape == (num_frames(16000, 320), 40)
    direct = LogMel(**SYNTHETIC)(torch.from_numpy(load_audio(wav, 16000))[None])[0].numpy()
    np.testing.assert_array_equal(first, direct)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".npy"]  # no temp files left


def test_cache_invalidated_by_parameter_change(tmp_path):
    wav = write_wav(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC))
    cache.get(wav)
    other = FeatureCache(tmp_path / "cache", LogMel(**{**SYNTHETIC, "hop_length": 160}))
    assert other.key(wav) != cache.key(wav)
    assert other.get(wav).shape[0] == num_frames(16000, 160)
    assert other.computed == 1
    windowed = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC, window="hamming"))
    windowed.get(wav)
    assert windowed.computed == 1
    cache.get(wav)  # the original parameters still hit their own entry
    assert (cache.computed, cache.reused) == (1, 1)


def test_cache_key_includes_version(tmp_path, monkeypatch):
    wav = write_wav(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC))
    key = cache.key(wav)
    monkeypatch.setattr(features_module, "FEATURE_VERSION", FEATURE_VERSION + 1)
    assert cache.key(wav) != key


def test_cache_invalidated_by_changed_file(tmp_path):
    wav = write_wav(tmp_path / "a.wav", seed=0)
    cache = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC))
    before = cache.get(wav)
    mtime = os.stat(wav).st_mtime_ns
    write_wav(wav, seed=1)  # same size, different samples
    os.utime(wav, ns=(mtime + 2_000_000_000, mtime + 2_000_000_000))
    after = cache.get(wav)
    assert cache.computed == 2 and cache.reused == 0
    assert not np.allclose(before, after)
    cache.get(wav)
    assert (cache.computed, cache.reused) == (2, 1)


def test_cache_folder_that_cannot_be_made_falls_back_to_computing(tmp_path, caplog):
    wav = write_wav(tmp_path / "a.wav")
    (tmp_path / "file").write_text("")
    cache = FeatureCache(tmp_path / "file" / "cache", LogMel(**SYNTHETIC))
    with caplog.at_level("WARNING", logger="sed.features"):
        features = cache.extract([wav, wav])
    np.testing.assert_array_equal(features[0], cache.compute(wav))
    assert (cache.computed, cache.reused, cache.writable) == (2, 0, False)
    assert len(caplog.records) == 1  # one warning, not one per file
    assert re.search(
        r"feature cache .*/file/cache cannot be written \(Not a directory\): features are "
        r"computed without being stored; give a writable folder with paths\.cache_dir=DIR",
        caplog.text,
    )


def test_read_only_cache_is_still_read(tmp_path, monkeypatch, caplog):
    a, b = write_wav(tmp_path / "a.wav", seed=0), write_wav(tmp_path / "b.wav", seed=1)
    FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC)).get(a)
    cache = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC))

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(np, "save", read_only)
    with caplog.at_level("WARNING", logger="sed.features"):
        cache.extract([a, b, b])
    assert (cache.computed, cache.reused, cache.writable) == (2, 1, False)
    assert "(Read-only file system)" in caplog.text and len(caplog.records) == 1
    assert len(list((tmp_path / "cache").iterdir())) == 1  # a's entry, no temporary file


def test_corrupted_cache_file_is_recomputed(tmp_path):
    wav = write_wav(tmp_path / "a.wav")
    cache = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC))
    good = cache.get(wav)
    cache.path_for(wav).write_bytes(b"\x93NUMPY garbage")
    again = cache.get(wav)
    assert cache.computed == 2
    np.testing.assert_array_equal(again, good)
    assert cache.get(wav) is not None and cache.reused == 1


def test_extract_in_order_with_errors_naming_the_file(tmp_path):
    paths = [write_wav(tmp_path / f"{i}.wav", seed=i, seconds=0.5 + i / 10) for i in range(3)]
    cache = FeatureCache(tmp_path / "cache", LogMel(**SYNTHETIC))
    feats = cache.extract(paths, progress=False)
    assert [f.shape[0] for f in feats] == [
        num_frames(int(16000 * (0.5 + i / 10)), 320) for i in range(3)
    ]
    assert cache.computed == 3
    with pytest.raises(AudioError, match="missing.wav"):
        cache.get(tmp_path / "missing.wav")


def test_normalizer_maths():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(loc=[0, 5, -3], scale=[1, 2, 0.5], size=(n, 3)) for n in (1, 7, 100, 33)]
    norm = Normalizer().fit(arrays)
    stacked = np.concatenate(arrays)
    np.testing.assert_allclose(norm.mean, stacked.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.std, stacked.std(axis=0), rtol=1e-12)
    out = norm(stacked.astype(np.float32))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-5)
    tensor = norm(torch.from_numpy(stacked.astype(np.float32)))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), out, atol=1e-6)


def test_normalizer_is_numerically_stable():
    # float32 features with a large offset: a naive float32 sum of squares loses the variance.
    rng = np.random.default_rng(0)
    arrays = [(1e4 + rng.standard_normal((1000, 2))).astype(np.float32) for _ in range(50)]
    exact = np.concatenate(arrays).astype(np.float64)
    norm = Normalizer().fit(arrays)
    np.testing.assert_allclose(norm.std, exact.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(norm.mean, exact.mean(axis=0), rtol=1e-12)


def test_normalizer_std_floor_and_errors():
    norm = Normalizer(min_std=0.5).fit([np.full((10, 2), -100.0), np.full((5, 2), -100.0)])
    np.testing.assert_array_equal(norm.std, [0.5, 0.5])
    assert np.isfinite(norm(np.zeros((1, 2)))).all()
    with pytest.raises(ValueError, match="not fitted"):
        Normalizer()(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="item 1"):
        Normalizer().fit([np.zeros((3, 2)), np.zeros((3, 4))])
    with pytest.raises(ValueError, match="no frames"):
        Normalizer().fit([])
    with pytest.raises(ValueError, match="bands"):
        norm(np.zeros((4, 3)))


def test_normalizer_roundtrip_through_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    norm = Normalizer().fit([rng.standard_normal((20, 4)) * 3 + 1])
    torch.save({"normalizer": norm.state_dict()}, tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["normalizer"]
    restored = Normalizer.from_state_dict(state)
    np.testing.assert_array_equal(restored.mean, norm.mean)
    np.testing.assert_array_equal(restored.std, norm.std)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_array_equal(restored(x), norm(x))
    as_tensors = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in state.items()}
    np.testing.assert_allclose(Normalizer.from_state_dict(as_tensors).mean, norm.mean)
