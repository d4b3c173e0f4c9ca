"""How far the smoke run's numbers move between CPU kernels: the measurement behind the
tolerances of tests/test_train.py::test_smoke_numbers_unchanged.

Runs `python -m sed.train +experiment=smoke` (as tests/smoke_golden.json records it) once per
setting: oneDNN and MKL capped to older instruction sets (ONEDNN_MAX_CPU_ISA,
MKL_ENABLE_INSTRUCTIONS), and 1 vs 2 threads, each in a fresh process on one data set. Prints,
per recorded number, the largest absolute and relative difference from the golden file and
from the first setting, and writes them as JSON.

    python scripts/kernel_spread.py [--out spread.json] [--settings default,avx2,sse41]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "smoke_golden.json"
# name -> environment of the capped kernels (an unset cap lets the library pick the best ISA).
CAPS = {
    "default": {},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def smoke(root: Path, caps: dict[str, str], threads: int) -> dict[str, float]:
    """One smoke run in a fresh process; its history columns and metrics, flattened."""
    run_dir = Path(tempfile.mkdtemp(dir=root, prefix="run_"))
    env = {
        **os.environ,
        **caps,
        "SED_ROOT": str(root),
        "OMP_NUM_THREADS": str(threads),
        "PYTHONHASHSEED": "0",
    }
    subprocess.run(
        [
            sys.executable, "-m", "sed.train", "+experiment=smoke", "trainer.device=cpu",
            f"trainer.num_threads={threads}", f"hydra.run.dir={run_dir}",
        ],
        env=env, check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    history = pd.read_csv(run_dir / "history.csv", float_precision="round_trip")
    numbers = {
        f"history/{column}/{i}": float(value)
        for column in history.columns
        for i, value in enumerate(history[column])
    }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    numbers.update(
        {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and "seconds" not in k
        }
    )
    return numbers


def flatten_golden() -> dict[str, float]:
    golden = json.loads(GOLDEN.read_text())
    numbers = {
        f"history/{column}/{i}": float(v)
        for column, values in golden["history"].items()
        for i, v in enumerate(values)
    }
    numbers.update({k: float(v) for k, v in golden["metrics"].items()})
    return numbers


def spread(a: dict[str, float], b: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Per shared key: (absolute, relative) difference."""
    out = {}
    for key in sorted(a.keys() & b.keys()):
        diff = abs(a[key] - b[key])
        out[key] = (diff, diff / abs(b[key]) if b[key] else (0.0 if diff == 0 else math.inf))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="default,avx512,avx2,sse41")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    golden = flatten_golden()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as root:
        for name in args.settings.split(","):
            for threads in map(int, args.threads.split(",")):
                label = f"{name}/{threads}t"
                results[label] = smoke(Path(root), CAPS[name], threads)
                worst = spread(results[label], golden)
                key = max(worst, key=lambda k: worst[k][1])
                print(f"{label:>14}: vs golden max rel {worst[key][1]:.2e} ({key}), "
                      f"max abs {max(v[0] for v in worst.values()):.2e}", flush=True)  # fmt: skip
    first = next(iter(results.values()))
    report = {
        label: {"vs_golden": spread(r, golden), "vs_first": spread(r, first)}
        for label, r in results.items()
    }
    keys = sorted(golden)
    print(f"\n{'number':<42} {'max abs':>10} {'max rel':>10}  (over all settings, vs golden)")
    for key in keys:
        diffs = [
            report[label]["vs_golden"][key] for label in report if key in report[label]["vs_golden"]
        ]
        print(f"{key:<42} {max(d[0] for d in diffs):>10.2e} {max(d[1] for d in diffs):>10.2e}")
    if args.out:
        args.out.write_text(json.dumps({"results": results, "spread": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
