"""Finding a running pipeline's ctl endpoint, so `streamhar ctl threshold 0.3` needs no address.

Each `streamhar run` registers its ctl endpoint in a file named after its pid under
`<tmp>/streamhar-runs/` (user-private folder) and removes it at exit; entries of dead processes
are ignored.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from streamhar.errors import UsageError

DEFAULT_CTL = "tcp://127.0.0.1:5556"


def registry() -> Path:
    return Path(tempfile.gettempdir()) / f"streamhar-runs-{os.getuid()}"


def register(endpoint: str) -> Path:
    d = registry()
    d.mkdir(mode=0o700, exist_ok=True)
    path = d / str(os.getpid())
    path.write_text(endpoint)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def find_ctl_endpoint() -> str:
    d = registry()
    running = []
    for f in d.glob("*") if d.is_dir() else []:
        if f.name.isdigit() and _alive(int(f.name)):
            running.append((int(f.name), f.read_text().strip()))
    if not running:
        return DEFAULT_CTL
    if len(running) > 1:
        raise UsageError("several pipelines are running; choose one with --endpoint: " +
                         ", ".join(f"{ep} (pid {pid})" for pid, ep in sorted(running)))
    return running[0][1]
