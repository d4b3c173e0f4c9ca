#!/usr/bin/env python3
"""The GPU path checked in one command (issue 22): CUDA tests, loops, benchmarks, DDP, training.

On a bare GPU machine, within 8 minutes and without network, install the carried wheels, then
run each step below in a process of its own with its own time budget, writing JSON and Markdown results to `--out` after every step. A step
that fails or runs out of time is recorded with the tail of its output, and the next one runs.

    python3 scripts/gpu_check.py --out DIR              # on the GPU machine (needs .whl/)
    python3 scripts/gpu_check.py --out DIR --dry-run    # here: every step on the CPU, tiny sizes
    python3 scripts/gpu_check.py --fetch-wheels         # here, with network: fill .whl/

Steps (one function each, `step_NAME`; `--steps a,b` runs some):

- install: `pip install --no-index --no-deps --target /tmp/sed_gpu_site .whl/*.whl`, then the
  imports sed needs, versions, the GPU;
- pytest: `pytest -m cuda` over the test files that have CUDA cases (`pytest.mark.cuda` or
  `CUDA =`), then those files whole (their other cases see CUDA present);
- loops: the eager, hoisted and CUDA-graph loops (CRNN(loop=...), sed.models.recurrence) trained
  side by side for 20 steps from one seed at the paper shape (B 8, T 1024, 256 channels, hidden
  256, 6 classes; Adam, p_tf 0.5): losses and gradients equal to float32 tolerance (TF32 off),
  and the same under the trainer's bf16 autocast, stated with its distance from float32;
- bench: `scripts/bench.py --device cuda --shapes small,paper-c6,paper-c16` (its JSON and
  tables: the scheduled-sampling step vs cuDNN nn.GRU, vs the seed loop, evaluation);
- ddp: one DistributedDataParallel step (sed.distributed.init / wrap, as under torchrun) of two
  processes on the one GPU, NCCL if it allows two ranks on one device, else gloo with CUDA
  tensors; parameters equal across ranks and to one process with the global batch;
- epoch: `scripts/bench_epoch.py --device cuda`: a drossos_synthetic epoch's data share;
- train: `python -m sed.train +experiment=drossos_synthetic trainer.epochs=3` on the GPU (epoch
  times from history.csv, peak GPU memory sampled with nvidia-smi, test metrics);
- evaluate_predict: `sed.evaluate` and `sed.predict` of that run on CUDA and on the CPU
  (amp=false), metrics and probabilities compared to tolerance; CUDA with the run's bf16 stated.

`--dry-run` runs the same steps on the CPU at tiny sizes (smoke experiment, tiny shapes, a few
steps; CUDA-only parts reported skipped), without installing: tests/test_gpu_check.py runs it.

The device call (the wheels travel in the ignored folder .whl/):

    run(command="PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py --out $OUT", carry=[".whl"],
        timeout_s=540)

Wheels: the GPU image has torch 2.11, torchaudio 2.11, numpy, scipy, matplotlib, tensorboard,
pytest, scikit-learn, numba and the rest of its list (/work/.library/device/KINDS.md), but not
the packages in CARRIED. `--fetch-wheels` empties .whl/ and fills it with CARRIED at the versions
scripts/dev.lock pins for Python 3.12 on Linux; for each binary or pure-Python wheel on PyPI:

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \\
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        --platform manylinux1_x86_64 -d .whl NAME==VERSION

and for the four published as source only (BUILT_HERE: antlr4-python3-runtime 4.9.3, sed_eval
0.2.1, dcase_util 0.2.20, and sed_scores_eval 0.0.4, which has Cython extensions) a wheel built
by a Python 3.12 here (`python3.12 -m pip wheel --no-deps -w .whl NAME==VERSION`; `--python312`
names it). The list at dev.lock's pins when this was written (about 20 MB):
antlr4-python3-runtime 4.9.3, omegaconf 2.3.1, hydra-core 1.3.8, torchlibrosa 0.1.0,
soundfile 0.14.0, cffi 2.1.1, pycparser 3.12, librosa 1.0.1, soxr 1.1.0, pooch 1.9.0,
platformdirs 4.14.9, decorator 5.3.1, audioread 3.1.0 (only if librosa asks), sed_eval 0.2.1,
dcase_util 0.2.20, future 1.0.0, pydot-ng 2.0.0, python-magic 0.4.27, validators 0.36.0,
sed_scores_eval 0.0.4, lazy-dataset 0.0.15, pandas 2.3.3 (sed_scores_eval breaks on pandas 3),
pytz 2026.6, tzdata 2026.6, setuptools 80.10.2 (dcase_util needs pkg_resources). The PyPI
`pathlib` backport that sed_scores_eval lists is left out: on PYTHONPATH it would shadow the
standard library's pathlib.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
SITE = Path("/tmp/sed_gpu_site")
TOTAL_BUDGET_S = 470  # the whole check, under 8 minutes with the results written
TAIL_LINES = 60  # of a failed step's output, in the JSON
LOG_LINES = 400  # of every step's output, in the log

CARRIED = [
    "antlr4-python3-runtime", "omegaconf", "hydra-core", "torchlibrosa", "soundfile", "cffi",
    "pycparser", "librosa", "soxr", "pooch", "platformdirs", "decorator", "sed-eval",
    "dcase-util", "future", "pydot-ng", "python-magic", "validators", "sed-scores-eval",
    "lazy-dataset", "pandas", "pytz", "tzdata", "setuptools",
]  # fmt: skip
BUILT_HERE = {"antlr4-python3-runtime", "sed-eval", "dcase-util", "sed-scores-eval"}
# Requirements the GPU image satisfies (KINDS.md), so --fetch-wheels does not warn about them.
ON_IMAGE = set(
    "numpy scipy torch torchaudio matplotlib tensorboard tqdm pyyaml packaging requests six "
    "scikit-learn numba joblib msgpack lazy-loader typing-extensions einops cython "
    "python-dateutil contourpy cycler fonttools kiwisolver pillow pyparsing".split()
)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]  # fmt: skip
IMPORTS = ["torch", "torchaudio", "numpy", "pandas", "scipy", "soundfile", "hydra", "omegaconf",
           "torchlibrosa", "librosa", "sed_eval", "dcase_util", "sed_scores_eval", "pytest",
           "sed.train", "sed.evaluate", "sed.predict"]  # fmt: skip
MARKER_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip
DRY_SCALE = 3  # a dry run's step budgets: the CPU is slower, and shared
PAPER = (8, 1024, 256, 256, 6)  # batch, frames, channels, hidden, classes (bench.py paper-c6)
TINY = (2, 32, 4, 8, 3)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------- step helpers


@dataclass
class Ctx:
    """What a step process knows: dry run or not, its device, folders and deadline."""

    dry: bool
    work: Path
    deadline: float  # time.time() by which the step must have returned

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"

    def left(self, reserve: float = 2.0) -> float:
        return max(1.0, self.deadline - time.time() - reserve)


class CheckFailed(RuntimeError):
    """A comparison outside its tolerance (or a part that failed): the step's numbers so far
    (`result`) are kept, its status is failed."""

    def __init__(self, message: str, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result


def run(cmd: list[str], timeout: float, cwd: Path = REPO, env: dict | None = None,
        log: Path | None = None) -> str:  # fmt: skip
    """Run `cmd` in a process group of its own (killed whole on timeout); its output (also
    appended to `log`) is returned; a non-zero exit raises with the output's tail."""
    print("$", " ".join(map(str, cmd)), flush=True)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=env or os.environ.copy(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        out.seek(0)
        text = out.read()
    print(text[-20000:], flush=True)
    if log is not None:
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(map(str, cmd))}\n{text}\n")
    if rc is None:
        raise TimeoutError(f"{cmd[:4]}... ran past {timeout:.0f} s:\n{tail(text)}")
    if rc:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {rc}:\n{tail(text)}")
    return text


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def setup_torch(deterministic: bool = False):
    """torch with one thread in a dry run (a shared CPU); float32 without TF32 for parity."""
    import torch

    if os.environ.get("GPU_CHECK_THREADS"):
        torch.set_num_threads(int(os.environ["GPU_CHECK_THREADS"]))
    if deterministic:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch


def rel_diff(a, b) -> float:
    """max |a - b| / max |b| over two tensors (0 when both are zero)."""
    scale = float(b.abs().max())
    return float((a - b).abs().max()) / scale if scale else float((a - b).abs().max())


# --------------------------------------------------------------------------------------- steps


def step_install(ctx: Ctx) -> dict:
    """Install the carried wheels (not in a dry run), then import what sed needs."""
    wheels = sorted(WHEELS.glob("*.whl")) if WHEELS.is_dir() else []
    result: dict[str, Any] = {"wheels": [w.name for w in wheels]}
    if ctx.dry:
        result["installed"] = "dry run: nothing installed (this environment's packages)"
    elif wheels:
        run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
             "--no-compile", "--no-cache-dir", "--upgrade", "--target", SITE, *wheels],
            ctx.left())  # fmt: skip
        result["installed"] = f"{len(wheels)} wheels -> {SITE}"
    else:
        result["installed"] = f"no wheels in {WHEELS}: nothing installed"
    probe = (
        "import importlib, json, sys\n"
        "from importlib import metadata\n"
        f"names = {IMPORTS!r}\n"
        "out = {'imports': {}, 'versions': {}}\n"
        "for n in names:\n"
        "    try:\n"
        "        importlib.import_module(n); out['imports'][n] = 'ok'\n"
        "    except Exception as e:\n"
        "        out['imports'][n] = f'{type(e).__name__}: {e}'\n"
        "for d in ['torch', 'torchaudio', 'numpy', 'pandas', 'scipy', 'hydra-core', 'omegaconf',\n"
        "          'sed_eval', 'sed_scores_eval', 'dcase_util', 'librosa', 'setuptools']:\n"
        "    try:\n"
        "        out['versions'][d] = metadata.version(d)\n"
        "    except metadata.PackageNotFoundError:\n"
        "        out['versions'][d] = None\n"
        "import torch\n"
        "out['python'] = sys.version.split()[0]\n"
        "out['cuda_available'] = torch.cuda.is_available()\n"
        "if torch.cuda.is_available():\n"
        "    out['gpu'] = torch.cuda.get_device_name(0)\n"
        "    out['cuda'] = torch.version.cuda\n"
        "    out['cudnn'] = torch.backends.cudnn.version()\n"
        "    try:\n"
        "        v = torch.cuda.nccl.version()\n"
        "        out['nccl'] = '.'.join(map(str, v)) if isinstance(v, tuple) else str(v)\n"
        "    except Exception as e:\n"
        "        out['nccl'] = f'{type(e).__name__}: {e}'\n"
        "print('PROBE ' + json.dumps(out))\n"
    )
    text = run([sys.executable, "-c", probe], ctx.left(), env=step_env(ctx.dry))
    result.update(json.loads(text.split("PROBE ", 1)[1].splitlines()[0]))
    failed = {k: v for k, v in result["imports"].items() if v != "ok"}
    if failed:
        raise CheckFailed(f"imports failed: {failed}", result)
    if not ctx.dry and not result["cuda_available"]:
        raise CheckFailed("torch sees no CUDA device", result)
    return result


def cuda_test_files() -> list[str]:
    """The test files with CUDA cases: a `pytest.mark.cuda` or a `CUDA =` flag."""
    return [str(p.relative_to(REPO)) for p in sorted((REPO / "tests").glob("test_*.py"))
            if re.search(r"pytest\.mark\.cuda|^CUDA = ", p.read_text(), re.M)]  # fmt: skip


def pytest_counts(text: str) -> dict[str, int]:
    """{'passed': n, 'failed': n, ...} from pytest's last summary line."""
    lines = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    return {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", lines[-1])} if lines else {}


def step_pytest(ctx: Ctx) -> dict:
    """`pytest -m cuda` over the CUDA test files, then those files whole (GPU only)."""
    files = cuda_test_files()
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs"]
    result: dict[str, Any] = {"files": files}
    try:
        text = run([*base, "-m", "cuda", *files], ctx.left() * (0.4 if not ctx.dry else 1))
        result["cuda_marked"] = pytest_counts(text)
    except RuntimeError as err:
        result["cuda_marked"] = pytest_counts(str(err))
        raise CheckFailed(
            f"pytest -m cuda failed: {result['cuda_marked']}\n{err}", result
        ) from None
    if ctx.dry:
        result["files_whole"] = "dry run: skipped (the CPU suite runs these cases)"
        return result
    try:
        text = run([*base, "-m", "not slow", *files], ctx.left())
        result["files_whole"] = pytest_counts(text)
    except RuntimeError as err:
        result["files_whole"] = pytest_counts(str(err))
        raise CheckFailed(
            f"pytest of {files} failed: {result['files_whole']}\n{err}", result
        ) from None
    return result


def train_loop(loop: str, base, batches: list, amp: bool, device: str) -> dict:
    """`loop` trained for len(batches) Adam steps from `base`'s weights: per-step losses, the
    first and last steps' gradients, the final weights (flat, float64, on the CPU)."""
    import copy

    import torch

    from sed.inference import masked_bce
    from sed.models import recurrence

    model = copy.deepcopy(base).to(device).train()
    model.loop = loop
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    flat = lambda ts: torch.cat([t.detach().double().flatten().cpu() for t in ts])  # noqa: E731
    losses, grads = [], []
    began = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        generator = torch.Generator().manual_seed(1000 + step)  # the same forcing draws
        with torch.autocast(device.split(":")[0], torch.bfloat16, enabled=amp):
            logits = model(x, y, p_tf=0.5, generator=generator)
        loss = masked_bce(logits.float(), y, torch.ones(y.shape[:2], device=device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step in (0, len(batches) - 1):
            grads.append(flat(p.grad for p in model.parameters()))
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        losses.append(loss.item())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"losses": torch.tensor(losses, dtype=torch.float64), "grads": grads,
            "weights": flat(model.parameters()), "seconds": time.perf_counter() - began,
            "graphs_captured": recurrence.captured_graphs(model)}  # fmt: skip


def step_loops(ctx: Ctx) -> dict:
    """Eager, hoisted and CUDA-graph loops side by side: 20 training steps from one seed."""
    torch = setup_torch(deterministic=True)
    from sed.models import CRNN

    B, T, channels, hidden, C = TINY if ctx.dry else PAPER
    steps = 3 if ctx.dry else 20
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(B, T, 40, generator=g), (torch.rand(B, T, C, generator=g) < 0.3)
                .float()) for _ in range(steps)]  # fmt: skip
    torch.manual_seed(0)
    base = CRNN(n_mels=40, num_classes=C, channels=channels, hidden=hidden, dropout=0.0)
    loops = ["eager", "hoisted", "cuda_graph"]
    tolerance = {"float32": (1e-4, 1e-3), "bf16 autocast": (1e-3, 1e-2)}  # loss, gradients
    result: dict[str, Any] = {"shape": {"B": B, "T": T, "channels": channels, "hidden": hidden,
                                        "C": C}, "steps": steps, "tolerance": tolerance,
              "tf32": False, "runs": {}}  # fmt: skip
    if ctx.dry:
        result["note"] = "CPU: cuda_graph runs the hoisted loop; bf16 autocast is CUDA-only"
    problems = []
    runs = {}
    for precision in ("float32", "bf16 autocast"):
        if precision != "float32" and ctx.dry:
            result["runs"][precision] = "skipped: CUDA only (the trainer's amp)"
            continue
        runs[precision] = {loop: train_loop(loop, base, batches, precision != "float32",
                                            ctx.device) for loop in loops}  # fmt: skip
        eager = runs[precision]["eager"]
        rows = {}
        for loop, r in runs[precision].items():
            row = {"seconds": round(r["seconds"], 2), "graphs_captured": r["graphs_captured"],
                   "final_loss": r["losses"][-1].item(),
                   "loss_rel_diff": rel_diff(r["losses"], eager["losses"]),
                   "grad_rel_diff_first": rel_diff(r["grads"][0], eager["grads"][0]),
                   "grad_rel_diff_last": rel_diff(r["grads"][-1], eager["grads"][-1]),
                   "weights_rel_diff": rel_diff(r["weights"], eager["weights"])}  # fmt: skip
            rows[loop] = row
            loss_tol, grad_tol = tolerance[precision]
            if row["loss_rel_diff"] > loss_tol or max(row["grad_rel_diff_first"],
                                                      row["grad_rel_diff_last"]) > grad_tol:  # fmt: skip
                problems.append(f"{precision} {loop}: {row}")
        if not ctx.dry and rows["cuda_graph"]["graphs_captured"] < 1:
            problems.append(f"{precision}: cuda_graph captured no graph (ran hoisted)")
        result["runs"][precision] = rows
    if "bf16 autocast" in runs:  # stated, not a criterion: bf16 convs vs float32
        a, b = runs["bf16 autocast"]["eager"], runs["float32"]["eager"]
        result["bf16_vs_float32"] = {"loss_rel_diff": rel_diff(a["losses"], b["losses"]),
                                     "grad_rel_diff_first": rel_diff(a["grads"][0], b["grads"][0])}  # fmt: skip
    if problems:
        result["problems"] = problems
        raise CheckFailed("loops disagree beyond tolerance:\n" + "\n".join(problems), result)
    return result


def step_bench(ctx: Ctx) -> dict:
    """scripts/bench.py at the three shapes on CUDA (tiny on the CPU in a dry run), one shape
    per run so that the shapes done are kept if time runs out."""
    if ctx.dry:
        shapes, args = ["tiny"], ["--device", "cpu", "--repeats", "1", "--warmup", "0",
                                  "--threads", "1"]  # fmt: skip
    else:
        shapes, args = ["small", "paper-c6", "paper-c16"], ["--device", "cuda"]
    result: dict[str, Any] = {"bench": {"results": []}, "goals": {}, "markdown": ""}
    for shape in shapes:
        out = ctx.work / f"bench_{shape}.json"
        try:
            text = run([sys.executable, REPO / "scripts" / "bench.py", *args, "--shapes", shape,
                        "--json", out], ctx.left())  # fmt: skip
        except (RuntimeError, TimeoutError) as err:
            raise CheckFailed(f"bench.py --shapes {shape}: {err}", result) from None
        doc = json.loads(out.read_text())
        result["bench"] = {**doc, "results": result["bench"]["results"] + doc["results"]}
        result["markdown"] += text[text.find("## ") :].strip() + "\n\n"
        for entry in doc["results"]:
            r = entry["ratios"]
            if entry["shape"].startswith("paper"):
                step, seed = r["fast / gru, training step"], r["seed / fast, training step"]
                result["goals"][entry["shape"]] = {
                    "fast / gru, training step (goal <= 1.5)": step,
                    "met_gru": step is not None and step <= 1.5,
                    "seed / fast, training step (goal >= 10)": seed,
                    "met_seed": seed is not None and seed >= 10,
                    "evaluation ms (hoisted, seed)": [entry["cases"].get(c, {}).get("eval_ms")
                                                      for c in ("hoisted", "seed")],
                }  # fmt: skip
    return result


def ddp_worker(args: argparse.Namespace) -> None:
    """One rank (env as torchrun exports it): two SGD steps of a small CRNN wrapped by
    sed.distributed on cuda:0 (the cpu in a dry run); rank 0 also runs one process with the
    global batch and writes the comparison."""
    torch = setup_torch()
    import copy

    import torch.distributed as dist

    from sed import distributed
    from sed.inference import masked_bce
    from sed.models import CRNN

    device = distributed.init(torch.device(args.ddp_device))
    rank, world = dist.get_rank(), dist.get_world_size()
    B, T, C = 4, 64, 3
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(B, T, 40, generator=g), (torch.rand(B, T, C, generator=g) < 0.3).float()
    torch.manual_seed(0)
    base = CRNN(n_mels=40, num_classes=C, channels=8, hidden=16, dropout=0.0)

    def fit(model, xs, ys):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(2):  # free running (p_tf 0): the label-feedback loop, no forcing draws
            loss = masked_bce(model(xs, ys, p_tf=0.0).float(), ys, torch.ones(ys.shape[:2],
                                                                                device=device))  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.cat([p.detach().flatten().double().cpu() for p in model.parameters()])

    shard = slice(rank * B // world, (rank + 1) * B // world)
    ddp = distributed.wrap(copy.deepcopy(base).to(device).train(), device)
    mine = fit(ddp, x[shard].to(device), y[shard].to(device))
    every = distributed.all_gather_object(mine)
    if rank == 0:
        single = fit(copy.deepcopy(base).to(device).train(), x.to(device), y.to(device))
        result = {"backend": dist.get_backend(), "device": str(device), "world": world,
                  "ranks_max_diff": float((every[0] - every[1]).abs().max()),
                  "vs_one_process_rel_diff": rel_diff(every[0], single)}  # fmt: skip
        Path(args.result).write_text(json.dumps(result))
    dist.destroy_process_group()


def step_ddp(ctx: Ctx) -> dict:
    """Two ranks on one GPU: NCCL if it allows it, else gloo with CUDA tensors."""
    backends = ["gloo"] if ctx.dry else ["nccl", "gloo"]
    device = "cpu" if ctx.dry else "cuda:0"  # both ranks on the one GPU
    attempts: dict[str, Any] = {}
    for backend in backends:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        out = ctx.work / f"ddp_{backend}.json"
        out.unlink(missing_ok=True)
        procs, logs = [], []
        # NCCL may refuse two ranks on one GPU, or hang: it gets under half, gloo the rest
        budget = min(30.0, 0.45 * ctx.left()) if backend == "nccl" else ctx.left()
        for rank in range(2):
            env = {**step_env(ctx.dry), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                   "SED_DIST_BACKEND": backend}  # fmt: skip
            log = open(ctx.work / f"ddp_{backend}_rank{rank}.log", "w+")  # noqa: SIM115
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--ddp-worker", "--ddp-device", device, "--result",
                 out], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
        began, codes = time.time(), []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=max(1.0, budget - (time.time() - began))))
            except subprocess.TimeoutExpired:
                codes.append(None)
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        texts = []
        for log in logs:
            log.seek(0)
            texts.append(log.read())
            log.close()
        print("\n".join(texts), flush=True)
        if codes == [0, 0] and out.is_file():
            attempts[backend] = json.loads(out.read_text())
            break
        attempts[backend] = {"error": f"exit codes {codes}", "tail": tail("\n".join(texts), 30)}
    ok = [b for b, r in attempts.items() if "error" not in r]
    result = {"attempts": attempts, "backend_used": ok[0] if ok else None}
    if not ok:
        raise CheckFailed(f"no DDP backend ran: {json.dumps(attempts)[:3000]}", result)
    r = attempts[ok[0]]
    if r["ranks_max_diff"] > 0 or r["vs_one_process_rel_diff"] > 1e-4:
        raise CheckFailed(f"DDP parameters differ: {r}", result)
    return result


def step_epoch(ctx: Ctx) -> dict:
    """scripts/bench_epoch.py: a drossos_synthetic epoch, data wait vs training step."""
    setup_torch()
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_epoch

    if ctx.dry:
        args = ["--device", "cpu", "--files", "4", "--frames", "64", "--seq-len", "64",
                "--batch-size", "2", "--channels", "4", "--hidden", "8", "--threads", "1"]  # fmt: skip
    else:
        args = ["--device", "cuda"]
    return bench_epoch.main(args)


class GpuMemory:
    """Peak GPU memory used (MiB) and utilisation, sampled from nvidia-smi every half second."""

    def __init__(self) -> None:
        self.peak_mib, self.util, self._stop = 0.0, [], threading.Event()
        self.available = shutil.which("nvidia-smi") is not None
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-gpu=memory.used,utilization.gpu",
                 "--format=csv,noheader,nounits", "-i", "0"]  # fmt: skip
        while not self._stop.wait(0.5):
            try:
                used, util = subprocess.run(query, capture_output=True, text=True,
                                            timeout=5).stdout.split(",")[:2]  # fmt: skip
                self.peak_mib = max(self.peak_mib, float(used))
                self.util.append(float(util))
            except (ValueError, subprocess.SubprocessError, OSError):
                pass

    def __enter__(self) -> GpuMemory:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def train_paths(ctx: Ctx) -> tuple[Path, Path]:
    return ctx.work / "root", ctx.work / "run"


def step_train(ctx: Ctx) -> dict:
    """A few epochs of drossos_synthetic on the GPU (smoke, 1 epoch, on the CPU in a dry run)."""
    root, run_dir = train_paths(ctx)
    shutil.rmtree(run_dir, ignore_errors=True)
    if ctx.dry:
        overrides = ["+experiment=smoke", "trainer.device=cpu", "trainer.epochs=1",
                     "trainer.num_threads=1"]  # fmt: skip
    else:
        overrides = ["+experiment=drossos_synthetic", "trainer.device=cuda", "trainer.epochs=3"]
    overrides.append("tuning.enabled=false")  # the post-processing search is CPU work
    cmd = [sys.executable, "-m", "sed.train", *overrides, "trainer.progress=false",
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    env = {**step_env(ctx.dry), "SED_ROOT": str(root)}
    began = time.perf_counter()
    with GpuMemory() as gpu:
        run(cmd, ctx.left(), cwd=ctx.work, env=env)
    import csv

    history = list(csv.DictReader((run_dir / "history.csv").open()))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = [float(row["seconds"]) for row in history]
    return {"overrides": overrides, "wall_s": time.perf_counter() - began,
            "epoch_seconds": seconds,
            "epoch_seconds_after_first": seconds[1:],
            "train_loss": [float(row["train_loss"]) for row in history],
            "gpu_peak_memory_mib": gpu.peak_mib if gpu.available else None,
            "gpu_mean_utilisation": (sum(gpu.util) / len(gpu.util)) if gpu.util else None,
            "test_metrics": {k: v for k, v in metrics.items() if k.startswith("test/")
                             and not k.startswith("test/fixed")}}  # fmt: skip


def step_evaluate_predict(ctx: Ctx) -> dict:
    """sed.evaluate and sed.predict of the trained run on CUDA and on the CPU, compared."""
    import numpy as np

    root, run_dir = train_paths(ctx)
    if not (run_dir / "checkpoints" / "best.pt").is_file():
        raise CheckFailed(f"no trained run in {run_dir} (the train step failed)")
    audio = sorted(root.rglob("audio/test"))
    if not audio:
        raise CheckFailed(f"no test audio under {root}")
    env = step_env(ctx.dry)
    gpu = "cpu" if ctx.dry else "cuda"
    result: dict[str, Any] = {"input": str(audio[0])}
    metrics = {}
    for device in (gpu, "cpu"):
        out = ctx.work / f"evaluate_{device}"
        shutil.rmtree(out, ignore_errors=True)
        began = time.perf_counter()
        run([sys.executable, "-m", "sed.evaluate", f"run_dir={run_dir}", f"device={device}",
             "amp=false", "splits=[test]", f"hydra.run.dir={out}"], ctx.left(), cwd=ctx.work,
            env=env)  # fmt: skip
        result[f"evaluate_{device}_s"] = time.perf_counter() - began
        metrics[device] = json.loads((out / "metrics.json").read_text())
    numeric = [k for k, v in metrics["cpu"].items() if isinstance(v, int | float)
               and isinstance(metrics[gpu].get(k), int | float)]  # fmt: skip
    diffs = {k: abs(metrics[gpu][k] - metrics["cpu"][k]) for k in numeric
             if math.isfinite(metrics[gpu][k]) and math.isfinite(metrics["cpu"][k])}  # fmt: skip
    worst = max(diffs, key=diffs.get) if diffs else None
    result["evaluate_metrics_max_abs_diff"] = {"key": worst, "diff": diffs.get(worst, 0.0)}
    predictions = {}
    runs = [(gpu, False), ("cpu", False)] + ([] if ctx.dry else [(gpu, True)])
    for device, amp in runs:
        key = f"{device}{'_amp' if amp else ''}"
        out = ctx.work / f"predict_{key}"
        shutil.rmtree(out, ignore_errors=True)
        began = time.perf_counter()
        run([sys.executable, "-m", "sed.predict", f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}",
             f"input={audio[0]}", f"output={out / 'events.tsv'}", f"device={device}",
             f"amp={str(amp).lower()}", "save_probabilities=true"], ctx.left(), cwd=ctx.work,
            env=env)  # fmt: skip
        result[f"predict_{key}_s"] = time.perf_counter() - began
        folder = out / "events_probabilities"
        predictions[key] = ((out / "events.tsv").read_text().splitlines(),
                            {p.name: np.load(p) for p in sorted(folder.glob("*.npy"))})  # fmt: skip

    def compare(a: str, b: str) -> dict:
        (ea, pa), (eb, pb) = predictions[a], predictions[b]
        same = len(set(ea) & set(eb)) / max(1, len(set(ea) | set(eb)))
        return {"files": len(pa), "probs_max_abs_diff": max(float(np.abs(pa[n] - pb[n]).max())
                                                            for n in pa),
                "event_lines_shared": same, "events": [len(ea) - 1, len(eb) - 1]}  # fmt: skip

    result["predict_gpu_vs_cpu"] = compare(gpu, "cpu")
    if not ctx.dry:
        result["predict_gpu_bf16_vs_cpu (stated)"] = compare(f"{gpu}_amp", "cpu")
    # TF32 convolutions (cuDNN's default) and reduction order: not bit-equal, to tolerance.
    tolerance = {"probs_max_abs_diff": 2e-3, "metric_abs_diff": 0.02}
    result["tolerance"] = tolerance
    problems = []
    if result["predict_gpu_vs_cpu"]["probs_max_abs_diff"] > tolerance["probs_max_abs_diff"]:
        problems.append(f"predict probabilities differ: {result['predict_gpu_vs_cpu']}")
    if result["evaluate_metrics_max_abs_diff"]["diff"] > tolerance["metric_abs_diff"]:
        problems.append(f"evaluate metrics differ: {result['evaluate_metrics_max_abs_diff']}")
    if problems:
        result["problems"] = problems
        raise CheckFailed("\n".join(problems), result)
    return result


@dataclass(frozen=True)
class Step:
    name: str
    budget_s: float  # on the GPU; a dry run gets the same or what is left
    func: Callable[[Ctx], dict]
    needs: tuple[str, ...] = ()


STEPS = [
    Step("install", 60, step_install),
    Step("pytest", 75, step_pytest, ("install",)),
    Step("loops", 75, step_loops, ("install",)),
    Step("bench", 120, step_bench, ("install",)),
    Step("ddp", 60, step_ddp, ("install",)),
    Step("epoch", 30, step_epoch, ("install",)),
    Step("train", 150, step_train, ("install",)),
    Step("evaluate_predict", 90, step_evaluate_predict, ("train",)),
]


# -------------------------------------------------------------------------------- orchestrator


def step_env(dry: bool) -> dict[str, str]:
    """The environment of step processes: the installed wheels and the repository first."""
    paths = ([str(SITE)] if SITE.is_dir() and not dry else []) + [str(REPO)]
    old = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else [])),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    if dry:  # a shared CPU: one thread everywhere
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GPU_CHECK_THREADS="1")
    return env


def run_step(step: Step, dry: bool, work: Path, timeout: float, log: Path) -> dict:
    """`step` in a process of its own (its group killed on timeout): status, seconds, result
    or the tail of its output."""
    result_file = work / f"step_{step.name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "--step", step.name, "--work", str(work), "--result",
           str(result_file), "--deadline", str(time.time() + timeout)] + (["--dry-run"] if dry else [])  # fmt: skip
    began = time.perf_counter()
    text, status = "", "passed"
    try:
        text = run(cmd, timeout + 5, env=step_env(dry), log=None)
    except TimeoutError as err:
        status, text = "timeout", str(err)
    except RuntimeError as err:
        status, text = "failed", str(err)
    seconds = time.perf_counter() - began
    with open(log, "a") as handle:
        handle.write(f"\n===== {step.name}: {status} in {seconds:.1f} s =====\n"
                     + "\n".join(text.splitlines()[-LOG_LINES:]) + "\n")  # fmt: skip
    record: dict[str, Any] = {"status": status, "seconds": round(seconds, 1),
                              "budget_s": round(timeout)}  # fmt: skip
    if result_file.is_file():
        saved = json.loads(result_file.read_text())
        record["result"] = saved.get("result")
        if saved.get("error"):
            record["status"] = "failed"
            record["error"] = saved["error"]
    if record["status"] != "passed" and "error" not in record:
        record["error"] = tail(text)
    return record


def step_main(args: argparse.Namespace) -> None:
    """Inside a step process: run the step, save its result or error (the tail)."""
    step = {s.name: s for s in STEPS}[args.step]
    ctx = Ctx(dry=args.dry_run, work=Path(args.work), deadline=float(args.deadline))
    saved: dict[str, Any] = {}
    try:
        saved["result"] = step.func(ctx)
    except CheckFailed as err:
        saved["error"] = str(err)[-6000:]
        saved["result"] = err.result
    except Exception:  # noqa: BLE001 - recorded, and the next step runs
        saved["error"] = tail(traceback.format_exc())
    Path(args.result).write_text(json.dumps(saved, indent=1, default=str))
    if "error" in saved:
        print(saved["error"], file=sys.stderr)
        sys.exit(1)


def markdown(doc: dict) -> str:
    """The results as Markdown: a table of the steps, then each step's main numbers."""
    lines = [f"# GPU check ({'dry run, CPU' if doc['dry_run'] else 'GPU'}), {doc['started']}", "",
             f"Whole check: {doc.get('seconds', 0):.0f} s of a {doc['budget_s']} s budget.", "",
             "| step | status | seconds | budget |", "|---|---|---|---|"]  # fmt: skip
    for name, r in doc["steps"].items():
        lines.append(
            f"| {name} | {r['status']} | {r.get('seconds', '-')} | {r.get('budget_s', '-')} |"
        )
    for name, r in doc["steps"].items():
        lines += ["", f"## {name}: {r['status']}", ""]
        res = r.get("result") or {}
        if name == "loops" and isinstance(res.get("runs"), dict):
            lines += loops_table(res)
        if name == "bench" and res.get("markdown"):
            lines += [res["markdown"].replace("## ", "### "), "",
                      "```json", json.dumps(res.get("goals"), indent=1), "```"]  # fmt: skip
        elif res:
            shown = {k: v for k, v in res.items() if k not in ("markdown", "bench")}
            lines += ["```json", json.dumps(shown, indent=1, default=str)[:6000], "```"]
        if r.get("error"):
            lines += ["", "```", r["error"][-3000:], "```"]
    return "\n".join(lines) + "\n"


def loops_table(res: dict) -> list[str]:
    """The loops step as a table: each loop against eager, per precision."""
    lines = ["| precision | loop | seconds | graphs | final loss | loss rel. diff | grad rel. "
             "diff (first, last step) | weights rel. diff |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for precision, rows in res["runs"].items():
        if not isinstance(rows, dict):
            lines.append(f"| {precision} | {rows} | | | | | | |")
            continue
        for loop, r in rows.items():
            lines.append(f"| {precision} | {loop} | {r['seconds']} | {r['graphs_captured']} | "
                         f"{r['final_loss']:.6f} | {r['loss_rel_diff']:.2e} | "
                         f"{r['grad_rel_diff_first']:.2e}, {r['grad_rel_diff_last']:.2e} | "
                         f"{r['weights_rel_diff']:.2e} |")  # fmt: skip
    return [*lines, ""]


def write_results(doc: dict, out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(doc))


def check_main(args: argparse.Namespace) -> dict:
    """Every selected step in order within the whole budget; results written after each."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    log = out / "gpu_check.log"
    log.write_text("")
    selected = args.steps.split(",") if args.steps else [s.name for s in STEPS]
    unknown = sorted(set(selected) - {s.name for s in STEPS})
    if unknown:
        sys.exit(f"--steps: unknown {unknown}; known: {[s.name for s in STEPS]}")
    began = time.time()
    budget_s = args.budget_s or (DRY_SCALE * TOTAL_BUDGET_S if args.dry_run else TOTAL_BUDGET_S)
    deadline = began + budget_s
    scale = DRY_SCALE if args.dry_run else 1
    doc: dict[str, Any] = {"dry_run": args.dry_run, "budget_s": budget_s, "work": str(work),
                           "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "steps": {}}  # fmt: skip
    for step in STEPS:
        if step.name not in selected:
            continue
        blocked = [n for n in step.needs if doc["steps"].get(n, {}).get("status", "passed")
                   != "passed"]  # fmt: skip
        left = deadline - time.time()
        if blocked:
            doc["steps"][step.name] = {"status": "skipped", "error": f"needs {blocked}"}
        elif left < 10:
            doc["steps"][step.name] = {"status": "skipped", "error": "no time left in the budget"}
        else:
            budget = min(scale * step.budget_s, left)
            print(f"===== {step.name} (budget {budget:.0f} s)", flush=True)
            doc["steps"][step.name] = run_step(step, args.dry_run, work, budget, log)
            print(f"===== {step.name}: {doc['steps'][step.name]['status']}", flush=True)
        doc["seconds"] = time.time() - began
        write_results(doc, out)
    doc["passed"] = all(r["status"] == "passed" for r in doc["steps"].values())
    write_results(doc, out)
    print(f"GPU check: {'all passed' if doc['passed'] else 'NOT all passed'} in "
          f"{doc['seconds']:.0f} s -> {out}")  # fmt: skip
    return doc


# ------------------------------------------------------------------------------- fetch wheels


def locked_versions(lock: Path = REPO / "scripts" / "dev.lock") -> dict[str, str]:
    """{normalised name: version} from dev.lock for CPython 3.12 on Linux x86-64."""
    from packaging.markers import Marker

    env = MARKER_ENV
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.+))?$", line)
        if match and (not match[3] or Marker(match[3]).evaluate(env)):
            pins[normalise(match[1])] = match[2]
    return pins


def fetch_wheels(args: argparse.Namespace) -> None:
    """Empty the wheel folder and fill it with CARRIED at dev.lock's pins (see the docstring)."""
    folder = Path(args.wheels)
    pins = locked_versions()
    missing = [n for n in CARRIED if n not in pins]
    if missing:
        sys.exit(f"scripts/dev.lock pins no version of {missing}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    python312 = args.python312 or shutil.which("python3.12")
    if python312:
        probe = subprocess.run([python312, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)  # fmt: skip
        python312 = python312 if probe.stdout.strip() == "(3, 12)" else None
    for name in CARRIED:
        spec = f"{name}=={pins[name]}"
        if name in BUILT_HERE:
            if not python312:
                sys.exit(
                    f"{spec} is published as source only: give --python312 PATH (a working "
                    "Python 3.12) to build its wheel"
                )
            cmd = [python312, "-m", "pip", "wheel", "--no-deps", "-w", folder, spec]
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.12", "--implementation", "cp",
                   *[a for p in PLATFORMS for a in ("--platform", p)], "-d", folder, spec]  # fmt: skip
        print("$", " ".join(map(str, cmd)), flush=True)
        subprocess.run(list(map(str, cmd)), check=True)
    report_wheels(folder)


def report_wheels(folder: Path) -> None:
    """Print each wheel's requirements (for Python 3.12 on Linux) that are neither carried nor on
    the GPU image, and the folder's size."""
    from packaging.requirements import Requirement

    carried, total = set(CARRIED), 0
    for wheel in sorted(folder.glob("*.whl")):
        total += wheel.stat().st_size
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            needs = [Requirement(ln.split(":", 1)[1].strip()) for ln in
                     z.read(meta).decode().splitlines() if ln.startswith("Requires-Dist:")]  # fmt: skip
        for need in needs:
            if need.marker is not None and not need.marker.evaluate({**MARKER_ENV, "extra": ""}):
                continue
            name = normalise(need.name)
            if name not in carried and name not in ON_IMAGE and name != "pathlib":
                print(f"note: {wheel.name} requires {need}, neither carried nor on the image")
    print(f"{len(list(folder.glob('*.whl')))} wheels, {total / 2**20:.1f} MiB in {folder}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for gpu_check.json, gpu_check.md, gpu_check.log")
    parser.add_argument("--dry-run", action="store_true", help="the CPU, tiny sizes")
    parser.add_argument("--steps", help=f"comma-separated subset of {[s.name for s in STEPS]}")
    parser.add_argument("--work", help="scratch folder (data, runs); default: a new temp folder")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help=f"the whole check (default {TOTAL_BUDGET_S} s; x{DRY_SCALE} dry)",
    )
    parser.add_argument("--fetch-wheels", action="store_true", help="fill --wheels (network)")
    parser.add_argument("--wheels", default=str(WHEELS))
    parser.add_argument("--python312", help="a Python 3.12 to build the source-only wheels")
    # internal: one step, one DDP rank
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", help=argparse.SUPPRESS)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ddp-device", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fetch_wheels:
        fetch_wheels(args)
    elif args.ddp_worker:
        ddp_worker(args)
    elif args.step:
        step_main(args)
    elif args.out:
        sys.exit(0 if check_main(args)["passed"] else 1)
    else:
        parser.error("give --out DIR (or --fetch-wheels)")


if __name__ == "__main__":
    main()
