"""The installation: the lock agrees with pyproject, the doctor finds a broken torchaudio, clear
errors for known-bad releases, and the provenance record of every run."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sed import doctor, environment
from sed.environment import FIX, InstallError

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / "scripts" / "dev.lock"
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)")


def lock_problems(pyproject: str, lock: str) -> list[str]:
    """What makes `lock` (uv's requirements output) disagree with `pyproject`: a dependency of
    the project or of its extras missing from the lock, or locked outside its range; torch and
    torchaudio not pinned exactly in pyproject."""
    project = tomllib.loads(pyproject)["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        requirements += [Requirement(r) for r in extra]
    locked: dict[str, list[str]] = {}
    for line in lock.splitlines():
        match = _PIN.match(line.strip())
        if match:
            locked.setdefault(canonicalize_name(match[1]), []).append(match[2])
    problems = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project["name"]):
            continue  # the project's own extras (sed[cluster])
        if name not in locked:
            problems.append(f"{req.name} is in pyproject.toml but not in the lock")
            continue
        outside = [v for v in locked[name] if not req.specifier.contains(v, prereleases=True)]
        if outside:
            problems.append(f"{req.name} is locked at {outside}, outside pyproject's {req}")
    for pair in ("torch", "torchaudio"):
        pins = [r for r in requirements if canonicalize_name(r.name) == pair]
        if not pins or not all(
            str(s.operator) == "==" and "*" not in s.version for p in pins for s in p.specifier
        ):
            problems.append(f"{pair} must be pinned exactly (==X.Y.Z) in pyproject.toml")
    return problems


def test_the_lock_agrees_with_pyproject() -> None:
    assert lock_problems(PYPROJECT.read_text(), LOCK.read_text()) == []


def test_the_lock_check_fails_when_either_is_edited_alone() -> None:
    pyproject, lock = PYPROJECT.read_text(), LOCK.read_text()
    # pyproject edited alone: a new dependency, a range the locked version leaves.
    added = pyproject.replace('"tqdm>=4.66",', '"tqdm>=4.66",\n    "rich>=13",')
    assert any("rich" in p for p in lock_problems(added, lock))
    narrowed = pyproject.replace('"pandas>=2.2,<3"', '"pandas>=2.2,<2.3"')
    assert any("pandas" in p for p in lock_problems(narrowed, lock))
    loose = pyproject.replace('"torchaudio==2.11.0"', '"torchaudio==2.11.*"')
    assert any("torchaudio must be pinned" in p for p in lock_problems(loose, lock))
    # The lock edited alone: a package dropped, a version outside the range.
    dropped = re.sub(r"(?m)^hydra-core==.*\n", "", lock)
    assert any("hydra-core" in p for p in lock_problems(pyproject, dropped))
    bumped = re.sub(r"(?m)^pandas==\S+", "pandas==3.0.0", lock)
    assert any("pandas is locked at ['3.0.0']" in p for p in lock_problems(pyproject, bumped))


def test_the_readme_and_ci_install_through_the_lock() -> None:
    command = 'pip install -e ".[dev]" -c scripts/dev.lock'
    assert command in (REPO / "README.md").read_text()
    assert command in (REPO / ".ci" / "run").read_text()
    assert FIX == command


def test_doctor_passes_here(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor.main(["--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    for row in ("python", "torch", "torchaudio", "soundfile", "sed_eval", "hydra-core", "cache"):
        assert re.search(rf"(?m)^{re.escape(row)}.*\s(ok|warn)\s", out), row


def _broken_torchaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading torchaudio fails the way a mismatched build does (OSError from the linker)."""
    real = importlib.import_module

    def import_module(name: str, *args, **kwargs):
        if name.startswith("torchaudio"):
            raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(environment.importlib, "import_module", import_module)


def test_doctor_fails_with_the_fix_when_torchaudio_cannot_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _broken_torchaudio(monkeypatch)
    assert doctor.main(["--data-dir", str(tmp_path / "data")]) == 1
    captured = capsys.readouterr()
    assert re.search(r"(?m)^torchaudio\s+FAIL", captured.out)
    assert "undefined symbol" in captured.err and FIX in captured.err


def test_a_mismatched_pair_names_both_versions_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    versions = {"torch": "2.11.0+cu130", "torchaudio": "2.11.1"}
    real = environment.package_version
    monkeypatch.setattr(environment, "package_version", lambda n: versions.get(n) or real(n))
    with pytest.raises(InstallError, match=r"torchaudio 2\.11\.1 does not match torch 2\.11\.0"):
        environment.import_torchaudio()
    assert FIX in environment.check_pair()
    # Resampling (the only audio path that needs torchaudio) raises it, not a linker message.
    import numpy as np
    import soundfile as sf

    from sed.audio import load_audio

    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(4410, np.float32), 44100)
    assert load_audio(path).shape == (4410,)  # no resampling, no torchaudio
    with pytest.raises(InstallError, match="does not match"):
        load_audio(path, 16000)


def test_known_bad_releases_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = environment.package_version
    monkeypatch.setattr(
        environment, "package_version", lambda n: "3.0.1" if n == "pandas" else real(n)
    )
    with pytest.raises(InstallError, match=r"pandas 3\.0\.1 .*sed_scores_eval.*pandas>=2.2,<3"):
        environment.import_sed_eval()
    monkeypatch.setattr(environment, "package_version", real)

    real_import = importlib.import_module

    def no_pkg_resources(name: str, *args, **kwargs):
        if name == "sed_eval":
            raise ModuleNotFoundError("No module named 'pkg_resources'", name="pkg_resources")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(environment.importlib, "import_module", no_pkg_resources)
    with pytest.raises(InstallError, match=r"pkg_resources.*setuptools<81"):
        environment.import_sed_eval()


def test_the_report_needs_neither_torch_nor_torchaudio() -> None:
    code = (
        "import sys, sed.report, sed.annotations; "
        "print(sorted(m for m in ('torch', 'torchaudio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


ENVIRONMENT_FIELDS = {
    "sed_version", "git", "command", "python", "packages", "cuda", "cudnn", "device",
    "device_name", "cpu", "platform", "threads", "host", "started",
}  # fmt: skip
PACKAGES = {"torch", "torchaudio", "numpy", "pandas", "sed_eval", "sed_scores_eval", "hydra-core"}


def check_environment_record(record: dict) -> None:
    """Every field the provenance record promises, filled in."""
    assert ENVIRONMENT_FIELDS <= set(record)
    assert set(record["git"]) == {"commit", "dirty", "diff_sha256"}
    if record["git"]["commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"])
        assert (record["git"]["diff_sha256"] is not None) == record["git"]["dirty"]
    assert PACKAGES <= set(record["packages"])
    assert all(record["packages"][p] for p in PACKAGES)
    assert record["device"] and record["device_name"] and record["cpu"] and record["host"]
    assert record["threads"] >= 1 and record["started"]


def test_git_state_of_a_modified_tree(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("a\n")
    git("add", "f.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = environment.git_state(tmp_path)
    assert clean["dirty"] is False and clean["diff_sha256"] is None
    (tmp_path / "f.txt").write_text("b\n")
    dirty = environment.git_state(tmp_path)
    assert dirty["commit"] == clean["commit"] and dirty["dirty"] is True
    (tmp_path / "f.txt").write_text("c\n")
    assert environment.git_state(tmp_path)["diff_sha256"] != dirty["diff_sha256"]
    assert environment.git_state(tmp_path / "nowhere") == {
        "commit": None, "dirty": None, "diff_sha256": None,
    }  # fmt: skip


def test_report_warns_when_a_sweep_mixes_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sed.report import report

    base = environment.environment_record()
    root = tmp_path / "multiruns" / "sweep"
    for job, (commit, seed) in enumerate([("a" * 40, 1), ("a" * 40, 2), ("b" * 40, 3)]):
        run = root / str(job)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]))
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
        (run / "metrics.json").write_text(json.dumps({"test/event_f1": 0.5 + 0.1 * seed}))
        record = {**base, "git": {"commit": commit, "dirty": False, "diff_sha256": None}}
        (run / "environment.json").write_text(json.dumps(record))
    result = report(root, n_resamples=0, hparams=False)
    err = capsys.readouterr().err
    assert "warning: the mean of all runs mixes 2 commits (aaaaaaaaaaaa, bbbbbbbbbbbb)" in err
    assert "mixes 2 commits" in (result.out_dir / "summary.md").read_text()
    assert result.summary["n_commits"].tolist() == [2]
    # One commit, but package versions that differ: named with both versions.
    record = json.loads((root / "2" / "environment.json").read_text())
    record["git"]["commit"] = "a" * 40
    record["packages"]["torch"] = "9.9.9"
    (root / "2" / "environment.json").write_text(json.dumps(record))
    report(root, n_resamples=0, hparams=False)
    err = capsys.readouterr().err
    assert "commits" not in err and "2 environments (torch " in err and "9.9.9" in err
    # All alike: no warning, and summary.md says so.
    for job in range(3):
        path = root / str(job) / "environment.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "packages": base["packages"]}))
    result = report(root, n_resamples=0, hparams=False)
    assert "warning" not in capsys.readouterr().err
    assert (
        "Every finished run comes from commit `aaaaaaaaaaaa`"
        in (result.out_dir / "summary.md").read_text()
    )
