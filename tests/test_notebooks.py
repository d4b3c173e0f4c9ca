"""The notebooks run top to bottom (nbclient) against a fresh smoke run and a two-job sweep, they
are committed without outputs, and running them writes nothing into the run or the sweep."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from helpers import run_sed
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("01_scheduled_sampling", "02_inspect_run", "03_sweep_analysis")
CELL_TIMEOUT = 300
FAILURE = "RuntimeError: injected failure for the notebook test"
# The smoke model's ops are tiny: with several torch threads on a busy machine they wait on each
# other (a smoke epoch went from 0.2 s to 14 s on 2 loaded cores); one thread is fast and steady.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train(*overrides: str, root: Path) -> None:
    """python -m sed.train overrides..., with data and outputs under `root`."""
    run_sed("sed.train", *overrides, root=root, timeout=300)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """A smoke run and a sweep of two finished jobs plus one failed (a traceback in its log)."""
    root = tmp_path_factory.mktemp("sed_notebooks")
    run, sweep = root / "run", root / "sweep"
    train("+experiment=smoke", f"hydra.run.dir={run}", root=root)
    train(
        "-m",
        "+experiment=smoke",
        "trainer.epochs=1",
        "sampler.gamma=0.01,0.1",
        f"hydra.sweep.dir={sweep}",
        root=root,
    )
    failed = sweep / "2"
    shutil.copytree(sweep / "0" / ".hydra", failed / ".hydra")
    (failed / ".hydra" / "overrides.yaml").write_text(
        "- +experiment=smoke\n- trainer.epochs=1\n- sampler.gamma=1.0\n"
    )
    (failed / "smoke.log").write_text(f"Traceback (most recent call last):\n  ...\n{FAILURE}\n")
    return {"root": root, "run": run, "sweep": sweep}


def execute(name: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run notebooks/NAME.ipynb in a kernel of this interpreter, with `cwd` as working folder;
    the kernel inherits os.environ (SED_RUN_DIR / SED_SWEEP_DIR set by the caller)."""
    for key, value in ONE_THREAD.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    return nb


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text the notebook printed or displayed, and how many images it showed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text += [
                data.get("text/plain", ""),
                data.get("text/html", ""),
                data.get("text/markdown", ""),
            ]
            images += "image/png" in data
    return "\n".join(text), images


def snapshot(*folders: Path) -> dict[Path, int]:
    """Every file below `folders` with its modification time."""
    return {p: p.stat().st_mtime_ns for f in folders for p in f.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any(c.cell_type == "markdown" for c in nb.cells)
    if name != "01_scheduled_sampling":  # papermill-style parameters cell
        assert "parameters" in code[0].metadata.get("tags", [])


def test_scheduled_sampling_notebook(tmp_path: Path, monkeypatch) -> None:
    nb = execute("01_scheduled_sampling", tmp_path, monkeypatch)
    text, images = outputs(nb)
    assert "matches the closed form" in text and images >= 2
    assert not list(tmp_path.iterdir())


def test_inspect_run_notebook(artifacts, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SED_RUN_DIR", str(artifacts["run"]))
    before = snapshot(artifacts["run"], NOTEBOOKS)
    nb = execute("02_inspect_run", tmp_path, monkeypatch)
    text, images = outputs(nb)
    assert str(artifacts["run"]) in text and "errors /" in text
    assert images >= 2 + 3 + 1  # curves, p_tf, three event rolls, the worst file
    assert snapshot(artifacts["run"], NOTEBOOKS) == before and not list(tmp_path.iterdir())


def test_sweep_analysis_notebook(artifacts, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SED_SWEEP_DIR", str(artifacts["sweep"]))
    before = snapshot(artifacts["sweep"], NOTEBOOKS)
    nb = execute("03_sweep_analysis", tmp_path, monkeypatch)
    text, images = outputs(nb)
    assert "sampler.gamma" in text and FAILURE in text
    assert images >= 1  # test/event_f1 against gamma
    assert snapshot(artifacts["sweep"], NOTEBOOKS) == before and not list(tmp_path.iterdir())
