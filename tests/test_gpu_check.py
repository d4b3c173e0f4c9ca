"""scripts/gpu_check.py on the CPU: steps of its `--dry-run` at tiny sizes (loops, epoch, DDP),
the orchestration (a failing step is recorded with its error and the next one runs; a step past
its budget is killed with its children; no budget left, every step skipped) and the wheel list.
The whole `--dry-run`, every step end to end (a few minutes on 2 cores), is marked slow."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import gpu_check  # noqa: E402


def ctx(tmp_path: Path, seconds: float = 300) -> gpu_check.Ctx:
    return gpu_check.Ctx(dry=True, work=tmp_path, deadline=time.time() + seconds)


def test_cuda_test_files_and_pytest_summary():
    files = gpu_check.cuda_test_files()
    assert {"tests/test_crnn.py", "tests/test_benchmark.py", "tests/test_features.py"} <= set(files)
    assert "tests/test_gpu_check.py" not in files
    summary = "== 3 passed, 2 skipped, 157 deselected in 4.20s =="
    assert gpu_check.pytest_counts("x\n" + summary) == {
        "passed": 3,
        "skipped": 2,
        "deselected": 157,
    }


def test_every_carried_package_is_pinned_for_python_312():
    pins = gpu_check.locked_versions()
    assert all(name in pins for name in gpu_check.CARRIED)
    assert gpu_check.BUILT_HERE <= set(gpu_check.CARRIED)
    assert pins["librosa"] == "1.0.1"  # the Python >= 3.12 line of dev.lock, not the 3.11 one
    assert pins["pandas"].startswith("2.")  # sed_scores_eval breaks on pandas 3
    assert "pathlib" not in gpu_check.CARRIED  # on PYTHONPATH it would shadow the stdlib's


def test_run_kills_the_whole_process_group_past_its_timeout(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    child = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    began = time.perf_counter()
    with pytest.raises(TimeoutError, match="ran past"):
        gpu_check.run([sys.executable, "-c", child], timeout=3)
    assert time.perf_counter() - began < 20
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")
    time.sleep(0.2)
    assert not stat.exists() or stat.read_text().split(")")[1].split()[0] in "ZX"  # dead
    with pytest.raises(RuntimeError, match="exited 3"):
        gpu_check.run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], 30)


def test_epoch_and_ddp_steps(tmp_path):
    epoch = gpu_check.step_epoch(ctx(tmp_path))
    assert 0 <= epoch["data_share"] <= 1 and epoch["batches_per_epoch"] == 2
    ddp = gpu_check.step_ddp(ctx(tmp_path))
    assert ddp["backend_used"] == "gloo"
    r = ddp["attempts"]["gloo"]
    assert r["world"] == 2 and r["ranks_max_diff"] == 0 and r["vs_one_process_rel_diff"] < 1e-4


def test_a_failing_step_is_recorded_and_the_next_one_runs(tmp_path):
    out = tmp_path / "out"
    # evaluate_predict first fails (no trained run in this work folder); loops then passes.
    args = argparse.Namespace(out=str(out), work=str(tmp_path / "work"), dry_run=True,
                              budget_s=None, steps="evaluate_predict,loops")  # fmt: skip
    doc = gpu_check.check_main(args)
    steps = doc["steps"]
    assert list(steps) == ["loops", "evaluate_predict"]  # in the check's order
    assert steps["loops"]["status"] == "passed"
    loops = steps["loops"]["result"]  # the eager, hoisted and cuda_graph loops side by side
    rows = loops["runs"]["float32"]
    assert set(rows) == {"eager", "hoisted", "cuda_graph"} and loops["steps"] == 3
    assert rows["eager"]["loss_rel_diff"] == 0
    for row in rows.values():
        assert row["loss_rel_diff"] < 1e-4 and row["grad_rel_diff_last"] < 1e-3
    assert "CUDA only" in loops["runs"]["bf16 autocast"]
    assert steps["evaluate_predict"]["status"] == "failed"
    assert "no trained run" in steps["evaluate_predict"]["error"]
    assert doc["passed"] is False
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["steps"]["evaluate_predict"]["status"] == "failed"
    md = (out / "gpu_check.md").read_text()
    assert "| evaluate_predict | failed |" in md and "no trained run" in md
    assert "| float32 | hoisted |" in md
    assert "===== loops: passed" in (out / "gpu_check.log").read_text()


def test_no_budget_left_skips_the_steps(tmp_path):
    cmd = [sys.executable, REPO / "scripts" / "gpu_check.py", "--dry-run", "--budget-s", "5",
           "--out", tmp_path / "out", "--work", tmp_path / "work"]  # fmt: skip
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr  # not all passed
    doc = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert list(doc["steps"]) == [s.name for s in gpu_check.STEPS]
    assert {r["status"] for r in doc["steps"].values()} == {"skipped"}


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path):
    """Every step as on the GPU, on the CPU at tiny sizes (a few minutes on a 2-core machine)."""
    cmd = [sys.executable, REPO / "scripts" / "gpu_check.py", "--dry-run", "--out",
           tmp_path / "out", "--work", tmp_path / "work"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=env,
                          timeout=1500)  # fmt: skip
    doc = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    failed = {k: r.get("error") for k, r in doc["steps"].items() if r["status"] != "passed"}
    assert not failed, failed
    assert proc.returncode == 0 and doc["passed"]
    result = doc["steps"]["evaluate_predict"]["result"]
    assert result["predict_gpu_vs_cpu"]["probs_max_abs_diff"] == 0  # cpu against cpu here
    assert doc["steps"]["train"]["result"]["epoch_seconds"]
