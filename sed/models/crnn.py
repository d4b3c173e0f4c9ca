"""Drossos et al. (2019) CRNN: conv blocks, then a GRUCell fed its own or the true previous labels.

The GRUCell at frame t sees the conv features of frame t and a label vector for frame t-1
(zeros at t = 0): per sequence, the true labels with probability ``p_tf`` (teacher forcing),
otherwise the model's own thresholded prediction. Several implementations of the time loop
compute the same function (``loop=``):

- ``"eager"``: one ``nn.GRUCell`` call per frame; the plain reference.
- ``"hoisted"``: input projections of the conv features and of the true labels for all frames
  at once, outside the loop; per frame only ``h @ W_hh`` (fused with the output layer), the
  projection of the fed-back prediction and the gate math, in a custom autograd Function with a
  hand-written backward (BPTT through the fused gates).
- ``"cuda_graph"``: the hoisted loop, forward and backward each captured once per
  (batch, length) bucket in a CUDA graph with static buffers; CUDA training only, otherwise
  it falls back to ``"hoisted"``.
- ``"auto"``: ``"cuda_graph"`` on CUDA in training mode with gradients on, ``"hoisted"`` elsewhere.

When no prediction is fed back (``label_feedback=False``, or ``p_tf=1`` with targets, which is
plain teacher forcing) the recurrence is an ordinary GRU, and loops other than ``"eager"`` may run
PyTorch's fused GRU with the cell's weights: ``fused_gru=None`` (default) does so where it is
faster (on CUDA, or without autograd; on CPU the hoisted loop's hand-written backward beats
nn.GRU's autograd), True always, False never.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["CRNN", "CRNNConfigError", "LOOPS", "forcing_mask"]

LOOPS = ("auto", "eager", "hoisted", "cuda_graph")
_MISSING = object()


def _time_major(x: Tensor | None) -> Tensor | None:
    """[B, T, ...] -> contiguous [T, B, ...] (None passes through)."""
    return None if x is None else x.transpose(0, 1).contiguous()


def forcing_mask(
    batch: int,
    frames: int,
    p_tf: float,
    generator: torch.Generator | None,
    device: torch.device | str,
) -> Tensor:
    """The [B, T] teacher-forcing mask, True = feed the true labels: one Bernoulli(p_tf) draw per
    (sequence, frame), all up front, from `generator` (on its device; the global CPU generator
    when None). p_tf = 0 / 1 draws nothing (all False / all True), as CRNN.forward does."""
    if p_tf <= 0.0:
        return torch.zeros(batch, frames, dtype=torch.bool, device=device)
    if p_tf >= 1.0:
        return torch.ones(batch, frames, dtype=torch.bool, device=device)
    draw_on = generator.device if generator is not None else torch.device("cpu")
    return (torch.rand(batch, frames, generator=generator, device=draw_on) < p_tf).to(device)


class CRNNConfigError(ValueError):
    """A CRNN constructor or forward argument out of range; the message names the key."""


class _HoistedLoop(torch.autograd.Function):
    """GRU time loop with precomputed input projections and label feedback; hand-written BPTT.

    Time-major inputs: ``gi_free`` [T, B, 3H] is the input projection without a label part
    (W_ih[:, :F] x + b_ih); ``gi_tf`` [T, B, 3H] (or None) adds the projection of the true labels
    of the previous frame; ``mask`` [T, B, 1] bool (or None) picks ``gi_tf`` (True) or the
    fed-back prediction (False). ``mask=None`` with ``gi_tf`` given is full teacher forcing;
    ``w_lab=None`` means no label input at all. Returns hidden states [T, B, H].
    """

    @staticmethod
    def forward(
        ctx,
        gi_free: Tensor,
        gi_tf: Tensor | None,
        mask: Tensor | None,
        w_hh: Tensor,
        b_hh: Tensor,
        w_lab: Tensor | None,
        w_fc: Tensor,
        b_fc: Tensor,
        thr: float,
    ) -> Tensor:
        T, B, G = gi_free.shape
        H = G // 3
        feed_pred = w_lab is not None and not (gi_tf is not None and mask is None)
        x_all = gi_tf if (gi_tf is not None and mask is None) else gi_free
        new = gi_free.new_empty
        hs = new(T, B, H)
        rz = new(T, B, 2 * H)
        ns = new(T, B, H)
        if feed_pred:
            C = w_fc.shape[0]
            w_cat_t = torch.cat([w_hh, w_fc]).t()
            b_cat = torch.cat([b_hh, b_fc])
            w_lab_t = w_lab.t()
            gh_all = new(T, B, G + C)
            preds = gi_free.new_zeros(T, B, C)
        else:
            w_hh_t = w_hh.t()
            gh_all = new(T, B, G)
            preds = None
        h = gi_free.new_zeros(B, H)
        for t in range(T):
            gh = gh_all[t]
            if feed_pred:
                torch.addmm(b_cat, h, w_cat_t, out=gh)
                if t == 0:
                    x = gi_free[0]
                else:
                    pred = preds[t]
                    # Logits of frame t-1 (fused with h @ W_hh): sigmoid(logit) > threshold.
                    torch.gt(gh[:, G:], thr, out=pred)
                    x = torch.addmm(gi_free[t], pred, w_lab_t)
                    if mask is not None:
                        x = torch.where(mask[t], gi_tf[t], x)
            else:
                torch.addmm(b_hh, h, w_hh_t, out=gh)
                x = x_all[t]
            rz_t = rz[t]
            torch.add(x[:, : 2 * H], gh[:, : 2 * H], out=rz_t).sigmoid_()
            n = ns[t]
            torch.addcmul(x[:, 2 * H :], rz_t[:, :H], gh[:, 2 * H : G], out=n).tanh_()
            h = torch.lerp(n, h, rz_t[:, H:], out=hs[t])
        ctx.save_for_backward(w_hh, hs, rz, ns, gh_all, preds, mask)
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


@dataclass
class _GraphEntry:
    """Static buffers and the two CUDA graphs of one (batch, length) bucket."""

    fwd: torch.cuda.CUDAGraph
    bwd: torch.cuda.CUDAGraph
    feats: Tensor
    tshift: Tensor
    mask: Tensor
    out: Tensor
    gout: Tensor
    grads: tuple[Tensor | None, ...]
    grad_of: tuple[bool, ...]
    ptrs: tuple[int, ...]
    generation: int = 0


class _GraphReplay(torch.autograd.Function):
    """Autograd node that replays a bucket's captured forward and backward graphs."""

    @staticmethod
    def forward(ctx, entry: _GraphEntry, feats: Tensor, tshift: Tensor, mask: Tensor, *params):
        entry.feats.copy_(feats)
        entry.tshift.copy_(tshift)
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


def _as_ints(value: int | Sequence[int], n: int, key: str) -> tuple[int, ...]:
    """Broadcast an int to n blocks or check a per-block sequence."""
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n or not all(isinstance(v, int) and v > 0 for v in values):
        raise CRNNConfigError(
            f"{key} must be a positive int or {n} positive ints (one per conv block), got {value!r}"
        )
    return values


class CRNN(nn.Module):
    """Conv blocks over (time, frequency), then a label-feedback GRUCell and a linear output.

    Note: in training mode BatchNorm normalises over the batch, so one sequence's output
    depends on the others in its batch; in eval mode sequences are independent.
    """

    def __init__(
        self,
        n_mels: int = 40,
        num_classes: int | None = None,
        channels: int | Sequence[int] = 256,
        pool_sizes: Sequence[int] = (5, 4, 2),
        hidden: int = 256,
        dropout: float = 0.25,
        label_feedback: bool = True,
        threshold: float = 0.5,
        loop: str = "auto",
        kernel_size: int = 5,
        fused_gru: bool | None = None,
        amp: bool = False,
        max_graphs: int = 4,
    ) -> None:
        super().__init__()
        if num_classes is None or not isinstance(num_classes, int) or num_classes < 1:
            raise CRNNConfigError(f"num_classes must be a positive int, got {num_classes!r}")
        if not isinstance(n_mels, int) or n_mels < 1:
            raise CRNNConfigError(f"n_mels must be a positive int, got {n_mels!r}")
        pools = tuple(pool_sizes)
        if not pools:
            raise CRNNConfigError("pool_sizes must name at least one conv block")
        pools = _as_ints(pools, len(pools), "pool_sizes")
        chans = _as_ints(channels, len(pools), "channels")
        bands = n_mels
        for i, p in enumerate(pools):
            if bands % p:
                raise CRNNConfigError(
                    f"pool_sizes={list(pools)} does not divide n_mels={n_mels}: block {i} "
                    f"pools {bands} bands by {p}"
                )
            bands //= p
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise CRNNConfigError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        if not isinstance(hidden, int) or hidden < 1:
            raise CRNNConfigError(f"hidden must be a positive int, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise CRNNConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        if not 0.0 < threshold < 1.0:
            raise CRNNConfigError(f"threshold must be in (0, 1), got {threshold!r}")
        if loop not in LOOPS:
            raise CRNNConfigError(f"loop must be one of {LOOPS}, got {loop!r}")
        if not isinstance(max_graphs, int) or max_graphs < 0:
            raise CRNNConfigError(f"max_graphs must be an int >= 0, got {max_graphs!r}")

        self.n_mels, self.num_classes, self.hidden = n_mels, num_classes, hidden
        self.pool_sizes, self.channels = pools, chans
        self.label_feedback, self.threshold, self.loop = label_feedback, threshold, loop
        self.fused_gru, self.amp, self.max_graphs = fused_gru, amp, max_graphs
        self.receptive_field_radius = len(pools) * (kernel_size // 2)

        blocks, in_ch = [], 1
        for ch, p in zip(chans, pools, strict=True):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, ch, kernel_size, stride=1, padding=kernel_size // 2),
                    nn.BatchNorm2d(ch),
                    nn.ReLU(),
                    nn.MaxPool2d((1, p), stride=(1, p)),
                    nn.Dropout(dropout),
                )
            )
            in_ch = ch
        self.conv = nn.Sequential(*blocks)
        self.feature_size = chans[-1] * bands
        self.dropout = nn.Dropout(dropout)
        self.cell = nn.GRUCell(self.feature_size + (num_classes if label_feedback else 0), hidden)
        self.fc = nn.Linear(hidden, num_classes)
        self._graphs: OrderedDict[tuple, _GraphEntry | None] = OrderedDict()
        self._graph_warned = False

    # ----------------------------------------------------------------- public
    @property
    def _thr_logit(self) -> float:
        """sigmoid(logit) > threshold  <=>  logit > log(threshold / (1 - threshold))."""
        return math.log(self.threshold / (1.0 - self.threshold))

    def encode(self, features: Tensor) -> Tensor:
        """Conv front end: [B, T, n_mels] -> per-frame features [B, T, channels * bands], in
        bf16 autocast on CUDA when the model was built with amp=True."""
        if self.amp and features.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self._conv_frames(features)
        return self._conv_frames(features)

    def _conv_frames(self, features: Tensor) -> Tensor:
        x = self.conv(features.unsqueeze(1))  # [B, ch, T, bands]
        B, ch, T, bands = x.shape
        return self.dropout(x.permute(0, 2, 1, 3).reshape(B, T, ch * bands))

    def forward(
        self,
        features: Tensor,
        targets: Tensor | None = None,
        p_tf: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits [B, T, C] for features [B, T, n_mels]; see the module docstring for p_tf."""
        B, T = self._check(features, targets, p_tf)
        p_tf = float(p_tf)
        if not self.label_feedback or targets is None or p_tf == 0.0:
            mode = "free"  # the label part is the model's own predictions (or absent)
        elif p_tf == 1.0:
            mode = "full"
        else:
            mode = "mixed"
        mask = None
        if mode == "mixed":
            mask = forcing_mask(B, T, p_tf, generator, features.device)
        tshift = None
        if mode != "free":
            tshift = torch.zeros_like(targets, dtype=features.dtype)
            tshift[:, 1:] = targets[:, :-1]

        feats = self.encode(features)
        # The conv front end may run in reduced precision (our amp option, or the caller's
        # autocast); the recurrence always runs in the input's precision, with autocast off, so
        # the fed-back thresholds and the hand-written loops see one dtype.
        feats = feats.to(features.dtype)
        with torch.autocast(features.device.type, enabled=False):
            return self._recurrence(features, feats, tshift, mask, mode)

    def _recurrence(
        self, features: Tensor, feats: Tensor, tshift: Tensor | None, mask: Tensor | None, mode: str
    ) -> Tensor:
        """The GRU over per-frame features with label feedback, by the configured loop."""
        loop = self._resolve_loop(features)
        if loop == "eager":
            return self._eager(feats, tshift, mask)
        no_label = not self.label_feedback or mode == "full"
        if no_label and self._use_fused(feats):
            return self._fused(feats, tshift)
        if loop == "cuda_graph":
            out = self._graph_forward(feats, tshift, mask)
            if out is not None:
                return out
        return self._hoisted(feats, tshift, mask)

    # ----------------------------------------------------------------- loops
    def _eager(self, feats: Tensor, tshift: Tensor | None, mask: Tensor | None) -> Tensor:
        """Reference: one GRUCell call per frame, forcing chosen by torch.where on the mask."""
        B, T, _ = feats.shape
        h = feats.new_zeros(B, self.hidden)
        label = feats.new_zeros(B, self.num_classes)
        if mask is None and tshift is not None:
            mask = torch.ones(B, T, dtype=torch.bool, device=feats.device)
        outs = []
        for t in range(T):
            if self.label_feedback:
                if t > 0:
                    pred = (outs[-1].detach() > self._thr_logit).to(feats.dtype)
                    label = (
                        pred if mask is None else torch.where(mask[:, t, None], tshift[:, t], pred)
                    )
                inp = torch.cat([feats[:, t], label], dim=1)
            else:
                inp = feats[:, t]
            h = self.cell(inp, h)
            outs.append(self.fc(h))
        return torch.stack(outs, dim=1)

    def _projections(
        self, feats: Tensor, tshift: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Input projections for all frames at once: features (+ b_ih), and true labels."""
        Fs = self.feature_size
        w_ih = self.cell.weight_ih
        gi_free = F.linear(feats, w_ih[:, :Fs], self.cell.bias_ih)
        w_lab = w_ih[:, Fs:] if self.label_feedback else None
        gi_tf = None if tshift is None else gi_free + F.linear(tshift, w_lab)
        return gi_free, gi_tf, w_lab

    def _hoisted(self, feats: Tensor, tshift: Tensor | None, mask: Tensor | None) -> Tensor:
        """Projections outside the loop; the loop itself in _HoistedLoop (hand-written BPTT)."""
        gi_free, gi_tf, w_lab = self._projections(feats, tshift)
        m = None if mask is None else mask.t().unsqueeze(-1).contiguous()
        hs = _HoistedLoop.apply(
            _time_major(gi_free),
            _time_major(gi_tf),
            m,
            self.cell.weight_hh,
            self.cell.bias_hh,
            w_lab,
            self.fc.weight.detach(),
            self.fc.bias.detach(),
            self._thr_logit,
        )
        return self.fc(hs.transpose(0, 1))

    def _fused(self, feats: Tensor, tshift: Tensor | None) -> Tensor:
        """No prediction is fed back, so the recurrence is a plain GRU: PyTorch's fused kernel."""
        x = feats if tshift is None else torch.cat([feats, tshift], dim=-1)
        if not self.label_feedback:
            x = feats
        elif tshift is None:  # cannot happen: "full" mode always has targets
            raise AssertionError("fused GRU with label feedback needs targets")
        h0 = feats.new_zeros(1, feats.shape[0], self.hidden)
        c = self.cell
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            out, _ = torch._VF.gru(
                x,
                h0,
                [c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh],
                True,  # has_biases
                1,  # num_layers
                0.0,  # dropout
                self.training,
                False,  # bidirectional
                True,  # batch_first
            )
        return self.fc(out)

    def _use_fused(self, feats: Tensor) -> bool:
        """Whether the no-feedback case runs PyTorch's fused GRU (see fused_gru)."""
        if self.fused_gru is None:
            return feats.is_cuda or not (torch.is_grad_enabled() and feats.requires_grad)
        return bool(self.fused_gru)

    # ------------------------------------------------------------ cuda graphs
    def _resolve_loop(self, features: Tensor) -> str:
        """The loop actually used for this call ("auto" and unavailable CUDA graphs resolved)."""
        loop = self.loop
        graphable = features.is_cuda and self.training and torch.is_grad_enabled()
        if loop == "auto":
            return "cuda_graph" if graphable and self.max_graphs > 0 else "hoisted"
        if loop == "cuda_graph" and not graphable:
            return "hoisted"
        return loop

    def _graph_params(self) -> tuple[nn.Parameter, ...]:
        return (self.cell.weight_ih, self.cell.weight_hh, self.cell.bias_ih, self.cell.bias_hh,
                self.fc.weight, self.fc.bias)  # fmt: skip

    def _recurrent(self, feats: Tensor, tshift: Tensor, mask: Tensor) -> Tensor:
        """What one CUDA graph holds: projections, the hoisted loop and the output layer."""
        return self._hoisted(feats, tshift, mask)

    def _graph_forward(
        self, feats: Tensor, tshift: Tensor | None, mask: Tensor | None
    ) -> Tensor | None:
        """Replay (capturing on first use) the bucket's graphs; None means fall back."""
        B, T, _ = feats.shape
        if tshift is None:  # free running: no true label is ever picked
            tshift = feats.new_zeros(B, T, self.num_classes)
            mask = torch.zeros(B, T, dtype=torch.bool, device=feats.device)
        params = self._graph_params()
        ptrs = tuple(p.data_ptr() for p in params)
        grad_of = (feats.requires_grad, *(p.requires_grad for p in params))
        if not any(grad_of):
            return None  # nothing to backpropagate: no backward graph to capture
        key = (B, T, feats.dtype, feats.device, grad_of, self._thr_logit)
        entry = self._graphs.get(key, _MISSING)
        if isinstance(entry, _GraphEntry) and entry.ptrs != ptrs:
            self._graphs.clear()  # parameters were reallocated: every capture is stale
            entry = _MISSING
        if entry is _MISSING:
            if len(self._graphs) >= self.max_graphs:
                return None  # bucket budget spent (no eviction: it could thrash): hoisted loop
            entry = self._capture(feats, tshift, mask, params, ptrs)
            self._graphs[key] = entry
        if entry is None:
            return None
        return _GraphReplay.apply(entry, feats, tshift, mask, *params)

    def _capture(self, feats, tshift, mask, params, ptrs) -> _GraphEntry | None:
        """Warm up on a side stream, then capture forward and backward of the recurrent part."""
        try:
            s_feats = feats.detach().clone().requires_grad_(feats.requires_grad)
            s_tshift, s_mask = tshift.detach().clone(), mask.clone()
            grad_of = (s_feats.requires_grad, *(p.requires_grad for p in params))
            inputs = tuple(x for x, g in zip((s_feats, *params), grad_of, strict=True) if g)
            stream = torch.cuda.Stream(device=feats.device)
            stream.wait_stream(torch.cuda.current_stream(feats.device))
            with torch.cuda.stream(stream), torch.autocast("cuda", enabled=False):
                for _ in range(3):
                    out = self._recurrent(s_feats, s_tshift, s_mask)
                    torch.autograd.grad(out, inputs, torch.ones_like(out), allow_unused=True)
            torch.cuda.current_stream(feats.device).wait_stream(stream)
            fwd, bwd = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
            with torch.autocast("cuda", enabled=False):
                with torch.cuda.graph(fwd):
                    s_out = self._recurrent(s_feats, s_tshift, s_mask)
                s_gout = torch.empty_like(s_out)
                with torch.cuda.graph(bwd, pool=fwd.pool()):
                    got = torch.autograd.grad(s_out, inputs, s_gout, allow_unused=True)
            it = iter(got)
            grads = []
            for x, g in zip((s_feats, *params), grad_of, strict=True):
                grads.append(next(it) if g else None)
                if g and grads[-1] is None:
                    grads[-1] = torch.zeros_like(x)
            return _GraphEntry(fwd, bwd, s_feats, s_tshift, s_mask, s_out, s_gout,
                               tuple(grads), grad_of, ptrs)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - any capture failure falls back to hoisted
            if not self._graph_warned:
                warnings.warn(
                    f"CRNN loop='cuda_graph': capture failed ({err!r}); using loop='hoisted'",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._graph_warned = True
            return None

    def _apply(self, fn, recurse=True):
        self._graphs.clear()  # .to()/.cuda()/.half() move parameters: captured graphs go stale
        return super()._apply(fn, recurse)

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state["_graphs"] = OrderedDict()
        return state

    # ------------------------------------------------------------- checking
    def _check(self, features: Tensor, targets: Tensor | None, p_tf: float) -> tuple[int, int]:
        """Shapes and ranges a caller can get wrong, as CRNNConfigError naming the argument."""
        if not isinstance(features, Tensor) or features.dim() != 3:
            raise CRNNConfigError(
                f"features must be a [batch, frames, n_mels] tensor, got shape "
                f"{tuple(getattr(features, 'shape', ()))}"
            )
        B, T, M = features.shape
        if M != self.n_mels:
            raise CRNNConfigError(
                f"features has {M} mel bands, the model expects n_mels={self.n_mels}"
            )
        if T < 1 or B < 1:
            raise CRNNConfigError(
                f"features must have at least one sequence and frame, got {(B, T)}"
            )
        if targets is not None and tuple(targets.shape) != (B, T, self.num_classes):
            raise CRNNConfigError(
                f"targets must have shape {(B, T, self.num_classes)} (batch, frames, num_classes), "
                f"got {tuple(targets.shape)}"
            )
        try:
            p = float(p_tf)
        except (TypeError, ValueError):
            raise CRNNConfigError(f"p_tf must be a number in [0, 1], got {p_tf!r}") from None
        if not 0.0 <= p <= 1.0:
            raise CRNNConfigError(f"p_tf must be in [0, 1], got {p_tf!r}")
        return B, T
