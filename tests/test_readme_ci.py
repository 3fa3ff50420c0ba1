"""The README's quick start and CI must not drift apart."""
from __future__ import annotations

import re

from conftest import REPO


def _quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_quick_start_is_exactly_two_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert all(c.startswith("pip install torch==2.13.0 ") for c in commands)


def test_ci_runs_the_readme_test_command():
    test_command = _quick_start_commands()[1]
    # CI sets STREAMHAR_DATA itself; the rest of the command must be there word for word.
    without_env = re.sub(r"STREAMHAR_DATA=\S+ ", "", test_command)
    ci = (REPO / ".ci" / "run").read_text()
    assert without_env in ci
    assert "STREAMHAR_DATA" in ci and "torch==2.13.0" in ci
