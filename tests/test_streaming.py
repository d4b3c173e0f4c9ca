"""Streaming prediction: a long file run chunk by chunk (audio, features, conv context, GRU state)
gives the probabilities of one pass over it, including across chunk boundaries inside events."""

from __future__ import annotations

import gc
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from sed.audio import load_audio, open_audio
from sed.checkpoints import model_spec, save_checkpoint
from sed.features import LogMel, Normalizer
from sed.inference import ConfigError, TrainedModel
from sed.models.crnn import CRNN, CRNNConfigError
from sed.postprocess import PostProcessing
from sed.predict import PredictionError, predict

CLASSES = ["beep", "hum", "noise"]


def model(seed: int = 0, dtype=torch.float32, **kw) -> CRNN:
    """Random weights with batch-norm statistics (so wrong context or padding would show) and
    output biases that make the fed-back labels a mix of 0 and 1."""
    torch.manual_seed(seed)
    params = dict(n_mels=16, num_classes=3, channels=4, pool_sizes=[2, 2, 2], hidden=8)
    m = CRNN(**{**params, **kw}).to(dtype)
    with torch.no_grad():
        for module in m.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        m.fc.bias.copy_(torch.tensor([0.3, -0.2, 0.0], dtype=dtype))
    return m.eval()


def event_boundaries(probs: np.ndarray) -> list[int]:
    """Frames t where some class is detected at both t - 1 and t (an event spans t - 1 | t)."""
    on = probs > 0.5
    return np.flatnonzero((on[1:] & on[:-1]).any(axis=1)) + 1


@pytest.mark.parametrize(("label_feedback", "lookahead"), [(True, 0), (False, 0), (True, 4)])
def test_chunks_with_context_and_state_equal_one_forward_pass(label_feedback, lookahead):
    m = model(dtype=torch.float64, label_feedback=label_feedback, lookahead=lookahead)
    x = torch.randn(2, 150, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        whole = m(x)
    probs = torch.sigmoid(whole)[0].numpy()
    r = m.receptive_field_radius
    assert r == 6 + lookahead
    # Boundaries inside events (the fed-back label of the chunk's first frame is 1), one right
    # after the first frame, and chunks shorter than the receptive field.
    inside = [t for t in event_boundaries(probs) if 10 <= t <= 140]
    assert len(inside) >= 2
    bounds = sorted({0, 1, int(inside[0]), int(inside[-1]), 70, 73, 150})
    pieces, state = [], None
    for a, b in zip(bounds, bounds[1:], strict=False):
        fa, fb = max(0, a - r), min(150, b + r)
        logits, state = m.stream(x[:, fa:fb], state, context=(a - fa, fb - b))
        assert logits.shape == (2, b - a, 3) and state.shape == (2, 8)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-10, atol=1e-10)
    # Too little context does change the result: the context is needed, not decoration.
    fa = inside[0] - r + 1
    short, _ = m.stream(x[:, fa : inside[0] + 20], None, context=(r - 1, 0))
    assert not torch.allclose(short[:, 0], whole[:, inside[0]])


def test_stream_refuses_training_mode_and_bad_context():
    m = model()
    x = torch.randn(1, 20, 16)
    with pytest.raises(CRNNConfigError, match="context"):
        m.stream(x, None, context=(10, 10))
    with pytest.raises(CRNNConfigError, match="eval mode"):
        m.train().stream(x)


def trained_model(lookahead: int = 0, **logmel) -> TrainedModel:
    params = dict(sample_rate=16000, n_fft=1024, win_length=640, hop_length=320, n_mels=16)
    return TrainedModel(
        model=model(lookahead=lookahead),
        logmel=LogMel(**{**params, **logmel}).eval(),
        normalizer=Normalizer(mean=np.full(16, -40.0), std=np.full(16, 20.0)),
        classes=CLASSES,
        postprocessing=PostProcessing(),
        config_yaml="",
        epoch=0,
    )


def recording(path: Path, rate: int, seconds: float) -> Path:
    """Beeps, a hum that comes and goes, and noise, at `rate` (resampled when read)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    beeps = (np.sin(2 * np.pi * 0.7 * t) > 0.3) * np.sin(2 * np.pi * 1000 * t)
    hum = (np.sin(2 * np.pi * 0.23 * t) > 0) * np.sin(2 * np.pi * 150 * t)
    audio = 0.3 * beeps + 0.3 * hum + 0.02 * rng.standard_normal(t.size)
    sf.write(path, audio.astype(np.float32), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    ("rate", "chunk", "lookahead"),
    [(16000, 97, 0), (22050, 160, 0), (16000, 1, 0), (16000, 97, 10)],
)
def test_streamed_file_equals_the_whole_file_pass(tmp_path, rate, chunk, lookahead):
    trained = trained_model(lookahead)
    path = recording(tmp_path / "long.wav", rate, 9.3)
    whole = trained.predict([trained.features(load_audio(path, 16000))], ["f"])["f"]
    with open_audio(path, 16000) as reader:
        streamed = trained.stream(reader, chunk)
    assert streamed.shape == whole.shape == (-(-reader.num_samples // 320), 3)
    boundaries = np.arange(chunk, len(whole), chunk)
    assert len(np.intersect1d(boundaries, event_boundaries(whole))) > 0  # events span chunks
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-5)


def test_per_file_top_db_cannot_stream():
    trained = trained_model(top_db=80.0)
    assert not trained.streams
    with pytest.raises(ConfigError, match="top_db"):
        trained.stream(None, 10)


NUMPY_DOMAIN = 389047  # the tracemalloc domain of numpy's data buffers (NPY_TRACE_DOMAIN)


class CountingReader:
    """An AudioReader that notes, at the reads (the chunks' starts) numbered in `at`, how many
    torch tensors are alive and how many bytes of numpy buffers (traced by tracemalloc in their
    own domain)."""

    def __init__(self, reader, at: tuple[int, ...]):
        self.reader, self.num_samples, self.at = reader, reader.num_samples, at
        self.reads, self.counts = 0, []

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.reads in self.at:
            tensors = Counter(map(type, gc.get_objects()))[torch.Tensor]
            snapshot = tracemalloc.take_snapshot()
            numpy = snapshot.filter_traces([tracemalloc.DomainFilter(True, NUMPY_DOMAIN)])
            self.counts.append((tensors, sum(t.size for t in numpy.traces)))
        self.reads += 1
        return self.reader.read(start, stop)


def test_stream_keeps_no_per_chunk_arrays_and_writes_into_out(tmp_path):
    """Per-chunk arrays kept to the end (a list of them concatenated) made streaming memory grow
    with the recording (issue 22): no tensor or numpy buffer may outlive its chunk, and the
    probabilities go straight into `out` (a memory-mapped .npy here, as sed.predict gives)."""
    trained = trained_model()
    path = recording(tmp_path / "long.wav", 22050, 4.2)
    whole = trained.predict([trained.features(load_audio(path, 16000))], ["f"])["f"]
    out = np.lib.format.open_memmap(tmp_path / "p.npy", "w+", np.float32, whole.shape)
    chunks = -(-len(whole) // 10)
    assert chunks >= 20
    tracemalloc.start()
    try:
        with open_audio(path, 16000) as reader:
            assert trained.stream_shape(reader.num_samples) == whole.shape
            # from the second chunk on (the GRU state exists) to the last
            counting = CountingReader(reader, at=(1, chunks - 1))
            result = trained.stream(counting, 10, out=out)
    finally:
        tracemalloc.stop()
    assert counting.reads == chunks
    # Flat: a kept [10, 3] array per chunk would add a tensor, or 120 bytes of numpy buffers,
    # per chunk.
    (tensors, numpy_bytes), (tensors_end, numpy_bytes_end) = counting.counts
    assert tensors_end - tensors <= 2, (tensors, tensors_end)
    assert numpy_bytes_end - numpy_bytes < 600, (numpy_bytes, numpy_bytes_end)
    assert result is out
    out.flush()
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), whole, rtol=0, atol=1e-5)
    with open_audio(path, 16000) as reader, pytest.raises(ValueError, match="float32"):
        trained.stream(reader, 10, out=np.zeros(whole.shape))


def checkpoint(path: Path, trained: TrainedModel) -> Path:
    """`trained` saved as sed.train saves a run's checkpoint (the fields load_trained reads)."""
    kwargs = dict(n_mels=16, num_classes=3, channels=4, pool_sizes=[2, 2, 2], hidden=8)
    save_checkpoint(
        {
            "model_spec": model_spec("sed.models.crnn.CRNN", kwargs),
            "model": trained.model.state_dict(),
            "features": trained.logmel.params,
            "classes": trained.classes,
            "normalizer": trained.normalizer.state_dict(),
            "postprocess": trained.postprocessing.to_dict(),
            "config_yaml": "",
        },
        path,
    )
    return path


def test_predict_writes_streamed_probabilities_as_they_come(tmp_path):
    """sed.predict streams into the .npy it saves (a memory map renamed at the end): the same
    events and probabilities as one pass; a file that fails mid-stream leaves no file behind."""
    ckpt = checkpoint(tmp_path / "model.pt", trained_model())
    audio = tmp_path / "audio"
    audio.mkdir()
    recording(audio / "a.wav", 22050, 5.1)
    broken = recording(audio / "b.wav", 16000, 4.0)
    samples, rate = sf.read(broken, dtype="float32")
    samples[3 * rate] = np.nan  # read in the chunk after the first few: fails mid-stream
    sf.write(broken, samples, rate, subtype="FLOAT")
    cfg = OmegaConf.load(Path(__file__).parents[1] / "configs" / "predict.yaml")
    del cfg["hydra"]
    runs = {}
    for key, seconds in (("one_pass", None), ("streamed", 0.5)):
        output = tmp_path / key / "events.tsv"
        run = OmegaConf.merge(cfg, dict(checkpoint=str(ckpt), input=str(audio), device="cpu",
                                        output=str(output), save_probabilities=True,
                                        chunk_seconds=seconds))  # fmt: skip
        with pytest.raises(PredictionError, match="b.wav.*NaN"):
            predict(run)
        folder = output.with_name("events_probabilities")
        assert sorted(p.name for p in folder.iterdir()) == ["a.wav.npy", "classes.txt"]
        runs[key] = output.read_text(), np.load(folder / "a.wav.npy")
    (events, probs), (streamed_events, streamed_probs) = runs.values()
    assert streamed_events == events and events.count("\n") > 2
    np.testing.assert_allclose(streamed_probs, probs, rtol=0, atol=1e-5)
