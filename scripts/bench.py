"""Time the CRNN's label-feedback loop: a training step and a free-running evaluation per loop.

    python scripts/bench.py [--device cpu] [--shapes small,paper-c6] [--cases seed,hoisted]
                            [--repeats 5] [--warmup 1] [--p-tf 0.5] [--threads 1] [--json PATH]

Every case is built from one CRNN per shape (same seed, same weights):

- conv: the conv front end and a linear readout, no recurrence (the non-recurrent cost);
- seed: the seed design's loop (`seed_loop`: per frame a GRUCell, the output layer,
  sigmoid > 0.5, then a Python loop over the batch choosing each sequence's next label);
- eager, hoisted, cuda_graph (CUDA only): CRNN(loop=...), see sed.models.recurrence;
- gru: nn.GRU with the cell's weights over [features, true labels of t-1], full teacher forcing
  (cuDNN on CUDA): the floor for one recurrent pass of this size.

Per case, medians of `--repeats` synchronised calls after `--warmup` untimed ones: the Trainer's
own training step (forward at p_tf, masked BCE, backward, clipping, Adam), the same step with the
conv front end replaced by fixed features (the recurrent part alone), and an evaluation forward
(eval mode, no_grad, free running). On CUDA the trainer's bf16 autocast applies, as in training.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from sed.models import CRNN, recurrence
from sed.models.crnn import forcing_mask
from sed.sampling import ConstantSampler
from sed.training import Trainer, TrainerSettings

SHAPES = {  # batch, frames, conv channels, GRU hidden, classes (40 mel bands)
    "tiny": (2, 32, 4, 8, 3),  # the test suite's
    "small": (8, 256, 32, 64, 8),
    "paper-c6": (8, 1024, 256, 256, 6),  # Drossos et al. 2019: TUT-SED 2017
    "paper-c16": (8, 1024, 256, 256, 16),  # Drossos et al. 2019: TUT-SED Synthetic 2016
}
CASES = ("conv", "seed", "eager", "hoisted", "cuda_graph", "gru")
LR = 1e-4  # Adam, as configs/experiment/drossos_synthetic.yaml


def seed_loop(crnn: CRNN, features: Tensor, targets: Tensor | None = None, p_tf: float = 0.0,
              generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """The seed design's loop (as in Drossos et al.'s code) around a CRNN's own modules; it draws
    the CRNN's forcing mask, so it computes the logits of `CRNN.plain_loop`."""
    B, T, _ = features.shape
    flags = None if targets is None else forcing_mask(B, T, p_tf, generator, features.device)
    feats = crnn.encode(features).to(features.dtype)
    h = feats.new_zeros(B, crnn.hidden)
    tf = feats.new_zeros(B, crnn.num_classes)
    outputs = feats.new_zeros(B, T, crnn.num_classes)
    with torch.autocast(features.device.type, enabled=False):
        for t in range(T):
            h = crnn.cell(torch.cat([feats[:, t], tf], dim=-1), h)
            out = crnn.fc(h)
            pred = out.detach().sigmoid().gt(crnn.threshold).to(feats.dtype)
            if flags is None:
                tf = pred
            elif t + 1 < T:
                for ii, flag in enumerate(flags[:, t + 1]):  # the label fed at frame t + 1
                    tf[ii] = targets[ii, t] if flag else pred[ii]
            outputs[:, t] = out
    return outputs


class SeedLoop(nn.Module):
    """`seed_loop` as a model with the CRNN.forward signature."""

    def __init__(self, crnn: CRNN) -> None:
        super().__init__()
        self.crnn = crnn

    def forward(self, features, targets=None, p_tf=0.0, generator=None) -> Tensor:
        return seed_loop(self.crnn, features, targets, float(p_tf), generator)


class GRUFloor(nn.Module):
    """A CRNN's conv front end and output layer around nn.GRU with the cell's weights, fed the
    true labels of frame t-1 (zeros without targets): nothing fed back, so one fused kernel."""

    def __init__(self, crnn: CRNN) -> None:
        super().__init__()
        self.crnn = crnn
        self.gru = nn.GRU(crnn.cell.input_size, crnn.hidden, batch_first=True)
        self.gru.load_state_dict({f"{k}_l0": v for k, v in crnn.cell.state_dict().items()})
        del crnn.cell  # the GRU holds the recurrent weights now

    def forward(self, features, targets=None, p_tf=1.0, generator=None) -> Tensor:
        feats = self.crnn.encode(features).to(features.dtype)
        prev = torch.zeros_like(feats[..., : self.crnn.num_classes])
        if targets is not None:
            prev[:, 1:] = targets[:, :-1]
        with torch.autocast(features.device.type, enabled=False):
            return self.crnn.fc(self.gru(torch.cat([feats, prev], dim=-1))[0])


class ConvOnly(nn.Module):
    """A CRNN's conv front end and a linear readout per frame: everything but the recurrence."""

    def __init__(self, crnn: CRNN) -> None:
        super().__init__()
        self.crnn, self.readout = crnn, nn.Linear(crnn.feature_size, crnn.num_classes)

    def forward(self, features, targets=None, p_tf=0.0, generator=None) -> Tensor:
        return self.readout(self.crnn.encode(features))


def build(case: str, base: CRNN) -> nn.Module:
    """A copy of the shape's CRNN (same weights), wrapped or configured for `case`."""
    crnn = copy.deepcopy(base)
    wrappers = {"conv": ConvOnly, "seed": SeedLoop, "gru": GRUFloor}
    if case in wrappers:
        return wrappers[case](crnn)
    crnn.loop = case
    return crnn


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall-clock milliseconds of `repeats` synchronised calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_case(case: str, base: CRNN, shape: str, device: torch.device, args) -> dict:
    """Training step, recurrent part alone and evaluation forward of one case, in ms."""
    B, T, _, _, C = SHAPES[shape]
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(B, T, base.n_mels, generator=g).to(device)
    y = (torch.rand(B, T, C, generator=g) < 0.3).float().to(device)
    batch = {"features": x, "targets": y, "mask": torch.ones(B, T, device=device)}
    model = build(case, base).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    trainer = Trainer(model, ConstantSampler(args.p_tf), optimizer, TrainerSettings(ema_decay=None),
                      tempfile.gettempdir(), device, args.seed)  # fmt: skip
    warmup = max(args.warmup, 1 if case == "cuda_graph" else 0)  # the graphs are captured

    def step() -> None:
        trainer.train_step(batch)

    result = {}
    model.train()
    result["train_ms"] = median_ms(step, device, args.repeats, warmup)
    if case == "cuda_graph":
        result["graphs_captured"] = recurrence.captured_graphs(model)
    crnn = model if isinstance(model, CRNN) else model.crnn
    if case != "conv":  # fixed conv features (still receiving a gradient) instead of the convs
        with torch.no_grad():
            leaf = crnn.encode(x).detach().requires_grad_()
        crnn.encode = lambda features: leaf
        result["recurrent_ms"] = median_ms(step, device, args.repeats, warmup)
        del crnn.encode
    model.eval()
    if case != "cuda_graph":  # graphs are for training; evaluation runs the no-gradient loop

        @torch.no_grad()
        def evaluate() -> None:
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                model(x)

        result["eval_ms"] = median_ms(evaluate, device, args.repeats, args.warmup)
    return result


def ratios(cases: dict, device: torch.device) -> dict:
    """The ratios issue 6 sets targets for; fast = the loop training uses on this device."""
    fast = "cuda_graph" if device.type == "cuda" else "hoisted"

    def r(a: str, b: str, key: str) -> float | None:
        num, den = cases.get(a, {}).get(key), cases.get(b, {}).get(key)
        return None if num is None or not den else num / den

    return {
        "fast loop": fast,
        "fast / gru, training step": r(fast, "gru", "train_ms"),
        "fast / gru, recurrent part alone": r(fast, "gru", "recurrent_ms"),
        "seed / fast, training step": r("seed", fast, "train_ms"),
        "seed / fast, recurrent part alone": r("seed", fast, "recurrent_ms"),
        "seed / hoisted, evaluation": r("seed", "hoisted", "eval_ms"),
    }


def markdown(device: str, shape: str, cases: dict, rat: dict) -> str:
    """One (device, shape): a table of the cases' medians and the ratios."""
    B, T, ch, hidden, C = SHAPES[shape]
    lines = [f"## {device}, {shape} (B {B}, T {T}, channels {ch}, hidden {hidden}, C {C})", "",
             "| case | training step | recurrent part alone | evaluation |", "|---|---|---|---|"]  # fmt: skip
    cell = lambda v: "-" if v is None else f"{v:.3g} ms"  # noqa: E731
    for case, res in cases.items():
        cells = [cell(res.get(k)) for k in ("train_ms", "recurrent_ms", "eval_ms")]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {k}: {v if isinstance(v, str) or v is None else f'{v:.2f}'}"
                    for k, v in rat.items()), ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Parse options, run every (device, shape, case), print Markdown; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="comma-separated: cpu, cuda, cuda:1...")
    parser.add_argument("--shapes", default="small", help=f"comma-separated from {list(SHAPES)}")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated {CASES}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--p-tf", type=float, default=0.5, help="teacher forcing in training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    devices, shapes, cases = (a.split(",") for a in (args.device, args.shapes, args.cases))
    for option, names, known in (("--shapes", shapes, SHAPES), ("--cases", cases, CASES)):
        if unknown := [n for n in names if n not in known]:
            parser.error(f"{option}: unknown {unknown}; known: {list(known)}")
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        parser.error("--device: CUDA is not available on this machine")
    if args.repeats < 1 or args.warmup < 0 or not 0.0 <= args.p_tf <= 1.0:
        parser.error("--repeats must be >= 1, --warmup >= 0 and --p-tf in [0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    doc = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "args": vars(args) | {"json": str(args.json)},
           "results": []}  # fmt: skip
    for name in devices:
        device = torch.device(name)
        if device.type == "cuda":
            doc["gpu"] = torch.cuda.get_device_name(device)
        for shape in shapes:
            _, _, channels, hidden, classes = SHAPES[shape]
            torch.manual_seed(args.seed)
            base = CRNN(n_mels=40, num_classes=classes, channels=channels, hidden=hidden)
            results = {case: bench_case(case, base, shape, device, args)
                       for case in cases if case != "cuda_graph" or device.type == "cuda"}  # fmt: skip
            rat = ratios(results, device)
            doc["results"].append({"device": name, "shape": shape, "cases": results,
                                   "ratios": rat})  # fmt: skip
            print(markdown(name, shape, results, rat), flush=True)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


if __name__ == "__main__":
    main()
