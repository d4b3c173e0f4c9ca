"""Fast loops for the CRNN's recurrence: the function `CRNN.plain_loop` defines, computed faster.

:func:`fast_loop` picks, per call:

- **fused GRU**: when nothing is fed back (``label_feedback=False``, or ``p_tf = 1``) the
  recurrence is an ordinary GRU, run by PyTorch's fused kernel with the cell's weights, on CUDA
  or without gradients (on CPU with gradients the hand-written backward below is faster).
- **no-gradient loop** (evaluation, prediction): the input projections of all frames hoisted out
  of the loop; per frame only ``h @ [W_hh; W_fc]`` (the hidden gates fused with the previous
  frame's logits), the projection of the fed-back labels and the gate math, into a few reused
  buffers. Nothing is kept for a backward pass.
- **hoisted** (training): the same loop keeping every frame's gates for :class:`HoistedLoop`'s
  hand-written backward (BPTT through the fused gates).
- **CUDA graphs** (training on CUDA, ``loop="auto"`` or ``"cuda_graph"``): the hoisted loop and
  its backward captured once per (batch, length) and replayed.

Fed-back labels are ``logit > log(threshold / (1 - threshold))``: the plain loop's
``sigmoid(logit) > threshold`` without the sigmoid. tests/test_crnn.py checks every path
against the plain loop, outputs and gradients.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "LOOPS",
    "HoistedLoop",
    "captured_graphs",
    "fast_loop",
    "free_run",
    "fused_gru",
    "hoisted",
]

LOOPS = ("auto", "eager", "hoisted", "cuda_graph")
MAX_GRAPHS = 4  # captured (batch, length) buckets per model; further shapes run the hoisted loop


def fast_loop(model: nn.Module, feats: Tensor, prev: Tensor | None, mask: Tensor | None) -> Tensor:
    """Logits [B, T, C] of `model`'s recurrence (a CRNN), as `CRNN.plain_loop(feats, prev, mask)`
    computes them, by the fastest path for this call."""
    needs_grad = torch.is_grad_enabled() and (
        feats.requires_grad or any(p.requires_grad for p in _params(model))
    )
    fed_back = model.label_feedback and (prev is None or mask is not None)
    if not fed_back and (feats.is_cuda or not needs_grad):
        return fused_gru(model, feats, prev)
    if needs_grad and feats.is_cuda and model.training and model.loop != "hoisted":
        out = _graphs_of(model).run(model, feats, prev, mask)
        if out is not None:
            return out
    return hoisted(model, feats, prev, mask, keep=needs_grad)


def free_run(model: nn.Module, feats: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Free-running logits [B, T, C] from conv features, starting from hidden state `h0` [B, H]
    (None: zeros, a file's start), and the hidden state after the last frame: the no-gradient
    loops of `fast_loop`, resumable, so that a long file can run chunk by chunk."""
    if not model.label_feedback:
        with torch.no_grad():
            logits, h = fused_gru(model, feats, None, h0, final=True)
        return logits, h
    with torch.no_grad():
        hs = hoisted(model, feats, None, None, keep=False, h0=h0, project=False)
    return model.fc(hs.transpose(0, 1)), hs[-1].clone()


def hoisted(
    model: nn.Module,
    feats: Tensor,
    prev: Tensor | None,
    mask: Tensor | None,
    keep: bool = True,
    h0: Tensor | None = None,
    project: bool = True,
) -> Tensor:
    """Input projections of all frames at once, then the time loop: :class:`HoistedLoop` (with
    its backward) when `keep`, else the no-gradient loop into reused buffers, which may start
    from a hidden state `h0`. Logits [B, T, C], or (`project=False`) hidden states [T, B, H]."""
    if h0 is not None and keep:
        raise ValueError("hoisted: an initial hidden state h0 is for the no-gradient loop only")
    cell, fc, n = model.cell, model.fc, model.feature_size
    gi_free = F.linear(feats, cell.weight_ih[:, :n], cell.bias_ih)  # features (+ b_ih)
    w_lab = cell.weight_ih[:, n:] if model.label_feedback else None
    gi_tf = None if prev is None else gi_free + F.linear(prev, w_lab)  # ... + true labels
    m = None if mask is None else mask.t().unsqueeze(-1).contiguous()
    args = (_time_major(gi_free), _time_major(gi_tf), m, cell.weight_hh, cell.bias_hh, w_lab,
            fc.weight.detach(), fc.bias.detach(), _logit_threshold(model.threshold))  # fmt: skip
    with _one_thread(feats):
        hs = HoistedLoop.apply(*args) if keep else _loop(*args, keep=False, h0=h0)[0]
    return fc(hs.transpose(0, 1)) if project else hs


def fused_gru(
    model: nn.Module,
    feats: Tensor,
    prev: Tensor | None,
    h0: Tensor | None = None,
    final: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Nothing fed back: the recurrence is a plain GRU over [features, true labels of t-1], from
    hidden state `h0` [B, H] (None: zeros). Logits, and with `final` the last hidden state."""
    x = feats if prev is None else torch.cat([feats, prev], dim=-1)
    h0 = feats.new_zeros(feats.shape[0], model.hidden) if h0 is None else h0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
        out, h = torch._VF.gru(
            x, h0[None].contiguous(), list(_params(model)[:4]), True, 1, 0.0, model.training,
            False, True,
        )  # has_biases, num_layers, dropout, train, bidirectional, batch_first  # fmt: skip
    return (model.fc(out), h[0]) if final else model.fc(out)


@contextmanager
def _one_thread(x: Tensor) -> Iterator[None]:
    """Run a CPU time loop on one intra-op thread. Its ops are small and strictly sequential, so
    more threads only add a barrier per op; where the cores are shared, each barrier can wait a
    scheduler time slice (measured: 100x slower with 2 threads, docs/benchmarks.md)."""
    threads = torch.get_num_threads()
    if x.is_cuda or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _params(model: nn.Module) -> tuple[nn.Parameter, ...]:
    c = model.cell
    return (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh, model.fc.weight, model.fc.bias)


def _logit_threshold(threshold: float) -> float:
    """sigmoid(logit) > threshold  <=>  logit > log(threshold / (1 - threshold))."""
    return math.log(threshold / (1.0 - threshold))


def _time_major(x: Tensor | None) -> Tensor | None:
    """[B, T, ...] -> contiguous [T, B, ...] (None passes through)."""
    return None if x is None else x.transpose(0, 1).contiguous()


def _frames(buf: Tensor, frames: int) -> list[Tensor]:
    """Per-frame views of `buf` [frames or 1, ...]: its frames, or its one frame `frames` times."""
    views = buf.unbind(0)
    return list(views) if len(views) == frames else [views[0]] * frames


def _loop(gi_free, gi_tf, mask, w_hh, b_hh, w_lab, w_fc, b_fc, thr, keep, h0=None):
    """The GRU time loop of :class:`HoistedLoop`. Returns hidden states [T, B, H] and the gates,
    hidden projections and fed predictions of every frame (`keep`) or of the last one. From a
    hidden state `h0`, frame 0 is fed the prediction from h0, as every later frame is."""
    T, B, G = gi_free.shape
    H = G // 3
    forced = gi_tf is not None and mask is None  # p_tf = 1: every fed label is the true one
    feed = w_lab is not None and not forced  # some fed labels are the model's own
    C = w_fc.shape[0] if feed else 0
    x_all = gi_tf if forced else gi_free
    new, kept = gi_free.new_empty, T if keep else 1
    hs, rz, ns, gh = new(T, B, H), new(kept, B, 2 * H), new(kept, B, H), new(kept, B, G + C)
    preds = gi_free.new_zeros(kept, B, C) if feed else None
    # Per-frame views made once, outside the loop: indexing costs as much as the math here.
    rz_t, r, z, n = (_frames(v, T) for v in (rz, rz[..., :H], rz[..., H:], ns))
    gh_t, gh_rz, gh_n = (_frames(v, T) for v in (gh, gh[..., : 2 * H], gh[..., 2 * H : G]))
    x_rz, x_n, h_out = x_all[..., : 2 * H].unbind(0), x_all[..., 2 * H :].unbind(0), hs.unbind(0)
    if feed:
        w_cat_t, b_cat, w_lab_t = torch.cat([w_hh, w_fc]).t(), torch.cat([b_hh, b_fc]), w_lab.t()
        logit, pred, gi_free_t = _frames(gh[..., G:], T), _frames(preds, T), gi_free.unbind(0)
        x_buf = new(B, G)  # input projection of a frame whose label is (partly) predicted
        x_buf_rz, x_buf_n = x_buf[:, : 2 * H], x_buf[:, 2 * H :]
        masked = None if mask is None else (mask.unbind(0), gi_tf.unbind(0))
    else:
        w_hh_t = w_hh.t()
    h = gi_free.new_zeros(B, H) if h0 is None else h0
    resumed = h0 is not None
    for t in range(T):
        xr, xn = x_rz[t], x_n[t]
        if not feed:
            torch.addmm(b_hh, h, w_hh_t, out=gh_t[t])
        else:
            torch.addmm(b_cat, h, w_cat_t, out=gh_t[t])  # [h @ W_hh + b_hh, logits of t-1]
            if t > 0 or resumed:
                torch.gt(logit[t], thr, out=pred[t])
                torch.addmm(gi_free_t[t], pred[t], w_lab_t, out=x_buf)
                if masked is not None:  # teacher forcing where the mask says so
                    torch.where(masked[0][t], masked[1][t], x_buf, out=x_buf)
                xr, xn = x_buf_rz, x_buf_n
        torch.add(xr, gh_rz[t], out=rz_t[t]).sigmoid_()
        torch.addcmul(xn, r[t], gh_n[t], out=n[t]).tanh_()
        h = torch.lerp(n[t], h, z[t], out=h_out[t])
    return hs, rz, ns, gh, preds


class HoistedLoop(torch.autograd.Function):
    """GRU time loop with precomputed input projections and label feedback; hand-written BPTT.

    Time-major inputs: ``gi_free`` [T, B, 3H] is the input projection without a label part
    (W_ih[:, :F] x + b_ih); ``gi_tf`` [T, B, 3H] (or None) adds the projection of the true labels
    of the previous frame; ``mask`` [T, B, 1] bool (or None) picks ``gi_tf`` (True) or the
    fed-back prediction (False). ``mask=None`` with ``gi_tf`` given is full teacher forcing;
    ``w_lab=None`` means no label input at all. Returns hidden states [T, B, H].
    """

    @staticmethod
    def forward(ctx, gi_free, gi_tf, mask, w_hh, b_hh, w_lab, w_fc, b_fc, thr):
        hs, rz, ns, gh_all, preds = _loop(
            gi_free, gi_tf, mask, w_hh, b_hh, w_lab, w_fc, b_fc, thr, keep=True
        )
        ctx.save_for_backward(w_hh, hs, rz, ns, gh_all, preds, mask)
        feed_pred = w_lab is not None and not (gi_tf is not None and mask is None)
        ctx.flags = (feed_pred, gi_tf is not None, w_lab is not None)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx, dhs: Tensor):
        w_hh, hs, rz, ns, gh_all, preds, mask = ctx.saved_tensors
        feed_pred, has_tf, has_lab = ctx.flags
        T, B, H = hs.shape
        G = 3 * H
        r, z = rz[..., :H], rz[..., H:]
        h_prev = torch.cat([hs.new_zeros(1, B, H), hs[:-1]])
        ghn = gh_all[..., 2 * H : G]
        # Per-frame factors that do not depend on the incoming gradient, for all frames at once.
        c_n = (1 - z) * (1 - ns * ns)  # dL/da_n = dh * c_n
        c_z = (h_prev - ns) * z * (1 - z)  # dL/da_z = dh * c_z
        c_r = ghn * r * (1 - r)  # dL/da_r = dL/da_n * c_r
        # D[t] = [da_n, da_r, da_z, da_n * r]; dGH = D[..., H:], dX = [da_r, da_z, da_n].
        D = hs.new_empty(T, B, 4 * H)
        dh = dhs[T - 1].clone()
        with _one_thread(hs):
            for t in range(T - 1, -1, -1):
                d = D[t]
                da_n = torch.mul(dh, c_n[t], out=d[:, :H])
                torch.mul(da_n, c_r[t], out=d[:, H : 2 * H])
                torch.mul(dh, c_z[t], out=d[:, 2 * H : G])
                torch.mul(da_n, r[t], out=d[:, G:])
                if t > 0:
                    dh = torch.addmm(torch.addcmul(dhs[t - 1], dh, z[t]), d[:, H:], w_hh)
        dgh = D[..., H:]
        dx = torch.cat([D[..., H:G], D[..., :H]], dim=-1)
        dgh2 = dgh.reshape(T * B, G)
        d_w_hh = dgh2.t() @ h_prev.reshape(T * B, H)
        d_b_hh = dgh2.sum(0)
        d_gi_free = d_gi_tf = d_w_lab = None
        if not has_tf:
            d_gi_free = dx
        elif mask is None:
            d_gi_tf = dx
        else:
            d_gi_tf = dx * mask
            d_gi_free = dx * ~mask
        if feed_pred and has_lab:
            dx_fed = dx if mask is None else d_gi_free
            d_w_lab = dx_fed.reshape(T * B, G).t() @ preds.reshape(T * B, -1)
        if not ctx.needs_input_grad[0]:
            d_gi_free = None
        if not ctx.needs_input_grad[1]:
            d_gi_tf = None
        return d_gi_free, d_gi_tf, None, d_w_hh, d_b_hh, d_w_lab, None, None, None


# ------------------------------------------------------------------------------ CUDA graphs
@dataclass
class _GraphEntry:
    """Static buffers and the two CUDA graphs of one (batch, length) bucket."""

    fwd: torch.cuda.CUDAGraph
    bwd: torch.cuda.CUDAGraph
    feats: Tensor
    prev: Tensor
    mask: Tensor
    out: Tensor
    gout: Tensor
    grads: tuple[Tensor | None, ...]
    ptrs: tuple[int, ...]
    generation: int = 0


class _GraphReplay(torch.autograd.Function):
    """Autograd node that replays a bucket's captured forward and backward graphs."""

    @staticmethod
    def forward(ctx, entry: _GraphEntry, feats: Tensor, prev: Tensor, mask: Tensor, *params):
        entry.feats.copy_(feats)
        entry.prev.copy_(prev)
        entry.mask.copy_(mask)
        entry.fwd.replay()
        entry.generation += 1
        ctx.entry, ctx.generation = entry, entry.generation
        return entry.out.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gout: Tensor):
        entry: _GraphEntry = ctx.entry
        if entry.generation != ctx.generation:
            raise RuntimeError(
                "CRNN loop='cuda_graph': another forward pass with the same batch size and "
                "length ran before this backward, overwriting the saved activations; run one "
                "backward per forward or use loop='hoisted'"
            )
        entry.gout.copy_(gout)
        entry.bwd.replay()
        grads = [g.clone() if g is not None else None for g in entry.grads]
        return (None, grads[0], None, None, *grads[1:])


class _Graphs:
    """One model's CUDA graph captures, one per (batch, length, dtype, ...) bucket."""

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple, _GraphEntry | None] = OrderedDict()
        self.warned = False

    def run(self, model, feats: Tensor, prev: Tensor | None, mask: Tensor | None) -> Tensor | None:
        """Replay (capturing on first use) the bucket's graphs; None means fall back to hoisted."""
        B, T, _ = feats.shape
        if prev is None:  # free running: one captured signature, with no true label ever picked
            prev = feats.new_zeros(B, T, model.num_classes)
            mask = torch.zeros(B, T, dtype=torch.bool, device=feats.device)
        params = _params(model)
        ptrs = tuple(p.data_ptr() for p in params)
        grad_of = (feats.requires_grad, *(p.requires_grad for p in params))
        key = (B, T, feats.dtype, feats.device, grad_of, model.threshold)
        entry = self.entries.get(key, False)
        if entry and entry.ptrs != ptrs:
            self.entries.clear()  # parameters were reallocated (.to(), ...): every capture is stale
            entry = False
        if entry is False:
            if len(self.entries) >= MAX_GRAPHS:
                return None  # bucket budget spent (no eviction: it could thrash)
            entry = self.entries[key] = self._capture(model, feats, prev, mask, params, ptrs)
        if entry is None:
            return None
        return _GraphReplay.apply(entry, feats, prev, mask, *params)

    def _capture(self, model, feats, prev, mask, params, ptrs) -> _GraphEntry | None:
        """Warm up on a side stream, then capture forward and backward of the recurrent part."""
        try:
            s_feats = feats.detach().clone().requires_grad_(feats.requires_grad)
            s_prev, s_mask = prev.detach().clone(), mask.clone()
            leaves = (s_feats, *params)
            inputs = tuple(x for x in leaves if x.requires_grad)
            stream = torch.cuda.Stream(device=feats.device)
            stream.wait_stream(torch.cuda.current_stream(feats.device))
            with torch.cuda.stream(stream), torch.autocast("cuda", enabled=False):
                for _ in range(3):
                    out = hoisted(model, s_feats, s_prev, s_mask)
                    torch.autograd.grad(out, inputs, torch.ones_like(out), allow_unused=True)
            torch.cuda.current_stream(feats.device).wait_stream(stream)
            fwd, bwd = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            with torch.autocast("cuda", enabled=False):
                with torch.cuda.graph(fwd):
                    s_out = hoisted(model, s_feats, s_prev, s_mask)
                s_gout = torch.empty_like(s_out)
                with torch.cuda.graph(bwd, pool=fwd.pool()):
                    got = iter(torch.autograd.grad(s_out, inputs, s_gout, allow_unused=True))
            grads = []
            for x in leaves:
                g = next(got) if x.requires_grad else None
                grads.append(torch.zeros_like(x) if x.requires_grad and g is None else g)
            return _GraphEntry(fwd, bwd, s_feats, s_prev, s_mask, s_out, s_gout, tuple(grads), ptrs)
        except Exception as err:  # noqa: BLE001 - any capture failure falls back to hoisted
            if not self.warned:
                warnings.warn(f"CRNN loop='cuda_graph': capture failed ({err!r}); using "
                              "loop='hoisted'", RuntimeWarning, stacklevel=4)  # fmt: skip
                self.warned = True
            return None


_GRAPHS: weakref.WeakKeyDictionary[nn.Module, _Graphs] = weakref.WeakKeyDictionary()


def _graphs_of(model: nn.Module) -> _Graphs:
    """The model's captures; kept beside it (not in it) so copies and pickles start empty."""
    if model not in _GRAPHS:
        _GRAPHS[model] = _Graphs()
    return _GRAPHS[model]


def captured_graphs(model: nn.Module) -> int:
    """How many (batch, length) buckets of `model` run from captured CUDA graphs."""
    graphs = _GRAPHS.get(model)
    return 0 if graphs is None else sum(e is not None for e in graphs.entries.values())
