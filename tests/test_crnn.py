"""CRNN with label feedback: the function it computes, causality, and equal loops."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sed.models import CRNN, recurrence
from sed.models.crnn import CRNNConfigError, forcing_mask

B, T, M, C = 3, 24, 40, 3
CPU_LOOPS = ["eager", "hoisted"]
CUDA = torch.cuda.is_available()


def make_model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    params = dict(n_mels=M, num_classes=C, channels=4, hidden=8, dropout=0.0)
    params.update(kw)
    model = CRNN(**params).to(dtype)
    with torch.no_grad():  # spread the logits around 0 so fed-back labels are mixed 0/1
        model.fc.bias.uniform_(-0.5, 0.5)
    return model.eval()


def make_data(seed=1, dtype=torch.float64, b=B, t=T):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, M, generator=g, dtype=dtype)
    y = (torch.rand(b, t, C, generator=g) < 0.4).to(dtype)
    return x, y


def gen(seed=123):
    return torch.Generator().manual_seed(seed)


def shift(y):
    out = torch.zeros_like(y)
    out[:, 1:] = y[:, :-1]
    return out


def grads(model, *tensors):
    return [p.grad.clone() for p in model.parameters()] + [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("loop", CPU_LOOPS)
@pytest.mark.parametrize("grad", [False, True])  # hoisted: fused GRU without gradients
def test_full_teacher_forcing_is_a_plain_gru(loop, grad):
    model = make_model(loop=loop)
    gru = nn.GRU(model.feature_size + C, model.hidden, batch_first=True).double()
    with torch.no_grad():  # copy nn.GRU's weights into the GRUCell
        model.cell.weight_ih.copy_(gru.weight_ih_l0)
        model.cell.weight_hh.copy_(gru.weight_hh_l0)
        model.cell.bias_ih.copy_(gru.bias_ih_l0)
        model.cell.bias_hh.copy_(gru.bias_hh_l0)
    x, y = make_data()
    with torch.set_grad_enabled(grad):
        out = model(x, y, p_tf=1.0)
    with torch.no_grad():
        hidden, _ = gru(torch.cat([model.encode(x), shift(y)], dim=-1))
        expected = model.fc(hidden)
    assert out.requires_grad == grad
    torch.testing.assert_close(out.detach(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("loop", CPU_LOOPS)
def test_free_running_ignores_targets(loop):
    model = make_model(loop=loop)
    x, y = make_data()
    y2 = 1 - y
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(model(x, y, 0.0), ref, rtol=0, atol=0)
        torch.testing.assert_close(model(x, y2, 0.0, gen()), ref, rtol=0, atol=0)
        # sanity: with teacher forcing the targets do matter
        assert not torch.allclose(model(x, y, 0.5, gen()), model(x, y2, 0.5, gen()))


@pytest.mark.parametrize("loop", CPU_LOOPS)
def test_targets_only_reach_later_frames(loop):
    model = make_model(loop=loop)
    x, y = make_data()
    t = 10
    y2 = y.clone()
    y2[:, t:] = 1 - y2[:, t:]
    with torch.no_grad():
        a, b = model(x, y, 1.0), model(x, y2, 1.0)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(a[:, t + 1], b[:, t + 1])  # the label of t is fed at t + 1


@pytest.mark.parametrize("loop", CPU_LOOPS)
@pytest.mark.parametrize("p_tf", [0.0, 1.0])
@pytest.mark.parametrize("lookahead", [0, 3])
def test_features_reach_only_the_receptive_field(loop, p_tf, lookahead):
    model = make_model(loop=loop, lookahead=lookahead)
    radius = model.receptive_field_radius
    assert radius == 6 + lookahead  # three 5x5 conv blocks, then the cell reads k frames ahead
    x, y = make_data()
    t = 8
    far, edge = x.clone(), x.clone()
    far[:, t + radius + 1 :] += 3.0
    edge[:, t + radius :] += 3.0
    with torch.no_grad():
        ref, out_far, out_edge = model(x, y, p_tf), model(far, y, p_tf), model(edge, y, p_tf)
    torch.testing.assert_close(out_far[:, : t + 1], ref[:, : t + 1], rtol=0, atol=0)
    assert not torch.allclose(out_edge[:, t], ref[:, t])  # frame t + radius does reach frame t


@pytest.mark.parametrize("loop", CPU_LOOPS)
def test_sequences_are_independent_in_eval_mode(loop):
    # Eval mode: in training mode BatchNorm normalises over the batch and mixes sequences.
    model = make_model(loop=loop)
    x, y = make_data()
    x2, y2 = x.clone(), y.clone()
    x2[1:] = torch.randn_like(x2[1:])
    y2[1:] = 1 - y2[1:]
    with torch.no_grad():
        a, b = model(x, y, 0.5, gen()), model(x2, y2, 0.5, gen())
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    assert not torch.allclose(a[1], b[1])


@pytest.mark.parametrize("loop", CPU_LOOPS)
@pytest.mark.parametrize("threshold,p_tf", [(0.5, 0.0), (0.5, 0.5), (0.7, 0.5)])
def test_fed_back_predictions_are_thresholded_probabilities_without_gradient(loop, threshold, p_tf):
    """Running on its own predictions equals teacher forcing with them as constant targets."""
    model = make_model(loop=loop, threshold=threshold)
    x, y = make_data()
    x.requires_grad_(True)
    out = model(x, y, p_tf, gen())
    out.pow(2).sum().backward()
    g_fed = grads(model, x)
    # Rebuild the labels that were fed: the same Bernoulli draws pick the true label.
    preds = (torch.sigmoid(out.detach()) > threshold).to(x.dtype)
    mask = torch.rand(B, T, generator=gen()) < p_tf
    fed = torch.where(mask[:, 1:, None], y[:, :-1], preds[:, :-1])
    fed = torch.cat([fed, torch.zeros_like(y[:, :1])], dim=1)  # the label of frame t sits at t
    logits = out.detach()
    assert ((logits > 0) & (logits < 0.5)).any()  # raw logits thresholded at 0.5 would differ
    model.zero_grad()
    x.grad = None
    ref = model(x, fed, 1.0)
    ref.pow(2).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_fed, grads(model, x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("loop", CPU_LOOPS)
def test_baseline_has_no_label_input(loop):
    model = make_model(loop=loop, label_feedback=False)
    assert model.cell.input_size == model.feature_size
    x, y = make_data()
    gru = nn.GRU(model.feature_size, model.hidden, batch_first=True).double()
    gru.load_state_dict({f"{k}_l0": v for k, v in model.cell.state_dict().items()})
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model(x, y, 1.0), out, rtol=0, atol=0)
        torch.testing.assert_close(model(x, y, 0.5, gen()), out, rtol=0, atol=0)
        expected = model.fc(gru(model.encode(x))[0])
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def run_and_grad(model, x, y, p_tf, seed=7):
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    out = model(x, y, p_tf, gen(seed))
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), grads(model, x)


@pytest.mark.parametrize("label_feedback", [True, False])
@pytest.mark.parametrize("p_tf", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("training", [False, True])
def test_eager_equals_hoisted(label_feedback, p_tf, training):
    eager = make_model(loop="eager", label_feedback=label_feedback).train(training)
    hoisted = copy.deepcopy(eager)
    hoisted.loop = "hoisted"
    x, y = make_data()
    out_e, g_e = run_and_grad(eager, x, y, p_tf)
    out_h, g_h = run_and_grad(hoisted, x, y, p_tf)
    torch.testing.assert_close(out_h, out_e, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_h, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    if label_feedback and p_tf == 0.5:  # the draws matter: other seeds give other outputs
        assert not torch.allclose(run_and_grad(eager, x, y, p_tf, seed=8)[0], out_e)


def loop_inputs(model, x, y, p_tf, seed=7):
    """What CRNN.forward hands its loop: conv features, shifted targets, forcing mask."""
    fed = model.label_feedback and p_tf > 0
    prev = F.pad(y[:, :-1], (0, 0, 1, 0)) if fed else None
    mask = forcing_mask(B, T, p_tf, gen(seed), "cpu") if fed and p_tf < 1 else None
    return model.encode(x), prev, mask


FAST_PATHS = {
    "hoisted": lambda m, f, prev, mask: recurrence.hoisted(m, f, prev, mask, keep=True),
    "no_grad": lambda m, f, prev, mask: recurrence.hoisted(m, f, prev, mask, keep=False),
    "fused_gru": lambda m, f, prev, mask: recurrence.fused_gru(m, f, prev),
}


@pytest.mark.parametrize("path", FAST_PATHS)
@pytest.mark.parametrize("label_feedback", [True, False])
@pytest.mark.parametrize("p_tf", [0.0, 0.5, 1.0])
def test_every_fast_path_equals_the_plain_loop(path, label_feedback, p_tf):
    """Each path fast_loop may pick, called directly: same logits and gradients as plain_loop."""
    if path == "fused_gru" and label_feedback and p_tf < 1:
        pytest.skip("the fused GRU runs only when no prediction is fed back")
    model = make_model(label_feedback=label_feedback).train()
    x, y = make_data()

    def run(loop):
        model.zero_grad()
        xg = x.clone().requires_grad_(True)
        out = loop(model, *loop_inputs(model, xg, y, p_tf))
        if out.requires_grad:
            (
                out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
            ).sum().backward()
        return out.detach(), grads(model, xg) if out.requires_grad else []

    out, g = run(lambda m, *a: m.plain_loop(*a))
    if path == "no_grad":
        with torch.no_grad():
            fast, _ = run(FAST_PATHS[path])
    else:
        fast, g_fast = run(FAST_PATHS[path])
        for a, b in zip(g_fast, g, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(fast, out, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("label_feedback", [True, False])
def test_resumed_loops_equal_the_plain_loop_from_a_hidden_state(label_feedback):
    """free_run from h0 is plain_loop from h0; run in pieces carrying the state, it is one run."""
    model = make_model(label_feedback=label_feedback)
    x, _ = make_data()
    with torch.no_grad():
        feats = model.encode(x)
        h0 = torch.randn(B, model.hidden, generator=gen(3), dtype=feats.dtype)
        plain = model.plain_loop(feats[:, 5:], None, None, h0)
        fast, _ = recurrence.free_run(model, feats[:, 5:], h0)
        torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)
        whole = model.plain_loop(feats, None, None)
        pieces, h = [], None
        for a, b in ((0, 7), (7, 8), (8, 20), (20, T)):
            logits, h = recurrence.free_run(model, feats[:, a:b], h)
            pieces.append(logits)
            torch.testing.assert_close(
                model.plain_loop(feats[:, :b], None, None)[:, -1],
                model.fc(h),
                rtol=1e-10,
                atol=1e-10,
            )  # h is the hidden state after frame b - 1
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-10, atol=1e-10)


def test_no_grad_evaluation_equals_the_plain_loop_in_float32():
    plain = make_model(dtype=torch.float32, loop="eager", channels=8, hidden=16)
    fast = copy.deepcopy(plain)
    fast.loop = "auto"
    x, y = make_data(dtype=torch.float32, t=200)
    with torch.no_grad():
        for p_tf in (0.0, 0.5):
            a, b = plain(x, y, p_tf, gen()), fast(x, y, p_tf, gen())
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_same_generator_seed_reproduces_and_auto_runs_on_cpu():
    model = make_model(dtype=torch.float32, loop="auto")
    x, y = make_data(dtype=torch.float32)
    with torch.no_grad():
        a, b = model(x, y, 0.5, gen(5)), model(x, y, 0.5, gen(5))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        fallback = copy.deepcopy(model)
        fallback.loop = "cuda_graph"  # falls back to hoisted without CUDA / outside training
        torch.testing.assert_close(fallback(x, y, 0.5, gen(5)), a, rtol=0, atol=0)


def test_float32_loops_agree():
    eager = make_model(loop="eager", dtype=torch.float32, channels=8, hidden=16).train()
    hoisted = copy.deepcopy(eager)
    hoisted.loop = "hoisted"
    x, y = make_data(dtype=torch.float32, t=64)
    out_e, g_e = run_and_grad(eager, x, y, 0.5)
    out_h, g_h = run_and_grad(hoisted, x, y, 0.5)
    torch.testing.assert_close(out_h, out_e, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_h, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("p_tf", [0.0, 0.5])
def test_cuda_graph_equals_eager(p_tf):
    eager = make_model(loop="eager").cuda().train()  # dropout 0: train mode is deterministic
    graphed = copy.deepcopy(eager)
    graphed.loop = "cuda_graph"
    for seed in (1, 2):  # the second pass replays the captured graphs with new data
        x, y = make_data(seed=seed)
        x, y = x.cuda(), y.cuda()
        out_e, g_e = run_and_grad(eager, x, y, p_tf, seed=seed)
        out_g, g_g = run_and_grad(graphed, x, y, p_tf, seed=seed)
        assert recurrence.captured_graphs(graphed) == 1
        torch.testing.assert_close(out_g, out_e, rtol=1e-10, atol=1e-10)
        for a, b in zip(g_g, g_e, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_graph_rejects_stale_backward():
    model = make_model(loop="cuda_graph").cuda().train()
    x, y = (t.cuda() for t in make_data())
    first = model(x, y, 0.5, gen())
    model(x, y, 0.5, gen())
    with pytest.raises(RuntimeError, match="cuda_graph"):
        first.sum().backward()


def test_standard_state_dict_and_weights_only_load():
    model = make_model(dtype=torch.float32)
    assert isinstance(model.cell, nn.GRUCell)
    keys = set(model.state_dict())
    assert {"cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"} <= keys
    assert {"fc.weight", "fc.bias"} <= keys
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    other = make_model(seed=9, dtype=torch.float32)
    other.load_state_dict(torch.load(buf, weights_only=True))
    x, _ = make_data(dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (dict(n_mels=64), "pool_sizes"),
        (dict(pool_sizes=(5, 4, 3)), "pool_sizes"),
        (dict(channels=(4, 4)), "channels"),
        (dict(loop="fast"), "loop"),
        (dict(threshold=1.0), "threshold"),
        (dict(num_classes=None), "num_classes"),
    ],
)
def test_bad_config_names_the_key(kwargs, key):
    params = dict(n_mels=M, num_classes=C, channels=4, hidden=8)
    params.update(kwargs)
    with pytest.raises(CRNNConfigError, match=key):
        CRNN(**params)


def test_bad_inputs_name_the_argument():
    model = make_model(dtype=torch.float32)
    x, y = make_data(dtype=torch.float32)
    with pytest.raises(CRNNConfigError, match="p_tf"):
        model(x, y, 1.5)
    with pytest.raises(CRNNConfigError, match="targets"):
        model(x, y[:, :, :2], 0.5)
    with pytest.raises(CRNNConfigError, match="n_mels"):
        model(x[:, :, :20])
    with pytest.raises(ValueError, match="features"):
        model(x[0])


def test_pool_sizes_and_channels_are_configurable():
    model = CRNN(n_mels=64, num_classes=2, channels=(4, 6), pool_sizes=(4, 4), hidden=8)
    assert model.feature_size == 6 * 4 and model.receptive_field_radius == 4
    assert model(torch.randn(2, 10, 64)).shape == (2, 10, 2)


@pytest.mark.parametrize("loop", ["eager", "hoisted"])
@pytest.mark.parametrize("p_tf", [0.0, 0.5, 1.0])
def test_runs_under_callers_bf16_autocast(loop: str, p_tf: float) -> None:
    """The trainer wraps the model in bf16 autocast on GPU: the conv front end may run in bf16,
    the recurrence must still run (in float32) and stay close to the full-precision result."""
    torch.manual_seed(0)
    model = CRNN(n_mels=40, num_classes=4, channels=8, hidden=16, loop=loop).eval()
    features = torch.randn(2, 30, 40)
    targets = (torch.rand(2, 30, 4) > 0.5).float()
    reference = model(features, targets, p_tf=p_tf, generator=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(features, targets, p_tf=p_tf, generator=torch.Generator().manual_seed(3))
    assert logits.dtype == torch.float32
    # bf16 conv features flip a few fed-back labels at most; compare the first frames, where no
    # prediction has been fed back yet, tightly, and the rest loosely.
    torch.testing.assert_close(logits[:, :1], reference[:, :1], atol=0.05, rtol=0.05)
    assert (logits - reference).abs().mean() < 0.1


@pytest.mark.parametrize("loop", CPU_LOOPS)
@pytest.mark.parametrize("p_tf", [0.0, 1.0])
def test_lookahead_feeds_the_cell_the_features_of_frame_t_plus_k(loop, p_tf):
    k = 3
    ahead, plain = make_model(loop=loop, lookahead=k), make_model(loop=loop)
    x, y = make_data()
    T = x.shape[1]
    with torch.no_grad():
        feats = plain.encode(x)
        shifted = torch.cat([feats[:, k:], feats.new_zeros(feats.shape[0], k, feats.shape[2])], 1)
        prev = torch.nn.functional.pad(y[:, :-1], (0, 0, 1, 0)) if p_tf else None
        expected = plain.plain_loop(shifted, prev, None)
        out = ahead(x, y, p_tf)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert out.shape == (x.shape[0], T, C)
    # Shorter sequences than k still give one output per frame (all zeros read).
    with torch.no_grad():
        assert ahead(x[:, :2]).shape == (x.shape[0], 2, C)


@pytest.mark.parametrize("lookahead", [-1, 1.5, True, "2"])
def test_bad_lookahead_is_refused_by_name(lookahead):
    with pytest.raises(CRNNConfigError, match="lookahead"):
        CRNN(n_mels=M, num_classes=C, lookahead=lookahead)
