"""The README's two set-up commands are exactly what CI runs (.ci/run), and its training
commands compose."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_install_and_test_command() -> None:
    commands = setup_commands()
    assert len(commands) == 2, commands
    assert commands[0].startswith("pip install") and commands[1] == "pytest"


def test_ci_runs_the_readme_commands() -> None:
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    install, test = setup_commands()
    assert install in ci and test in ci
    assert ci.index(install) < ci.index(test)


def train_commands() -> list[list[str]]:
    """The overrides of every `python -m sed.train` command in the README (continuations joined,
    comments dropped)."""
    readme = (REPO / "README.md").read_text().replace("\\\n", " ")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            if line.startswith("python -m sed.train"):
                commands.append(shlex.split(line.split("#", 1)[0])[3:])
    return commands


def test_readme_training_commands_compose(compose: Callable[..., DictConfig]) -> None:
    """Each README training command composes (every value of a sweep) with its sampler built."""
    commands = train_commands()
    assert any("method=baseline,tf,ss" in c and "+experiment=tut2017" in c for c in commands)
    for overrides in commands:
        # Hydra's own settings (run dirs, launchers) do not change what a job trains.
        overrides = [o for o in overrides if o != "-m" and not o.startswith(("hydra.", "hydra/"))]
        sweeps = [o for o in overrides if "," in o.split("=", 1)[1] and "[" not in o]
        jobs = [[o for o in overrides if o not in sweeps]]
        for sweep in sweeps:
            key, values = sweep.split("=", 1)
            jobs = [[*job, f"{key}={value}"] for job in jobs for value in values.split(",")]
        for job in jobs:
            cfg = compose("train", *job)
            instantiate(cfg.sampler)(num_batches=5)
