"""`python -m sed.benchmark`: how fast the CRNN's label-feedback time loop trains and evaluates.

For each device and shape it times, with warm-up, synchronisation and the median (and IQR) of
repeats, a full training step (forward, masked BCE, backward, Adam step; scheduled sampling at
``--p-tf``) and a free-running evaluation forward (eval mode, no_grad, p_tf = 0) of:

- ``conv``: the conv front end alone, so the recurrent share of a step is visible;
- ``seed``: the seed design's loop (a per-sample Python loop choosing each fed label around an
  ``nn.GRUCell``, as in the authors' code), over the same CRNN's modules and weights
  (:class:`SeedLoopCRNN`); it consumes the same forcing mask as the CRNN, so it computes the
  same logits as ``loop="eager"``;
- ``eager``, ``hoisted``, ``cuda_graph`` (CUDA only): ``CRNN(loop=...)``;
- ``cudnn_gru``: the conv front end, ``nn.GRU`` over [features, shifted targets] and the output
  layer (:class:`GRUBaseline`): full teacher forcing, the floor for one recurrent pass.

On CUDA the conv front end runs under bf16 autocast (``CRNN(amp=True)``), the recurrence in fp32.
``--epoch`` adds a whole training epoch of the drossos_synthetic setup from in-memory features
through the DataLoader, split into time spent waiting for data and computing.

    python -m sed.benchmark [--device cpu,cuda] [--shapes small,paper] [--repeats 5]
                            [--warmup 1] [--max-seconds 120] [--epoch]
                            [--json PATH] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sed.models.crnn import CRNN, forcing_mask

__all__ = [
    "BenchmarkError",
    "CASES",
    "GRUBaseline",
    "SHAPES",
    "SeedLoopCRNN",
    "Shape",
    "forcing_mask",
    "main",
    "run_benchmark",
    "to_markdown",
]


class BenchmarkError(ValueError):
    """A benchmark option out of range (unknown shape, case or device); the message names it."""


@dataclass(frozen=True)
class Shape:
    """One benchmark shape: batch, frames, mel bands, conv channels, GRU hidden size, classes."""

    name: str
    batch: int
    frames: int
    n_mels: int
    channels: int
    hidden: int
    classes: int

    def describe(self) -> str:
        return (
            f"B={self.batch}, T={self.frames}, mels={self.n_mels}, channels={self.channels}, "
            f"hidden={self.hidden}, C={self.classes}"
        )


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("tiny", 2, 32, 40, 4, 8, 3),  # test-suite smoke shape
        Shape("small", 8, 256, 40, 32, 64, 8),
        Shape("paper-c6", 8, 1024, 40, 256, 256, 6),  # Drossos et al. 2019, TUT-SED 2017
        Shape("paper-c16", 8, 1024, 40, 256, 256, 16),  # Drossos et al. 2019, TUT-SED synth.
    )
}
SHAPE_ALIASES = {"paper": ("paper-c6", "paper-c16")}

CASES: dict[str, str] = {
    "conv": "conv front end alone (forward + backward + Adam on its parameters)",
    "seed": "seed design's loop: nn.GRUCell, per-sample Python loop picks each fed label",
    "eager": "CRNN(loop='eager'): one GRUCell call per frame, torch.where on the mask",
    "hoisted": "CRNN(loop='hoisted'): hoisted projections, hand-written BPTT",
    "cuda_graph": "CRNN(loop='cuda_graph'): hoisted loop replayed from CUDA graphs",
    "cudnn_gru": "nn.GRU, full teacher forcing (cuDNN on CUDA, ATen on CPU): the floor",
}
CUDA_ONLY = ("cuda_graph",)
LR = 1e-4  # Adam, as configs/experiment/drossos_synthetic.yaml


# ------------------------------------------------------------------------------- models
class ConvFrontEnd(nn.Module):
    """A CRNN's conv blocks and dropout alone (shared modules): the non-recurrent part of a step."""

    def __init__(self, crnn: CRNN) -> None:
        super().__init__()
        self.conv, self.dropout = crnn.conv, crnn.dropout
        self._encode = crnn.encode  # the CRNN's own front end (bf16 on CUDA with amp=True)

    def encode(self, features: Tensor) -> Tensor:
        return self._encode(features).to(features.dtype)

    def forward(self, features: Tensor, targets: Tensor | None = None, p_tf: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
        return self.encode(features)


class SeedLoopCRNN(nn.Module):
    """The seed design's time loop around a CRNN's own conv blocks, GRUCell and output layer.

    As in the authors' code (Drossos et al. 2019), every frame runs the GRUCell, the output
    layer and ``sigmoid(logit) > threshold``, then a Python loop over the batch picks each
    sequence's next fed label: ``tf[ii] = y[ii, t] if flag else pred[ii]``. The flags come from
    :func:`forcing_mask`, the same draws the CRNN makes, so with the same generator state (and
    the same global RNG state for dropout) it computes the same logits as ``loop="eager"``.
    Dropout is applied to the whole feature sequence, as the CRNN does, not per frame as the
    seed did: same distribution, comparable draws. Without targets (evaluation) the fed label
    is the prediction for all sequences at once, the seed's free-running branch.
    """

    def __init__(self, crnn: CRNN) -> None:
        super().__init__()
        if not crnn.label_feedback:
            raise BenchmarkError("SeedLoopCRNN needs a CRNN with label_feedback=True")
        self.conv, self.dropout, self.cell, self.fc = crnn.conv, crnn.dropout, crnn.cell, crnn.fc
        self._encode = crnn.encode
        self.num_classes, self.hidden = crnn.num_classes, crnn.hidden
        self.threshold = crnn.threshold

    def encode(self, features: Tensor) -> Tensor:
        """The CRNN's conv front end (bf16 autocast on CUDA when the CRNN has amp=True)."""
        return self._encode(features).to(features.dtype)

    def forward(
        self,
        features: Tensor,
        targets: Tensor | None = None,
        p_tf: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits [B, T, C], the CRNN.forward contract, with the seed's per-sample loop."""
        B, T, _ = features.shape
        flags = None
        if targets is not None:
            flags = forcing_mask(B, T, float(p_tf), generator, features.device)
        feats = self.encode(features)
        h = feats.new_zeros(B, self.hidden)
        tf = feats.new_zeros(B, self.num_classes)
        outputs = feats.new_zeros(B, T, self.num_classes)
        for t in range(T):
            h = self.cell(torch.cat([feats[:, t], tf], dim=-1), h)
            out = self.fc(h)
            pred = out.detach().sigmoid().gt(self.threshold).to(feats.dtype)
            if flags is None:
                tf = pred
            elif t + 1 < T:
                for ii, flag in enumerate(flags[:, t + 1]):  # the label fed at frame t + 1
                    tf[ii] = targets[ii, t] if flag else pred[ii]
            outputs[:, t] = out
        return outputs


class GRUBaseline(nn.Module):
    """A CRNN's conv front end and output layer around ``nn.GRU`` with the GRUCell's weights.

    The GRU reads [features of frame t, true labels of frame t-1] for all frames at once (full
    teacher forcing, no prediction fed back), so PyTorch's fused kernel (cuDNN on CUDA) runs
    the recurrence: the floor for one recurrent pass of the same size. ``p_tf`` is ignored.
    """

    def __init__(self, crnn: CRNN) -> None:
        super().__init__()
        self.conv, self.dropout, self.fc = crnn.conv, crnn.dropout, crnn.fc
        self._encode = crnn.encode
        cell = crnn.cell
        self.gru = nn.GRU(cell.input_size, cell.hidden_size, batch_first=True)
        with torch.no_grad():
            self.gru.weight_ih_l0.copy_(cell.weight_ih)
            self.gru.weight_hh_l0.copy_(cell.weight_hh)
            self.gru.bias_ih_l0.copy_(cell.bias_ih)
            self.gru.bias_hh_l0.copy_(cell.bias_hh)

    def encode(self, features: Tensor) -> Tensor:
        """The CRNN's conv front end (bf16 autocast on CUDA when the CRNN has amp=True)."""
        return self._encode(features).to(features.dtype)

    def forward(
        self,
        features: Tensor,
        targets: Tensor,
        p_tf: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits [B, T, C] with the true labels of frame t-1 fed at every frame t."""
        feats = self.encode(features)
        tshift = torch.zeros_like(targets, dtype=feats.dtype)
        tshift[:, 1:] = targets[:, :-1]
        hidden, _ = self.gru(torch.cat([feats, tshift], dim=-1))
        return self.fc(hidden)


def _build(case: str, base: CRNN, device: torch.device) -> nn.Module:
    """A fresh copy of the shape's network (same weights) wrapped or configured for `case`."""
    crnn = copy.deepcopy(base)
    if case == "conv":
        model: nn.Module = ConvFrontEnd(crnn)
    elif case == "seed":
        model = SeedLoopCRNN(crnn)
    elif case == "cudnn_gru":
        model = GRUBaseline(crnn)
    else:
        crnn.loop = case
        model = crnn
    return model.to(device)


# ------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one synchronised call."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(samples: list[float], prefix: str = "") -> dict[str, Any]:
    keys = [f"{prefix}{k}" for k in ("median_s", "q1_s", "q3_s", "iqr_s")]
    if not samples:
        return dict.fromkeys(keys)
    q1, med, q3 = (float(v) for v in np.percentile(samples, [25, 50, 75]))
    if len(samples) < 2:
        q1 = q3 = None
    return dict(zip(keys, (med, q1, q3, None if q1 is None else q3 - q1), strict=True))


def time_call(
    fn: Callable[[], Any],
    device: torch.device,
    repeats: int,
    warmup: int,
    max_seconds: float,
    min_warmup: int = 0,
) -> dict[str, Any]:
    """Median and IQR of `repeats` synchronised calls after `warmup` untimed ones, within a budget.

    Wall-clock time (``median_s``...) and the process's CPU time over all its threads
    (``cpu_median_s``...; on a shared machine a single-threaded run's CPU time leaves out the
    time other jobs held the cores). Once `max_seconds` have passed (counting warm-up) no
    further call starts, except the `min_warmup` calls that must run (CUDA graph capture).
    Status: "ok" (all repeats), "truncated" (fewer repeats), or "cold" (no timed repeat fitted:
    the median is the first warm-up call, which includes first-call overheads: an upper bound).
    """
    start = time.perf_counter()
    first = None
    for i in range(max(warmup, min_warmup)):
        took = _timed(fn, device)
        first = took if first is None else first
        if i + 1 >= min_warmup and time.perf_counter() - start > max_seconds:
            break
    samples: list[tuple[float, float]] = []
    while len(samples) < repeats and (
        not samples and first is None or time.perf_counter() - start <= max_seconds
    ):
        samples.append(_timed(fn, device))
    first = samples[0] if first is None and samples else first
    result: dict[str, Any] = {"status": "ok" if len(samples) == repeats else "truncated"}
    used = samples or [first]
    result.update(_summary([w for w, _ in used]))
    result.update(_summary([c for _, c in used], "cpu_"))
    if not samples:
        result["status"] = "cold"
        result["note"] = (
            f"the first (warm-up) call took {first[0]:.3g} s, over --max-seconds="
            f"{max_seconds:g}: no timed repeat; the median is that cold call, an upper bound"
        )
    result["n"] = len(samples)
    result["samples_s"] = [w for w, _ in samples]
    result["cpu_samples_s"] = [c for _, c in samples]
    result["first_s"] = first[0]
    result["seconds_spent"] = time.perf_counter() - start
    return result


def _skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason, "median_s": None, "n": 0}


def _usable(timing: dict[str, Any] | None, key: str = "median_s") -> bool:
    return bool(timing) and timing.get(key) is not None


# ------------------------------------------------------------------------------- one shape
def _data(shape: Shape, device: torch.device, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape.batch, shape.frames, shape.n_mels, generator=g)
    y = (torch.rand(shape.batch, shape.frames, shape.classes, generator=g) < 0.3).float()
    mask = torch.ones(shape.batch, shape.frames, dtype=torch.bool)
    return x.to(device), y.to(device), mask.to(device)


def fast_case(device: torch.device) -> str:
    """The fast loop the training loop uses on this device: cuda_graph on CUDA, else hoisted."""
    return "cuda_graph" if device.type == "cuda" else "hoisted"


def _bench_case(
    case: str,
    base: CRNN,
    shape: Shape,
    device: torch.device,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Training step and evaluation forward of one case at one shape and device."""
    from sed.inference import masked_bce  # the training loop's loss

    x, y, frame_mask = _data(shape, device, args.seed)
    model = _build(case, base, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator(device=device).manual_seed(args.seed + 1)
    p_tf = float(args.p_tf)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(x, y, p_tf=p_tf, generator=generator)
        loss = out.float().mean() if case == "conv" else masked_bce(out.float(), y, frame_mask)
        loss.backward()
        optimizer.step()

    leaf: Tensor | None = None  # fixed conv features for the recurrent-only step

    def recurrent_step() -> None:
        leaf.grad = None
        train_step()

    @torch.no_grad()
    def eval_forward() -> None:
        if case == "cudnn_gru":
            model(x, y)
        else:
            model(x)

    result: dict[str, Any] = {"description": CASES[case]}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.train()
        result["train_step"] = time_call(
            train_step, device, args.repeats, args.warmup, args.max_seconds,
            min_warmup=1 if case == "cuda_graph" else 0,
        )  # fmt: skip
        if case == "cuda_graph":
            captured = any(e is not None for e in getattr(model, "_graphs", {}).values())
            result["graph_captured"] = captured
            if not captured:
                result["train_step"]["note"] = (
                    "CUDA graph capture failed or was not used: these are hoisted-loop timings"
                )
        if device.type == "cuda":
            result["train_peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        if case == "conv":
            result["recurrent_step"] = _skipped("no recurrent part")
        else:  # the same step with the conv front end replaced by fixed features
            with torch.no_grad():
                leaf = model.encode(x).detach().requires_grad_()
            model.encode = lambda features: leaf
            try:
                result["recurrent_step"] = time_call(
                    recurrent_step, device, args.repeats, args.warmup, args.max_seconds,
                    min_warmup=1 if case == "cuda_graph" else 0,
                )  # fmt: skip
            finally:
                del model.encode
        model.eval()
        if case == "cuda_graph":
            result["eval_forward"] = _skipped(
                "graphs are captured for training only; evaluation runs loop='hoisted'"
            )
        else:
            result["eval_forward"] = time_call(
                eval_forward, device, args.repeats, args.warmup, args.max_seconds
            )
    if case == "cudnn_gru":
        result["eval_forward"]["note"] = "teacher-forced (not free running): the GRU floor"
    if caught:
        result["warnings"] = sorted({str(w.message) for w in caught})
    return result


def _ratio(
    a: dict | None, b: dict | None, sub: dict | None = None, key: str = "median_s"
) -> float | None:
    """(a - sub) / (b - sub) of medians, None when a value is missing or not positive."""
    if not (_usable(a, key) and _usable(b, key)) or (sub is not None and not _usable(sub, key)):
        return None
    off = sub[key] if sub is not None else 0.0
    num, den = a[key] - off, b[key] - off
    return num / den if den > 0 and num > 0 else None


def shape_ratios(
    cases: dict[str, dict[str, Any]], device: torch.device, key: str = "median_s"
) -> dict[str, Any]:
    """Ratios of medians (`key`) for one (device, shape): fast/GRU, seed/fast, recurrent shares."""
    fast = fast_case(device)

    def ratio(a: str, b: str, kind: str = "train_step", sub: str | None = None) -> float | None:
        def get(case: str | None) -> dict | None:
            return None if case is None else cases.get(case, {}).get(kind)

        return _ratio(get(a), get(b), get(sub), key)

    ratios: dict[str, Any] = {
        "fast_case": fast,
        "fast_over_gru_step": ratio(fast, "cudnn_gru"),
        "seed_over_fast_step": ratio("seed", fast),
        "eager_over_fast_step": ratio("eager", fast),
        "recurrent_fast_over_gru_step": ratio(fast, "cudnn_gru", sub="conv"),
        "recurrent_only_fast_over_gru": ratio(fast, "cudnn_gru", "recurrent_step"),
        "recurrent_only_seed_over_fast": ratio("seed", fast, "recurrent_step"),
        "recurrent_only_eager_over_fast": ratio("eager", fast, "recurrent_step"),
        "seed_over_fast_eval": ratio("seed", "hoisted", "eval_forward"),
        "eager_over_fast_eval": ratio("eager", "hoisted", "eval_forward"),
    }
    if device.type == "cuda":
        ratios["hoisted_over_gru_step"] = ratio("hoisted", "cudnn_gru")
        ratios["seed_over_hoisted_step"] = ratio("seed", "hoisted")
        ratios["recurrent_only_hoisted_over_gru"] = ratio("hoisted", "cudnn_gru", "recurrent_step")
    shares = {}
    for case in cases:
        if case != "conv":
            r = ratio(case, "conv")
            shares[case] = None if r is None or r < 1.0 else 1.0 - 1.0 / r  # r < 1: noise
    ratios["recurrent_share_step"] = shares
    statuses = [t.get("status") for c in cases.values() for t in c.values() if isinstance(t, dict)]
    ratios["approximate"] = any(s in ("cold", "truncated") for s in statuses)
    return ratios


# ------------------------------------------------------------------------------- epoch mode
def _epoch_setup() -> dict[str, Any]:
    """The drossos_synthetic training setup's shapes (configs/experiment/drossos_synthetic.yaml:
    100 training clips of 20.48 s at 16 kHz, hop 320, so one 1024-frame sequence per clip)."""
    from sed.data.synthetic import CLASSES
    from sed.features import num_frames

    hop, sample_rate, clip_seconds = 320, 16000, 20.48
    return {
        "files": 100,
        "frames_per_file": num_frames(int(round(clip_seconds * sample_rate)), hop),
        "n_mels": 40,
        "classes": len(CLASSES),
        "seq_len": 1024,
        "batch_size": 8,
        "channels": 256,
        "hidden": 256,
        "lr": LR,
        "grad_clip": 0.5,
        "sampler": {"gamma": 0.125, "p_min": 0.05, "p_max": 0.9},
    }


def run_epoch(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """One training epoch of drossos_synthetic's shapes: time waiting for data vs computing.

    Random in-memory features through SequenceDataset, collate and a shuffling DataLoader
    (``--num-workers``, pinned memory on CUDA), as the Trainer builds it; each batch is timed
    as fetch (DataLoader), transfer (to the device) and compute (step, loss.item(), sampler
    step), with a synchronisation after transfer and after compute so the split is honest.
    """
    from torch.utils.data import DataLoader

    from sed.data.datasets import SequenceDataset, collate
    from sed.inference import masked_bce
    from sed.sampling import ScheduledSampler

    setup = _epoch_setup()
    rng = np.random.default_rng(args.seed)
    n, frames = setup["files"], setup["frames_per_file"]
    features = [rng.standard_normal((frames, setup["n_mels"]), dtype=np.float32) for _ in range(n)]
    targets = [(rng.random((frames, setup["classes"])) < 0.2).astype(np.float32) for _ in range(n)]
    dataset = SequenceDataset(features, targets, [f"clip_{i:04d}.wav" for i in range(n)],
                              seq_len=setup["seq_len"])  # fmt: skip
    batches = math.ceil(len(dataset) / setup["batch_size"])
    torch.manual_seed(args.seed)
    model = CRNN(n_mels=setup["n_mels"], num_classes=setup["classes"],
                 channels=setup["channels"], hidden=setup["hidden"],
                 amp=device.type == "cuda").to(device)  # fmt: skip
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=setup["lr"])
    sampler = ScheduledSampler(batches, **setup["sampler"])
    forcing = torch.Generator(device=device).manual_seed(args.seed + 1)

    def loader(epoch: int) -> DataLoader:
        return DataLoader(dataset, batch_size=setup["batch_size"], shuffle=True,
                          generator=torch.Generator().manual_seed(args.seed + epoch),
                          collate_fn=collate, num_workers=args.num_workers,
                          pin_memory=device.type == "cuda")  # fmt: skip

    def step(batch: dict[str, Any]) -> tuple[float, float]:
        start = time.perf_counter()
        x = batch["features"].to(device, non_blocking=True)
        y = batch["targets"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        _sync(device)
        moved = time.perf_counter()
        logits = model(x, y, p_tf=float(sampler.probability), generator=forcing)
        loss = masked_bce(logits.float(), y, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), setup["grad_clip"])
        optimizer.step()
        sampler.step()
        loss.item()
        _sync(device)
        return moved - start, time.perf_counter() - moved

    warm = max(args.warmup, 1 if device.type == "cuda" else 0)  # CUDA graph capture
    if warm:
        for i, batch in enumerate(loader(0)):
            if i >= warm:
                break
            step(batch)
    limit = args.epoch_batches or batches
    fetch, transfer, compute = [], [], []
    epoch_start = time.perf_counter()
    iterator = iter(loader(1))
    while len(compute) < limit:
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        fetch.append(time.perf_counter() - t0)
        moved, done = step(batch)
        transfer.append(moved)
        compute.append(done)
    wall = time.perf_counter() - epoch_start
    del iterator
    total = sum(fetch) + sum(transfer) + sum(compute)
    return {
        "setup": setup,
        "sequences": len(dataset),
        "padded_frame_share": 1.0
        - sum(v for _, _, v in dataset.index) / (len(dataset) * setup["seq_len"]),
        "batches_per_epoch": batches,
        "batches_timed": len(compute),
        "partial": len(compute) < batches,
        "num_workers": args.num_workers,
        "warmup_batches": warm,
        "loop": model._resolve_loop(torch.empty(1, 1, 1, device=device)),
        "graph_captured": (
            any(e is not None for e in model._graphs.values()) if device.type == "cuda" else None
        ),
        "wall_s": wall,
        "fetch_s": sum(fetch),
        "transfer_s": sum(transfer),
        "compute_s": sum(compute),
        "data_share": (sum(fetch) + sum(transfer)) / total if total else None,
        "fetch_share": sum(fetch) / total if total else None,
        "compute_share": sum(compute) / total if total else None,
        "median_fetch_s": float(np.median(fetch)) if fetch else None,
        "median_compute_s": float(np.median(compute)) if compute else None,
        "epoch_estimate_s": wall / len(compute) * batches if compute else None,
    }


# ------------------------------------------------------------------------------- driver
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(devices: Sequence[torch.device], argv: Sequence[str] = ()) -> dict[str, Any]:
    """Where and when the numbers were taken: versions, hardware, threads, load, TF32 flags."""
    env: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m sed.benchmark", *argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if any(d.type == "cuda" for d in devices):
        index = next(d for d in devices if d.type == "cuda")
        env.update({
            "gpu": torch.cuda.get_device_name(index),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        })  # fmt: skip
    return env


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _resolve(args: argparse.Namespace) -> tuple[list[torch.device], list[Shape], list[str]]:
    """Devices, shapes and cases named by the options, or BenchmarkError naming the bad one."""
    devices = []
    for name in _split(args.device):
        try:
            device = torch.device(name)
        except RuntimeError:
            raise BenchmarkError(f"--device: unknown device {name!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise BenchmarkError(f"--device: only cpu and cuda are supported, got {name!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BenchmarkError(f"--device {name!r}: CUDA is not available on this machine")
        devices.append(device)
    if not devices:
        raise BenchmarkError("--device names no device")
    shapes: list[Shape] = []
    for name in _split(args.shapes):
        if name == "none":
            continue
        names = SHAPE_ALIASES.get(name, (name,))
        for n in names:
            if n not in SHAPES:
                known = sorted([*SHAPES, *SHAPE_ALIASES, "none"])
                raise BenchmarkError(f"--shapes: unknown shape {n!r}; known: {known}")
            if SHAPES[n] not in shapes:
                shapes.append(SHAPES[n])
    cases = _split(args.cases)
    for case in cases:
        if case not in CASES:
            raise BenchmarkError(f"--cases: unknown case {case!r}; known: {list(CASES)}")
    if not 0.0 <= args.p_tf <= 1.0:
        raise BenchmarkError(f"--p-tf must be in [0, 1], got {args.p_tf}")
    for key in ("repeats", "warmup", "num_workers", "epoch_batches"):
        if getattr(args, key) < (1 if key == "repeats" else 0):
            raise BenchmarkError(f"--{key.replace('_', '-')} out of range: {getattr(args, key)}")
    if args.max_seconds <= 0:
        raise BenchmarkError(f"--max-seconds must be > 0, got {args.max_seconds}")
    return devices, shapes, cases


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run every (device, shape, case) the options name; the JSON document as a dict."""
    devices, shapes, cases = _resolve(args)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, devices, shapes, cases)
    finally:
        torch.set_num_threads(threads)


def _run(
    args: argparse.Namespace, devices: list[torch.device], shapes: list[Shape], cases: list[str]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "environment": environment(devices, getattr(args, "argv", sys.argv[1:])),
        "settings": {
            "repeats": args.repeats,
            "warmup": args.warmup,
            "max_seconds": args.max_seconds,
            "p_tf": args.p_tf,
            "seed": args.seed,
            "lr": LR,
            "shapes": [asdict(s) for s in shapes],
            "cases": cases,
            "amp": "bf16 autocast for the conv front end on CUDA; fp32 recurrence; fp32 on CPU",
        },
        "cases": {c: CASES[c] for c in cases},
        "results": [],
    }
    for device in devices:
        for shape in shapes:
            torch.manual_seed(args.seed)
            base = CRNN(n_mels=shape.n_mels, num_classes=shape.classes, channels=shape.channels,
                        hidden=shape.hidden, amp=device.type == "cuda")  # fmt: skip
            entry: dict[str, Any] = {"device": str(device), "shape": shape.name,
                                     "shape_params": asdict(shape), "cases": {}}  # fmt: skip
            for case in cases:
                if case in CUDA_ONLY and device.type != "cuda":
                    entry["cases"][case] = {
                        "description": CASES[case],
                        "train_step": _skipped("CUDA only"),
                        "recurrent_step": _skipped("CUDA only"),
                        "eval_forward": _skipped("CUDA only"),
                    }
                    continue
                try:
                    result = _bench_case(case, base, shape, device, args)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                    message = f"{type(err).__name__}: {err}"[:500]
                    failed = {"status": "error", "median_s": None, "n": 0}
                    result = {"description": CASES[case], "error": message,
                              "train_step": failed, "recurrent_step": failed,
                              "eval_forward": failed}  # fmt: skip
                entry["cases"][case] = result
                _log(
                    f"[{device} {shape.name}] {case:10s} train {_fmt_timing(result['train_step'])}"
                    f" | recurrent {_fmt_timing(result['recurrent_step'])}"
                    f" | eval {_fmt_timing(result['eval_forward'])}",
                    args.quiet,
                )
            entry["ratios"] = shape_ratios(entry["cases"], device)
            if device.type == "cpu":
                entry["ratios_cpu_time"] = shape_ratios(entry["cases"], device, "cpu_median_s")
            doc["results"].append(entry)
    doc["targets"] = evaluate_targets(doc["results"])
    if args.epoch:
        doc["epoch"] = []
        for device in devices:
            _log(f"[{device}] drossos_synthetic epoch ...", args.quiet)
            result = {"device": str(device), **run_epoch(device, args)}
            doc["epoch"].append(result)
            _log(f"[{device}] epoch {result['wall_s']:.2f} s, data share "
                 f"{100 * result['data_share']:.2f}%", args.quiet)  # fmt: skip
    doc["environment"]["load_average_end"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )
    return doc


TARGETS = (
    # (device type, shape prefix, ratio key, comparison, bound, text)
    ("cuda", "paper", "fast_over_gru_step", "<=", 2.0,
     "H100, paper shape: scheduled-sampling step <= 2x the cuDNN nn.GRU (full TF) step"),
    ("cuda", "paper", "seed_over_fast_step", ">=", 10.0,
     "H100, paper shape: scheduled-sampling step >= 10x faster than the seed loop"),
    ("cpu", "small", "recurrent_fast_over_gru_step", "<=", 3.0,
     "CPU, small shape: recurrent part (step - conv) within 3x of nn.GRU's"),
    ("cpu", "small", "recurrent_only_fast_over_gru", "<=", 3.0,
     "CPU, small shape: recurrent part alone (fixed conv features) within 3x of nn.GRU's"),
)  # fmt: skip


def _status(value: float | None, op: str, bound: float) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= bound if op == "<=" else value >= bound) else "missed"


def evaluate_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 6's targets against the measured ratios: met, missed, or not measured."""
    out = []
    for dev, prefix, key, op, bound, text in TARGETS:
        for entry in results:
            if torch.device(entry["device"]).type != dev or not entry["shape"].startswith(prefix):
                continue
            value = entry["ratios"].get(key)
            cpu_value = entry.get("ratios_cpu_time", {}).get(key)
            out.append({"target": text, "device": entry["device"], "shape": entry["shape"],
                        "ratio": key, "bound": f"{op} {bound:g}", "value": value,
                        "status": _status(value, op, bound), "value_cpu_time": cpu_value,
                        "status_cpu_time": _status(cpu_value, op, bound)})  # fmt: skip
        if not any(t["target"] == text for t in out):
            out.append({"target": text, "device": dev, "shape": prefix, "ratio": key,
                        "bound": f"{op} {bound:g}", "value": None, "status": "not measured"})  # fmt: skip
    return out


# ------------------------------------------------------------------------------- markdown
def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def _fmt_timing(t: dict[str, Any], prefix: str = "") -> str:
    status = t.get("status")
    if status == "skipped":
        return f"skipped: {t.get('reason')}"
    if status == "error":
        return "error"
    text = _fmt_seconds(t.get(f"{prefix}median_s"))
    if t.get(f"{prefix}iqr_s") is not None:
        text += f" (IQR {_fmt_seconds(t[f'{prefix}iqr_s'])})"
    if status == "cold":
        text = f"<= {text} (1 cold call, over budget)"
    else:
        text += f", n={t.get('n')}"
    return text


def _fmt_ratio(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _shape_markdown(entry: dict[str, Any]) -> list[str]:
    """One (device, shape): the table of cases, the ratios, and notes."""
    shape = Shape(**entry["shape_params"])
    on_cpu = torch.device(entry["device"]).type == "cpu"
    lines = [f"## {entry['device']}, {shape.name} ({shape.describe()})", ""]
    lines += ["| case | training step | recurrent part alone (step) | evaluation forward | "
              "recurrent share of step |", "|---|---|---|---|---|"]  # fmt: skip
    shares = entry["ratios"]["recurrent_share_step"]
    for case, result in entry["cases"].items():
        share = shares.get(case)
        cells = [case]
        for kind in ("train_step", "recurrent_step", "eval_forward"):
            timing = result.get(kind, {"status": "skipped", "reason": "not measured"})
            text = _fmt_timing(timing)
            if on_cpu and _usable(timing, "cpu_median_s"):
                text += f"; CPU time {_fmt_seconds(timing['cpu_median_s'])}"
            cells.append(text)
        cells.append("-" if share is None else f"{100 * share:.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    r, rc = entry["ratios"], entry.get("ratios_cpu_time")

    def both(key: str, digits: int = 2, suffix: str = "") -> str:
        text = f"{_fmt_ratio(r.get(key), digits)}{suffix}"
        if rc is not None:
            text += f" (CPU time {_fmt_ratio(rc.get(key), digits)}{suffix})"
        return text

    lines += ["", f"Ratios of medians, wall clock (fast loop = {r['fast_case']}"
                  f"{'; some inputs cold or truncated' if r['approximate'] else ''}):", "",
              f"- fast / nn.GRU, training step: {both('fast_over_gru_step')}",
              f"- recurrent part (step - conv), fast / nn.GRU: "
              f"{both('recurrent_fast_over_gru_step')}",
              f"- recurrent part alone (fixed conv features), fast / nn.GRU: "
              f"{both('recurrent_only_fast_over_gru')}",
              f"- seed loop / fast, training step (speed-up): {both('seed_over_fast_step', 1, 'x')}",
              f"- seed loop / fast, recurrent part alone: "
              f"{both('recurrent_only_seed_over_fast', 1, 'x')}",
              f"- eager / fast, recurrent part alone: "
              f"{both('recurrent_only_eager_over_fast', 1, 'x')}",
              f"- eager / fast, training step: {both('eager_over_fast_step', 1, 'x')}",
              f"- seed loop / hoisted, evaluation: {both('seed_over_fast_eval', 1, 'x')}",
              f"- eager / hoisted, evaluation: {both('eager_over_fast_eval', 1, 'x')}"]  # fmt: skip
    if "hoisted_over_gru_step" in r:
        lines += [f"- hoisted / nn.GRU, training step: {both('hoisted_over_gru_step')}",
                  f"- seed loop / hoisted, training step: "
                  f"{both('seed_over_hoisted_step', 1, 'x')}",
                  f"- recurrent part alone, hoisted / nn.GRU: "
                  f"{both('recurrent_only_hoisted_over_gru')}"]  # fmt: skip
    notes = [f"{case}: {t['note']}" for case, res in entry["cases"].items()
             for t in (res.get("train_step"), res.get("recurrent_step"), res.get("eval_forward"))
             if isinstance(t, dict) and t.get("note")]  # fmt: skip
    notes += [f"{case}: {res['error']}" for case, res in entry["cases"].items()
              if res.get("error")]  # fmt: skip
    notes += [f"{case}: warning: {w}" for case, res in entry["cases"].items()
              for w in res.get("warnings", [])]  # fmt: skip
    if notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    return [*lines, ""]


def to_markdown(doc: dict[str, Any]) -> str:
    """The JSON document as Markdown: environment, one table per (device, shape), ratios, targets."""
    env, settings = doc["environment"], doc["settings"]
    lines = ["# CRNN time-loop benchmark", ""]
    facts = [
        ("date (UTC)", env["date"]),
        ("command", f"`{env['command']}`"),
        ("torch", env["torch"]),
        ("python", env["python"]),
        ("CPU", f"{env['cpu']} ({env['cpu_count']} logical CPUs, torch threads "
                f"{env['torch_threads']})"),  # fmt: skip
        ("load average (1/5/15 min) start / end",
         f"{_fmt_load(env.get('load_average'))} / {_fmt_load(env.get('load_average_end'))}"),
    ]  # fmt: skip
    if "gpu" in env:
        facts.append(("GPU", f"{env['gpu']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
                             f"cudnn.allow_tf32={env['cudnn_allow_tf32']}, "
                             f"matmul.allow_tf32={env['matmul_allow_tf32']})"))  # fmt: skip
    facts.append(("settings", f"repeats {settings['repeats']}, warm-up {settings['warmup']}, "
                              f"max {settings['max_seconds']:g} s per case, training p_tf "
                              f"{settings['p_tf']:g}, Adam lr {settings['lr']:g}; "
                              f"{settings['amp']}"))  # fmt: skip
    lines += [f"- {k}: {v}" for k, v in facts]
    lines += ["", "Times are medians of synchronised repeats (IQR in brackets), wall clock; on"
              " CPU also the process's CPU time (all threads), which on a shared machine leaves"
              " out the time other jobs held the cores. Training step = forward + masked BCE +"
              " backward + Adam step; evaluation = eval mode, no_grad, free running (p_tf = 0),"
              " except cudnn_gru (teacher-forced: nn.GRU cannot feed predictions back)."
              " Recurrent share = (step - conv) / step. Recurrent part alone = the same"
              " training step with the conv front end replaced by fixed features (which still"
              " receive a gradient).", ""]  # fmt: skip
    for entry in doc["results"]:
        lines += _shape_markdown(entry)
    if doc.get("targets"):
        lines += ["## Targets (issue 6)", "",
                  "| target | device, shape | ratio | measured (wall) | status | "
                  "measured (process CPU time) |", "|---|---|---|---|---|---|"]  # fmt: skip
        for t in doc["targets"]:
            cpu = t.get("value_cpu_time")
            cpu_text = "-" if cpu is None else f"{cpu:.2f} ({t['status_cpu_time']})"
            lines.append(f"| {t['target']} | {t['device']}, {t['shape']} | {t['ratio']} "
                         f"{t['bound']} | {_fmt_ratio(t['value'])} | {t['status']} | "
                         f"{cpu_text} |")  # fmt: skip
        lines.append("")
    for e in doc.get("epoch", []):
        s = e["setup"]
        lines += [f"## {e['device']}, one drossos_synthetic training epoch", "",
                  f"{s['files']} files x {s['frames_per_file']} frames of random in-memory "
                  f"features, {s['classes']} classes, seq_len {s['seq_len']}, batch "
                  f"{s['batch_size']} -> {e['sequences']} sequences, {e['batches_per_epoch']} "
                  f"batches; CRNN channels {s['channels']}, hidden {s['hidden']}, loop "
                  f"{e['loop']}{_captured(e.get('graph_captured'))}; DataLoader num_workers {e['num_workers']}; "
                  f"{e['warmup_batches']} warm-up batches before timing. "
                  f"{100 * e['padded_frame_share']:.0f}% of the frames in each batch are "
                  "padding (files shorter than seq_len).", "",
                  "| batches timed | wall | fetch (DataLoader) | transfer | compute | "
                  "data share | epoch (est.) |", "|---|---|---|---|---|---|---|",
                  f"| {e['batches_timed']}{' (partial)' if e['partial'] else ''} | "
                  f"{_fmt_seconds(e['wall_s'])} | {_fmt_seconds(e['fetch_s'])} | "
                  f"{_fmt_seconds(e['transfer_s'])} | {_fmt_seconds(e['compute_s'])} | "
                  f"{100 * e['data_share']:.2f}% | {_fmt_seconds(e['epoch_estimate_s'])} |", ""]  # fmt: skip
    return "\n".join(lines)


def _captured(flag: bool | None) -> str:
    return "" if flag is None else f" (CUDA graphs captured: {flag})"


def _fmt_load(load: Sequence[float] | None) -> str:
    return "-" if not load else " ".join(f"{v:.2f}" for v in load)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sed.benchmark",
        description="Time the CRNN's training step and free-running evaluation per time loop.",
    )
    default_device = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument(
        "--device",
        default=default_device,
        help=f"comma-separated devices (default: {default_device})",
    )
    parser.add_argument(
        "--shapes",
        default="small,paper",
        help=f"comma-separated shapes from {sorted(SHAPES)}; 'paper' = both paper "
        "shapes; 'none' = no per-step cases (with --epoch)",
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated cases (default: all of {list(CASES)})",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed calls first (CUDA graph capture always gets one)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120.0,
        help="time budget per case and kind; no call starts once it is spent",
    )
    parser.add_argument(
        "--p-tf", type=float, default=0.5, help="teacher-forcing probability of the training steps"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)"
    )
    parser.add_argument(
        "--epoch",
        action="store_true",
        help="also time one drossos_synthetic training epoch per device",
    )
    parser.add_argument(
        "--epoch-batches",
        type=int,
        default=0,
        help="time only this many batches of the epoch (0: all)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader workers in --epoch mode (the trainer's default: 0)",
    )
    parser.add_argument("--json", type=Path, help="write the JSON document here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown tables here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m sed.benchmark`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        doc = run_benchmark(args)
    except BenchmarkError as err:
        parser.error(str(err))
    text = to_markdown(doc)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
