"""Where this process runs in a larger job: its rank under `torchrun` (DistributedDataParallel
training of one run, rank 0 owning the run directory) and whether submitit requeued it.

With one process (no `torchrun`, WORLD_SIZE unset or 1) every helper here is a no-op, so the
single-process path computes exactly what it computed before DDP existed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

T = TypeVar("T")

__all__ = [
    "Context",
    "GlobalBatchNorm2d",
    "ShardedBatchSampler",
    "all_gather_object",
    "barrier",
    "broadcast_object",
    "context",
    "init",
    "is_main",
    "mean",
    "requeued",
    "wrap",
]


@dataclass(frozen=True)
class Context:
    """This process's place: `rank` of `world_size` processes, `local_rank` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as error:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from error


def context() -> Context:
    """The rank, world size and local rank that `torchrun` exported (one process without it)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process group")
    return Context(rank, world, _env_int("LOCAL_RANK", rank))


def init(device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU) when launched by `torchrun` with more
    than one process; returns this rank's device (cuda:LOCAL_RANK for a plain `cuda`)."""
    ctx = context()
    if not ctx.distributed:
        return device
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = os.environ.get("SED_DIST_BACKEND") or (
            "nccl" if device.type == "cuda" else "gloo"
        )
        dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)
    return device


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files."""
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if _active():
        dist.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (picklable objects; `obj` itself in one process)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order (`[obj]` in one process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (a detached copy; the tensor itself in one process)."""
    if not _active():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training on several ranks, normalises with the statistics of the
    global batch (a differentiable all-reduce of per-channel sums), so N ranks compute what one
    process computes with the whole batch. On CPU (gloo) as on CUDA, where torch's SyncBatchNorm
    is CUDA-only; parameters and buffers are BatchNorm2d's, so checkpoints load into the plain
    model. Otherwise (evaluation, one process) it is BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _active()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        channels, dims = x.shape[1], (0, 2, 3)
        xf = x.float()
        count = torch.full((1,), float(x.numel() // channels), device=x.device)
        total = all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        n = total[-1].detach()
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), factor)
        shape = (1, channels, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in DistributedDataParallel, with global-batch BatchNorm2d (GlobalBatchNorm2d),
    when training on several ranks (gradients averaged over ranks in backward); else the model
    itself."""
    if not _active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm2d  # same state, global statistics in training
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


class ShardedBatchSampler(Sampler[list[int]]):
    """The batches one process would draw with `batch_size` (a permutation from `generator`, in
    order), each split into `world_size` equal shards: yields this rank's shard of every batch.

    So N ranks with the global `batch_size` take the same optimisation steps as one process (equal
    gradients when every sequence has the same number of valid frames). A last, partial batch is
    dropped with `drop_last`, else filled up from the start of the permutation so that every rank
    gets `batch_size / world_size` sequences (DDP needs every rank in every step).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        rank: int,
        world_size: int,
        generator: torch.Generator | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"trainer.batch_size={batch_size} (the global batch) must be divisible by the "
                f"number of processes ({world_size})"
            )
        if num_items < 1:
            raise ValueError("ShardedBatchSampler needs at least one item")
        self.num_items, self.batch_size = num_items, batch_size
        self.rank, self.world_size = rank, world_size
        self.generator, self.shuffle, self.drop_last = generator, shuffle, drop_last

    def __len__(self) -> int:
        full, rest = divmod(self.num_items, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[int]]:
        n = self.num_items
        # The draw RandomSampler makes, so that the permutation equals one process's.
        order = (
            torch.randperm(n, generator=self.generator).tolist() if self.shuffle else list(range(n))
        )
        per_rank = self.batch_size // self.world_size
        for start in range(0, n, self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.batch_size:
                if self.drop_last:
                    return
                batch += [order[i % n] for i in range(self.batch_size - len(batch))]
            yield batch[self.rank * per_rank : (self.rank + 1) * per_rank]


def requeued(run_dir: str | Path) -> bool:
    """True when this is a submitit job (SLURM or local executor) that finds its own
    `checkpoints/last.pt`: a job that was preempted or timed out and requeued into the same run
    directory, which must continue (trainer.resume=true) rather than start over. A fresh job
    never finds one, since every sweep directory is new."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return False
    return (Path(run_dir) / "checkpoints" / "last.pt").is_file()
