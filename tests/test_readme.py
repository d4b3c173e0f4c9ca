"""The README's two set-up commands are exactly what CI runs (.ci/run)."""

from __future__ import annotations

import re
from pathlib import Path

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
