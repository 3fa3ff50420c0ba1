"""Shared fixtures. The real data sets are required: a missing one fails the run, never skips it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """$STREAMHAR_DATA (CI sets it to ../shared/data), else ../shared/data beside the checkout."""
    # Absolute: tests run commands in other folders (CI sets a relative ../shared/data).
    path = Path(os.environ.get("STREAMHAR_DATA") or REPO.parent / "shared" / "data").resolve()
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    for name, probe in (("dsads", "dsads/data.zip"), ("usc-had", "usc-had/USC-HAD")):
        if not (path / probe).exists():
            pytest.fail(f"real data set {name} missing: expected {path / probe}. Set STREAMHAR_DATA "
                        f"to the folder that holds dsads/ and usc-had/ (CI: ../shared/data).")
    return path


@pytest.fixture(scope="session")
def dsads_recordings(data_dir):
    from streamhar.datasets import get_dataset
    return get_dataset("dsads").load_selection(data_dir)


@pytest.fixture(scope="session")
def usc_recordings(data_dir):
    from streamhar.datasets import get_dataset
    return get_dataset("usc-had").load_selection(data_dir)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `streamhar` command in a child process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "streamhar", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)
