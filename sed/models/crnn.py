"""Drossos et al. (2019) CRNN: conv blocks, then a GRUCell fed its own or the true previous labels.

At frame t the GRUCell reads the conv features of frame t and a label vector for frame t-1
(zeros at t = 0): for each sequence, the true labels with probability ``p_tf`` (teacher forcing;
one Bernoulli draw per sequence and frame, :func:`forcing_mask`), otherwise the model's own
prediction ``sigmoid(logit) > threshold``, which carries no gradient. :meth:`CRNN.plain_loop`
is that definition written out frame by frame. ``loop="eager"`` runs it; the other loops run
:func:`sed.models.recurrence.fast_loop`, which computes the same function faster (hoisted
projections with a hand-written backward, CUDA graphs, a lean no-gradient loop, PyTorch's fused
GRU when nothing is fed back) and is tested equal to the plain loop. :meth:`CRNN.stream` runs a
long file chunk by chunk (conv context either side, the GRU state carried), as one pass would.

With ``lookahead=k`` the cell at frame t reads the conv features of frame t + k instead of t
(zeros past the sequence's end), so it has heard k frames of a sound's start or end before it
labels frame t; the label vector fed back is still that of frame t-1. k = 0 is the paper's model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sed.errors import CRNNConfigError
from sed.models.recurrence import LOOPS, fast_loop, free_run

__all__ = ["CRNN", "CRNNConfigError", "LOOPS", "forcing_mask"]


def forcing_mask(
    batch: int,
    frames: int,
    p_tf: float,
    generator: torch.Generator | None,
    device: torch.device | str,
) -> Tensor:
    """The [B, T] teacher-forcing mask, True = feed the true labels: one Bernoulli(p_tf) draw per
    (sequence, frame), all up front, from `generator` (on its device; the global CPU generator
    when None). p_tf = 0 / 1 draws nothing (all False / all True)."""
    if p_tf <= 0.0 or p_tf >= 1.0:
        return torch.full((batch, frames), p_tf >= 1.0, dtype=torch.bool, device=device)
    draw_on = generator.device if generator is not None else torch.device("cpu")
    return (torch.rand(batch, frames, generator=generator, device=draw_on) < p_tf).to(device)


def _positive_ints(value: int | Sequence[int], n: int, key: str) -> tuple[int, ...]:
    """Broadcast an int to n conv blocks, or check one positive int per block."""
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n or not all(isinstance(v, int) and v > 0 for v in values):
        raise CRNNConfigError(f"{key} must be a positive int or {n} positive ints, got {value!r}")
    return values


class CRNN(nn.Module):
    """Conv blocks over (time, frequency), then a label-feedback GRUCell and a linear output.

    In training mode BatchNorm normalises over the batch, so one sequence's output depends on
    the others in its batch; in eval mode sequences are independent.
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
        lookahead: int = 0,
    ) -> None:
        super().__init__()
        for key, value in (("num_classes", num_classes), ("n_mels", n_mels), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise CRNNConfigError(f"{key} must be a positive int, got {value!r}")
        if not pool_sizes:
            raise CRNNConfigError("pool_sizes must name at least one conv block")
        pools = _positive_ints(tuple(pool_sizes), len(pool_sizes), "pool_sizes")
        chans = _positive_ints(channels, len(pools), "channels")
        bands = n_mels
        for i, p in enumerate(pools):
            if bands % p:
                raise CRNNConfigError(f"pool_sizes={list(pools)} does not divide n_mels="
                                      f"{n_mels}: block {i} pools {bands} bands by {p}")  # fmt: skip
            bands //= p
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise CRNNConfigError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
            raise CRNNConfigError(f"lookahead must be an int >= 0 (frames), got {lookahead!r}")
        if not 0.0 <= dropout < 1.0:
            raise CRNNConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        if not 0.0 < threshold < 1.0:
            raise CRNNConfigError(f"threshold must be in (0, 1), got {threshold!r}")
        if loop not in LOOPS:
            raise CRNNConfigError(f"loop must be one of {LOOPS}, got {loop!r}")

        self.n_mels, self.num_classes, self.hidden = n_mels, num_classes, hidden
        self.label_feedback, self.threshold, self.loop = label_feedback, threshold, loop
        self.lookahead = lookahead
        # frames of input either side that frame t's logits can depend on (besides the GRU state)
        self.receptive_field_radius = len(pools) * (kernel_size // 2) + lookahead
        blocks, in_ch = [], 1
        for ch, p in zip(chans, pools, strict=True):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, ch, kernel_size, padding=kernel_size // 2),
                    nn.BatchNorm2d(ch),
                    nn.ReLU(),
                    nn.MaxPool2d((1, p)),  # over frequency only: one output per frame
                    nn.Dropout(dropout),
                )
            )
            in_ch = ch
        self.conv = nn.Sequential(*blocks)
        self.feature_size = chans[-1] * bands
        self.dropout = nn.Dropout(dropout)
        self.cell = nn.GRUCell(self.feature_size + (num_classes if label_feedback else 0), hidden)
        self.fc = nn.Linear(hidden, num_classes)

    def encode(self, features: Tensor) -> Tensor:
        """Conv front end: [B, T, n_mels] -> per-frame features [B, T, channels * bands]."""
        x = self.conv(features.unsqueeze(1))  # [B, ch, T, bands]
        B, ch, T, bands = x.shape
        return self.dropout(x.permute(0, 2, 1, 3).reshape(B, T, ch * bands))

    def step_inputs(self, feats: Tensor) -> Tensor:
        """The conv features the cell reads at each frame: [B, T, F] -> frame t + lookahead's,
        zeros past the end (identity when lookahead = 0)."""
        k = self.lookahead
        if k == 0:
            return feats
        return F.pad(feats[:, k:], (0, 0, 0, min(k, feats.shape[1])))

    def forward(
        self,
        features: Tensor,
        targets: Tensor | None = None,
        p_tf: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits [B, T, C] for features [B, T, n_mels]; targets [B, T, C] are fed with
        probability p_tf (forcing draws from `generator`). No targets or p_tf = 0: free running."""
        B, T = self._check(features, targets, p_tf)
        p_tf = float(p_tf)
        prev = mask = None  # true labels of frame t-1 at frame t; where to feed them (None: all)
        if self.label_feedback and targets is not None and p_tf > 0.0:
            prev = F.pad(targets[:, :-1].to(features.dtype), (0, 0, 1, 0))
            if p_tf < 1.0:
                mask = forcing_mask(B, T, p_tf, generator, features.device)
        # The conv front end may run under the caller's autocast (the trainer's amp); the
        # recurrence runs in the input's precision, so every loop thresholds the same numbers.
        feats = self.step_inputs(self.encode(features).to(features.dtype))
        with torch.autocast(features.device.type, enabled=False):
            if self.loop == "eager":
                return self.plain_loop(feats, prev, mask)
            return fast_loop(self, feats, prev, mask)

    @torch.no_grad()
    def stream(
        self, features: Tensor, h0: Tensor | None = None, context: tuple[int, int] = (0, 0)
    ) -> tuple[Tensor, Tensor]:
        """Free-running logits of one chunk of a long file, resumable: features [B, T, n_mels]
        hold `context` = (before, after) frames of conv context around the chunk, h0 [B, hidden]
        is the hidden state after the previous chunk (None: the file's start). Returns the
        chunk's logits [B, T - before - after, C] and the hidden state after its last frame.
        Chunks with receptive_field_radius frames of context (fewer only at the file's ends)
        give the logits of one forward pass over the whole file. Eval mode only."""
        if self.training:
            raise CRNNConfigError("stream runs in eval mode only (call model.eval() first)")
        B, T = self._check(features, None, 0.0)
        before, after = context
        if not (0 <= before and 0 <= after and before + after < T):
            raise CRNNConfigError(f"context must be two frame counts >= 0 leaving frames of the "
                                  f"chunk, got {context} for {T} frames")  # fmt: skip
        # frames past the chunk's `after` context are past the file's end: zeros, as in one pass
        feats = self.step_inputs(self.encode(features))[:, before : T - after].to(features.dtype)
        with torch.autocast(features.device.type, enabled=False):
            return free_run(self, feats, h0)

    def plain_loop(
        self, feats: Tensor, prev: Tensor | None, mask: Tensor | None, h0: Tensor | None = None
    ) -> Tensor:
        """The recurrence by its definition, one GRUCell call per frame: logits [B, T, C] from
        conv features [B, T, F], true labels `prev` [B, T, C] of frame t-1 at frame t (None:
        free running) and the forcing `mask` [B, T] (None: every frame forced). From a hidden
        state `h0` [B, hidden] (a later chunk of a file), frame 0 is fed the prediction fc(h0)."""
        B, T, _ = feats.shape
        h = feats.new_zeros(B, self.hidden) if h0 is None else h0
        last = None if h0 is None else self.fc(h0)  # logits of frame t-1
        label = feats.new_zeros(B, self.num_classes)
        logits = []
        for t in range(T):
            if self.label_feedback and last is not None:
                label = (torch.sigmoid(last.detach()) > self.threshold).to(feats.dtype)
                if mask is not None:  # teacher forcing where the mask says so
                    label = torch.where(mask[:, t, None], prev[:, t], label)
                elif prev is not None:  # p_tf = 1: teacher forcing at every frame
                    label = prev[:, t]
            inp = torch.cat([feats[:, t], label], dim=1) if self.label_feedback else feats[:, t]
            h = self.cell(inp, h)
            last = self.fc(h)
            logits.append(last)
        return torch.stack(logits, dim=1)

    def _check(self, features: Tensor, targets: Tensor | None, p_tf: float) -> tuple[int, int]:
        """Shapes and ranges a caller can get wrong, as CRNNConfigError naming the argument."""
        shape = tuple(getattr(features, "shape", ()))
        if not isinstance(features, Tensor) or len(shape) != 3 or 0 in shape:
            raise CRNNConfigError(f"features must be a non-empty [batch, frames, n_mels] tensor, "
                                  f"got shape {shape}")  # fmt: skip
        B, T, M = shape
        if M != self.n_mels:
            raise CRNNConfigError(f"features has {M} mel bands, the model expects n_mels="
                                  f"{self.n_mels}")  # fmt: skip
        if targets is not None and tuple(targets.shape) != (B, T, self.num_classes):
            raise CRNNConfigError(f"targets must have shape {(B, T, self.num_classes)} (batch, "
                                  f"frames, num_classes), got {tuple(targets.shape)}")  # fmt: skip
        try:
            ok = 0.0 <= float(p_tf) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CRNNConfigError(f"p_tf must be a number in [0, 1], got {p_tf!r}")
        return B, T
