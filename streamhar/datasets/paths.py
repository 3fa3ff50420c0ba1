"""Where data sets are looked for: `--data-dir`, then `$STREAMHAR_DATA`, then `replay_data/`."""
from __future__ import annotations

import os
from pathlib import Path

from streamhar.errors import DataNotFound

ENV_VAR = "STREAMHAR_DATA"


def project_root() -> Path | None:
    """The source checkout streamhar runs from (editable install), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "streamhar").is_dir() else None


def default_data_dir() -> Path:
    """`replay_data/` of the checkout; for a wheel install, `replay_data/` in the working directory."""
    root = project_root()
    return (root if root is not None else Path.cwd()) / "replay_data"


def resolve_data_dir(cli_value: str | os.PathLike | None = None, *, must_exist: bool = True) -> Path:
    """The data folder to use, by precedence; says which rule chose it when it does not exist."""
    if cli_value:
        path, origin = Path(cli_value), "--data-dir"
    elif os.environ.get(ENV_VAR):
        path, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        path, origin = default_data_dir(), "the default (replay_data/)"
    path = path.expanduser()
    if must_exist and not path.is_dir():
        raise DataNotFound(
            f"data folder {path} (chosen by {origin}) does not exist. Point --data-dir or "
            f"${ENV_VAR} at the folder that holds dsads/, usc-had/, opportunity/, or fetch a data set "
            f"into it with `streamhar data fetch NAME`."
        )
    return path
