"""Where the default job's time goes: `python -m sed.train` (embedded synthetic set, default
config) for a few epochs under cProfile, then the conv front end's speed and its options.

    python scripts/profile_train.py [--epochs 3] [--threads 2] [--root /tmp/sed_profile]
                                    [--micro] [--compile]

Part 1 runs `sed.train.train` in-process (as the entry point does) with `trainer.epochs` and
`trainer.num_threads` overridden, data and runs under `--root` (the synthetic set is generated
and its features cached on first use: run twice and read the second), and prints the cumulative
seconds of the pieces: data loading, conv forward, recurrence forward, backward (recurrence and
the rest, mostly the convs), optimizer, per-epoch validation (model pass and metrics),
TensorBoard, checkpoints, the final evaluation, plots.

Part 2 (`--micro`) times, at the training shape (batch 16 x 512 frames), the conv front end's
forward and forward + backward, with 1 and 2 threads, contiguous vs channels-last, and (with
`--compile`) torch.compile of the front end, and gives its achieved GFLOP/s next to a plain
2048^3 float32 matmul in the same process. The machine's load (os.getloadavg) is printed: on a
shared machine read the numbers as relative.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (label, file suffix, function name): cumulative time of that function in the profile.
PIECES = [
    ("whole job (sed.train.train)", "sed/train.py", "train"),
    ("data set + features (prepare_data, load_corpus)", "sed/train.py", "prepare_data"),
    ("  load_corpus (features, cached after the first run)", "sed/data/loading.py", "load_corpus"),
    ("training epochs (Trainer.train_epoch)", "sed/training.py", "train_epoch"),
    ("  data: DataLoader batches", "torch/utils/data/dataloader.py", "__next__"),
    ("  train_step", "sed/training.py", "train_step"),
    ("    backward (loss.backward, all)", "torch/_tensor.py", "backward"),
    ("      of which recurrence (HoistedLoop.backward)", "sed/models/recurrence.py", "backward"),
    ("    gradient clipping", "torch/nn/utils/clip_grad.py", "clip_grad_norm_"),
    ("    optimizer (Adam.step)", "torch/optim/adam.py", "step"),
    ("  TensorBoard add_scalar", "torch/utils/tensorboard/writer.py", "add_scalar"),
    ("validation model pass (predict_batches)", "sed/inference.py", "predict_batches"),
    ("validation metrics (evaluate_split, all calls)", "sed/outputs.py", "evaluate_split"),
    ("  of which event/segment metrics (sed_eval)", "sed/evaluation.py", "evaluate_events"),
    ("checkpoints (Trainer.save)", "sed/training.py", "save"),
    ("final evaluation (evaluate_model)", "sed/outputs.py", "evaluate_model"),
    ("  PSDS / collar F1 (psds_from_scores)", "sed/psds.py", "psds_from_scores"),
    (
        "  post-processing search (tune_postprocessing)",
        "sed/postprocess_search.py",
        "tune_postprocessing",
    ),
    ("  event rolls (plot_event_roll)", "sed/event_roll.py", "plot_event_roll"),
    ("training plots (write_training_plots)", "sed/train.py", "write_training_plots"),
]


class PhaseTimers:
    """Seconds in CRNN.encode and fast_loop, split by whether Trainer.train_step is running (the
    same functions also run in validation and the final evaluation)."""

    def __init__(self) -> None:
        import sed.models.crnn as crnn
        import sed.training as training

        self.seconds: dict[str, float] = {}
        self.phase = "evaluation passes"
        crnn.CRNN.encode = self.timed(crnn.CRNN.encode, "conv front end (CRNN.encode)")
        crnn.fast_loop = self.timed(crnn.fast_loop, "recurrence (fast_loop)")
        step = training.Trainer.train_step

        def train_step(trainer, batch):
            self.phase = "training forward"
            try:
                return step(trainer, batch)
            finally:
                self.phase = "evaluation passes"

        training.Trainer.train_step = train_step

    def timed(self, fn, name: str):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                key = f"{self.phase}: {name}"
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - began

        return wrapper


def profile_job(args) -> None:
    """Part 1: the job under cProfile, cumulative seconds per piece."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from sed.train import train

    GlobalHydra.instance().clear()
    overrides = [f"trainer.epochs={args.epochs}", f"trainer.num_threads={args.threads}",
                 "trainer.progress=false"]  # fmt: skip
    with hydra.initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = hydra.compose("train", overrides=overrides)
    run_dir = Path(tempfile.mkdtemp(prefix="run_", dir=args.root))
    with open_dict(cfg):
        cfg.paths.root_dir = str(args.root)
        cfg.paths.output_dir = str(run_dir)
    timers = PhaseTimers()
    profile = cProfile.Profile()
    began = time.perf_counter()
    profile.runcall(train, cfg)
    wall = time.perf_counter() - began
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    print(f"\n{args.epochs} epochs, {args.threads} thread(s), wall {wall:.1f} s, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| piece | seconds (cumulative) | share of the job |")
    print("|---|---|---|")
    total = None
    for label, suffix, name in PIECES:
        seconds = sum(v[3] for (f, _, n), v in stats.items()
                      if n == name and f.replace(os.sep, "/").endswith(suffix))  # fmt: skip
        total = total or seconds
        print(f"| {label} | {seconds:.2f} | {100 * seconds / total:.0f}% |")
    for key, seconds in sorted(timers.seconds.items()):
        print(f"| {key} | {seconds:.2f} | {100 * seconds / total:.0f}% |")


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def conv_flops(model, frames: int) -> float:
    """Forward FLOPs of the conv front end per call: 2 * Cin * Cout * k * k per output cell."""
    import torch

    total, bands = 0.0, model.n_mels
    for block in model.conv:
        conv = next(m for m in block if isinstance(m, torch.nn.Conv2d))
        k = conv.kernel_size[0] * conv.kernel_size[1]
        total += 2 * conv.in_channels * conv.out_channels * k * frames * bands
        pool = next(m for m in block if isinstance(m, torch.nn.MaxPool2d))
        bands //= pool.kernel_size[1] if isinstance(pool.kernel_size, tuple) else pool.kernel_size
    return total


def micro(args) -> None:
    """Part 2: the conv front end's speed, its options, and a plain matmul for scale."""
    import torch
    from omegaconf import OmegaConf

    from sed.data.synthetic import CLASSES
    from sed.models import CRNN

    cfg = OmegaConf.load(REPO / "configs" / "model" / "crnn.yaml")
    trainer = OmegaConf.load(REPO / "configs" / "trainer" / "default.yaml")
    batch, frames = trainer.batch_size, trainer.seq_len
    torch.manual_seed(0)
    model = CRNN(n_mels=40, num_classes=len(CLASSES), channels=cfg.channels,
                 pool_sizes=list(cfg.pool_sizes), hidden=cfg.hidden).train()  # fmt: skip
    x = torch.randn(batch, frames, 40)
    flops = conv_flops(model, batch * frames)
    print(f"\nconv front end at batch {batch} x {frames} frames: {flops / 1e9:.2f} GFLOP forward "
          f"(backward about twice that); load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| threads | case | forward ms | GFLOP/s | forward + backward ms | GFLOP/s |")
    print("|---|---|---|---|---|---|")

    def fwd(m, inp):
        return lambda: m.encode(inp)

    def fwd_bwd(m, inp):
        return lambda: m.encode(inp).sum().backward()

    cases = {"contiguous": (model, x)}
    cl = CRNN(n_mels=40, num_classes=len(CLASSES), channels=cfg.channels,
              pool_sizes=list(cfg.pool_sizes), hidden=cfg.hidden).train()  # fmt: skip
    cl.load_state_dict(model.state_dict())
    cl.conv.to(memory_format=torch.channels_last)

    class ChannelsLast(torch.nn.Module):  # the input made channels-last before the convs
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def encode(self, features):
            y = self.inner.conv(features.unsqueeze(1).contiguous(memory_format=torch.channels_last))
            b, ch, t, bands = y.shape
            return y.permute(0, 2, 1, 3).reshape(b, t, ch * bands)

    cases["channels-last"] = (ChannelsLast(cl), x)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, (m, inp) in cases.items():
            with torch.no_grad():
                f = median_seconds(fwd(m, inp), args.repeats)
            fb = median_seconds(fwd_bwd(m, inp), args.repeats)
            print(f"| {threads} | {name} | {1e3 * f:.0f} | {flops / f / 1e9:.1f} | "
                  f"{1e3 * fb:.0f} | {3 * flops / fb / 1e9:.1f} |")  # fmt: skip
        a = torch.randn(2048, 2048)
        mm = median_seconds(lambda: a @ a, args.repeats)  # noqa: B023
        print(f"| {threads} | matmul 2048^3 | {1e3 * mm:.0f} | {2 * 2048**3 / mm / 1e9:.1f} | | |")
    if args.compile:
        torch.set_num_threads(args.threads)
        compiled = torch.compile(model.conv)
        began = time.perf_counter()
        compiled(x.unsqueeze(1)).sum().backward()
        first = time.perf_counter() - began
        fb = median_seconds(lambda: compiled(x.unsqueeze(1)).sum().backward(), args.repeats)
        eager = median_seconds(lambda: model.conv(x.unsqueeze(1)).sum().backward(), args.repeats)
        print(
            f"\ntorch.compile(conv), {args.threads} thread(s): first call (compile) {first:.1f} s, "
            f"then {1e3 * fb:.0f} ms per forward + backward vs {1e3 * eager:.0f} ms eager"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "sed_profile"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--micro", action="store_true", help="only part 2")
    parser.add_argument("--compile", action="store_true", help="part 2: also torch.compile")
    args = parser.parse_args(argv)
    Path(args.root).mkdir(parents=True, exist_ok=True)
    if not args.micro:
        profile_job(args)
    else:
        micro(args)


if __name__ == "__main__":
    sys.exit(main())
