"""Features, targets and predictions on one frame grid: frame i covers [i*hop, (i+1)*hop).

A click (one nonzero sample) at time t0 must give its feature energy peak in the frame whose
interval holds t0, a click-like event at t0 must mark that same target frame, and a prediction
in that frame must become an event whose interval holds t0.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from sed.annotations import COLUMNS, events_to_frames
from sed.features import LogMel, num_frames
from sed.postprocess import frames_to_events

BACKENDS = ["torchlibrosa", "torchaudio"]
PARAMS = {
    "synthetic": {"sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320},
    "drossos": {
        "sample_rate": 44100,
        "n_fft": 1024,
        "win_length": 1024,
        "hop_length": 512,
        "window": "hamming",
    },
    "odd_hop": {"sample_rate": 22050, "n_fft": 1024, "win_length": 800, "hop_length": 441},
}


def click_positions(hop: int, samples: int) -> list[int]:
    """Clicks across frames and within them: first / last sample of a frame, quarter, middle.

    With an even hop a click exactly on a frame boundary is equally far from two window centres
    (a tie any centred grid has), so even hops start one sample in.
    """
    first = 0 if hop % 2 else 1
    inside = [first, hop // 4, hop // 2, 3 * hop // 4, hop - 1]
    frames = [0, 1, 7, samples // hop - 1]
    return [f * hop + d for f in frames for d in inside if f * hop + d < samples]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", PARAMS)
def test_click_peaks_in_the_frame_holding_it(name, backend):
    params = PARAMS[name]
    sr, hop = params["sample_rate"], params["hop_length"]
    samples = sr // 2 + 123  # not a multiple of the hop: a partial last frame
    logmel = LogMel(**params, backend=backend)
    positions = click_positions(hop, samples)
    clicks = torch.zeros(len(positions), samples)
    clicks[torch.arange(len(positions)), positions] = 1.0
    energy = logmel(clicks).mean(dim=2)  # [clicks, T] mean dB over the (flat) click spectrum
    assert energy.shape[1] == num_frames(samples, hop) == -(-samples // hop)
    for row, p in enumerate(positions):
        frame = p // hop  # the frame whose interval [i*hop, (i+1)*hop) holds the click
        assert int(energy[row].argmax()) == frame, f"click at sample {p}"
        t0 = p / sr
        assert frame * hop / sr <= t0 < (frame + 1) * hop / sr


@pytest.mark.parametrize("name", PARAMS)
def test_click_event_and_prediction_share_the_feature_frame(name):
    params = PARAMS[name]
    sr, hop = params["sample_rate"], params["hop_length"]
    hop_seconds, samples = hop / sr, sr // 2
    logmel = LogMel(**params)
    for p in click_positions(hop, samples):
        clip = torch.zeros(1, samples)
        clip[0, p] = 1.0
        frame = int(logmel(clip)[0].mean(dim=1).argmax())
        t0 = p / sr
        # A click-like annotated event (1 ms, shorter than half a hop) marks the same frame.
        event = pd.DataFrame([("c.wav", t0, t0 + 1e-3, "click")], columns=COLUMNS)
        targets = events_to_frames(event, num_frames(samples, hop), hop_seconds, ["click"])
        assert np.flatnonzero(targets[:, 0]).tolist() == [frame], f"click at sample {p}"
        # A prediction in that frame becomes an event whose interval holds the click.
        probs = np.zeros((num_frames(samples, hop), 1), dtype=np.float32)
        probs[frame] = 1.0
        (onset, offset) = frames_to_events(probs, hop_seconds, ["click"])[["onset", "offset"]].iloc[
            0
        ]
        assert onset <= t0 < offset


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", PARAMS)
def test_feature_window_of_frame_i_is_centred_on_its_interval(name, backend):
    # Scan a click over frame 3's neighbourhood: frame 3 responds most where its window peaks.
    params = PARAMS[name]
    hop = params["hop_length"]
    positions = np.arange(2 * hop, 5 * hop)
    clicks = torch.zeros(len(positions), 8 * hop)
    clicks[torch.arange(len(positions)), torch.from_numpy(positions)] = 1.0
    response = LogMel(**params, backend=backend)(clicks)[:, 3].mean(dim=1)
    assert positions[int(response.argmax())] == 3 * hop + hop // 2  # (3 + 0.5) * hop


def test_targets_are_decided_at_the_feature_window_centres():
    # Target frame i is active iff the event covers (i + 0.5) * hop: where feature frame i is
    # centred (measured above), so a label always describes the middle of its feature window.
    params = PARAMS["synthetic"]
    sr, hop = params["sample_rate"], params["hop_length"]
    frames = num_frames(3 * sr, hop)
    centres = (np.arange(frames) * hop + hop // 2) / sr
    rng = np.random.default_rng(0)
    for _ in range(50):
        onset = rng.uniform(0, 2.5)
        offset = onset + rng.uniform(0.05, 0.5)
        event = pd.DataFrame([("n.wav", onset, offset, "noise")], columns=COLUMNS)
        active = events_to_frames(event, frames, hop / sr, ["noise"])[:, 0].astype(bool)
        np.testing.assert_array_equal(active, (centres >= onset) & (centres < offset))
