"""Time one training epoch at drossos_synthetic's shapes: waiting for data vs the Trainer's step.

    python scripts/bench_epoch.py [--device cpu] [--batches N] [--num-workers 0] [--threads 1]

Random in-memory features (100 clips of 1024 frames, 40 mel bands, the synthetic set's classes)
go through SequenceDataset and the Trainer's own DataLoader; each batch is timed as fetch
(waiting for the DataLoader) and step (`Trainer.train_step`: transfer, forward with scheduled
sampling, masked BCE, backward, clipping, Adam, sampler step, `loss.item()`), with the
drossos_synthetic model and trainer settings. The shape options shrink it for tests.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
import torch

from sed.data.datasets import SequenceDataset
from sed.data.synthetic import CLASSES
from sed.models import CRNN
from sed.sampling import ScheduledSampler
from sed.training import Trainer, TrainerSettings


def main(argv: list[str] | None = None) -> dict:
    """Parse options, time the epoch, print one Markdown table; returns the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=0, help="time only N batches (0: all)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    for name, default in (("files", 100), ("frames", 1024), ("seq-len", 1024),
                          ("batch-size", 8), ("channels", 256), ("hidden", 256)):  # fmt: skip
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rng = np.random.default_rng(args.seed)
    shape, classes = (args.frames, 40), len(CLASSES)
    features = [rng.standard_normal(shape, dtype=np.float32) for _ in range(args.files)]
    targets = [(rng.random((args.frames, classes)) < 0.2).astype(np.float32) for _ in features]
    names = [f"clip_{i:04d}.wav" for i in range(args.files)]
    dataset = SequenceDataset(features, targets, names, seq_len=args.seq_len)
    batches = math.ceil(len(dataset) / args.batch_size)
    torch.manual_seed(args.seed)
    model = CRNN(n_mels=40, num_classes=classes, channels=args.channels, hidden=args.hidden)
    # trainer=drossos: no weight average, so the step is the paper's (and earlier numbers hold)
    settings = TrainerSettings(batch_size=args.batch_size, grad_clip=0.5, ema_decay=None,
                               num_workers=args.num_workers)  # fmt: skip
    trainer = Trainer(model, ScheduledSampler(batches, gamma=0.125, p_min=0.05, p_max=0.9),
                      torch.optim.Adam(model.parameters(), lr=1e-4), settings,
                      tempfile.gettempdir(), device, args.seed)  # fmt: skip
    model.train()

    def timed(fn):
        start = time.perf_counter()
        value = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return value, time.perf_counter() - start

    loader = iter(trainer._loader(dataset, shuffle=True))  # the Trainer's own DataLoader
    fetch, step = [], []
    limit = min(args.batches or batches, batches - args.warmup)
    if limit < 1:
        parser.error(f"--warmup {args.warmup} leaves none of the epoch's {batches} batches to time")
    for i in range(args.warmup + limit):
        batch, fetch_s = timed(lambda: next(loader))
        _, step_s = timed(lambda: trainer.train_step(batch))  # noqa: B023 - called right here
        if i >= args.warmup:
            fetch.append(fetch_s)
            step.append(step_s)
    total = sum(fetch) + sum(step)
    result = {"sequences": len(dataset), "batches_per_epoch": batches, "batches_timed": limit,
              "fetch_s": sum(fetch), "step_s": sum(step), "data_share": sum(fetch) / total,
              "epoch_estimate_s": total / limit * batches}  # fmt: skip
    print("| batches timed | total | fetch (DataLoader) | step (Trainer.train_step) | data share "
          "| epoch (est.) |\n|---|---|---|---|---|---|")  # fmt: skip
    print(f"| {limit} of {batches} | {total:.2f} s | {sum(fetch):.3f} s | {sum(step):.2f} s | "
          f"{100 * result['data_share']:.2f}% | {result['epoch_estimate_s']:.1f} s |")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
