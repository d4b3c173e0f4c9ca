"""Multi-process training of one run (sed.distributed, DDP on gloo, CPU): two ranks with the global
batch train the same parameters as one process, rank 0 alone writes, and a resumed two-process run
ends where an uninterrupted one does. One end-to-end `torchrun -m sed.train` run is marked slow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sed import distributed
from sed.data.datasets import FileDataset, SequenceDataset
from sed.models.crnn import CRNN
from sed.sampling import ScheduledSampler
from sed.training import Trainer, TrainerSettings

BATCH = 4  # global batch: 2 sequences per rank with two ranks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _data(n_files: int = 6) -> tuple[SequenceDataset, FileDataset]:
    """Random features, sparse targets; 6 files of 64 frames -> 12 sequences of 32 (3 batches)."""
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((64, 16)).astype(np.float32) for _ in range(n_files)]
    targs = [(rng.random((64, 3)) < 0.2).astype(np.float32) for _ in range(n_files)]
    names = [f"f{i}.wav" for i in range(n_files)]
    return SequenceDataset(feats, targs, names, seq_len=32), FileDataset(feats, targs, names)


def _trainer(run_dir: Path, feedback: bool, **settings: object) -> Trainer:
    torch.manual_seed(0)
    model = CRNN(
        n_mels=16,
        num_classes=3,
        channels=4,
        pool_sizes=(2, 2),
        hidden=8,
        dropout=0.0,
        label_feedback=feedback,
    )
    values = {
        "device": "cpu",
        "epochs": 2,
        "batch_size": BATCH,
        "seq_len": 32,
        "patience": 5,
        "progress": False,
        "tensorboard": False,
        "val_event_metrics": False,
        "amp": False,
        **settings,
    }
    return Trainer(
        model,
        ScheduledSampler(3, gamma=1.0, p_min=0.0, p_max=1.0) if feedback else _Never(),
        # SGD, not Adam: the conv biases before BatchNorm get gradients of rounding-noise size,
        # which Adam's normalisation would blow up to full steps in different directions.
        torch.optim.SGD(model.parameters(), lr=0.5),
        TrainerSettings(**values),
        run_dir,
        torch.device("cpu"),
        seed=3,
    )


class _Never(ScheduledSampler):
    """Teacher forcing never (p = 0), as method=baseline."""

    def __init__(self) -> None:
        super().__init__(3, gamma=1.0, p_min=0.0, p_max=0.0)


def _validate(probs: dict) -> dict[str, float]:
    return {"frame_f1": float(np.mean([p.mean() for p in probs.values()]))}


def _params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank: a plain fit with the label feedback off (p_tf = 0, so forcing draws cannot differ
    from one process), a fit with scheduled sampling, and an interrupted + resumed one."""
    if world > 1:  # what torchrun exports
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
        )
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"))
    out_dir = Path(out)
    train_set, val_set = _data()
    result: dict[str, object] = {}
    plain = _trainer(out_dir / f"plain{world}", feedback=False)
    fit = plain.fit(train_set, val_set, _validate)
    result["plain"] = _params(plain)
    result["history"] = fit.history
    full = _trainer(out_dir / f"full{world}", feedback=True, tensorboard=True)
    full.fit(train_set, val_set, _validate)
    result["full"] = _params(full)
    part = out_dir / f"part{world}"
    _trainer(part, feedback=True, max_minutes=0).fit(train_set, val_set, _validate)
    resumed = _trainer(part, feedback=True, resume=True)
    resumed.fit(train_set, val_set, _validate)
    result["resumed"] = _params(resumed)
    result["p_tf"] = float(resumed.sampler.probability)
    torch.save(result, out_dir / f"rank{rank}_of{world}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict]:
    """Two gloo ranks and one plain process, each through _worker; their results."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    threads = torch.get_num_threads()
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        assert key not in os.environ  # the single process below must not see torchrun's variables
    _worker(0, 1, 0, str(out))
    torch.set_num_threads(threads)
    load = lambda name: torch.load(out / name, weights_only=False)  # noqa: E731
    return out, [load("rank0_of2.pt"), load("rank1_of2.pt")], load("rank0_of1.pt")


def test_sharded_batches_are_one_process_batches_split() -> None:
    make = lambda rank, world: distributed.ShardedBatchSampler(  # noqa: E731
        10, 4, rank, world, torch.Generator().manual_seed(5)
    )
    one = list(make(0, 1))
    two = [a + b for a, b in zip(make(0, 2), make(1, 2), strict=True)]
    assert two == one and len(one) == 3  # the last batch of 2 filled up to 4
    assert sorted(sum(one, [])[:10]) == list(range(10))  # a permutation, then 2 repeated
    assert one[2][2:] == one[0][:2]
    with pytest.raises(ValueError, match="trainer.batch_size=3"):
        distributed.ShardedBatchSampler(10, 3, 0, 2)


def test_ranks_hold_equal_parameters(ranks) -> None:
    _, (r0, r1), _ = ranks
    for run in ("plain", "full", "resumed"):
        for key, value in r0[run].items():
            assert torch.equal(value, r1[run][key]), (run, key)


def test_two_ranks_equal_one_process_with_the_global_batch(ranks) -> None:
    _, (r0, _), single = ranks
    for key, value in single["plain"].items():
        torch.testing.assert_close(r0["plain"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    # The global batch's loss is what every rank logs, as one process would.
    for a, b in zip(r0["history"], single["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["validation/frame_f1"] == pytest.approx(b["validation/frame_f1"], rel=1e-5)


def test_resume_on_two_ranks_equals_uninterrupted(ranks) -> None:
    _, (r0, r1), _ = ranks
    assert r0["p_tf"] == r1["p_tf"]  # the sampler stepped identically on both ranks
    for rank in (r0, r1):
        for key, value in rank["full"].items():
            assert torch.equal(value, rank["resumed"][key]), key


def test_rank_zero_alone_writes(ranks) -> None:
    """The callbacks that write files (CSV logs, TensorBoard, checkpoints) write once."""
    out, _, _ = ranks
    run = out / "full2"
    assert sorted(p.name for p in run.iterdir()) == [
        "batches.csv",
        "checkpoints",
        "history.csv",
        "tensorboard",
    ]
    assert len(list((run / "tensorboard").iterdir())) == 1  # one event file: rank 0's
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["callbacks"]["EarlyStopping"]["best_epoch"] == state["best_epoch"]
    assert len(state["rng"]["ranks"]) == 2
    assert not torch.equal(state["rng"]["ranks"][0]["forcing"], state["rng"]["ranks"][1]["forcing"])
    lines = (run / "batches.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 3  # header + 2 epochs of 3 global batches, written once


@pytest.mark.slow
def test_torchrun_smoke_run(tmp_path: Path) -> None:
    """`torchrun --nproc-per-node=2 -m sed.train +experiment=smoke` on CPU: one finished run."""
    run_dir = tmp_path / "ddp_run"
    env = {**os.environ, "SED_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "sed.train",
        "+experiment=smoke",
        "trainer.device=cpu",
        "trainer.epochs=1",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["test/event_f1"] <= 1
    assert not (tmp_path / "outputs").exists()  # no second run directory
    log = (run_dir / "train.log").read_text()
    assert log.count("training on cpu") == 1  # rank 0 alone logs
