"""Files of run folders: atomic writes and claiming a folder for one study.

A run killed at any moment must leave every file either whole or absent, so every writer
goes through a temporary file in the same folder and ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ._validation import ConfigError

__all__ = ["atomic_bytes", "atomic_text", "claim_run_folder"]


def atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once (the folder is created if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())  # whole on disk before it takes the name, even across a crash
    os.replace(temporary, path)


def atomic_text(path: Path, text: str) -> None:
    atomic_bytes(path, text.encode())


def claim_run_folder(folder: Path, config: dict, *, force: bool) -> None:
    """Make ``folder`` the home of the run described by ``config`` (its ``config.json``).

    A folder holding a different study is refused unless ``force``; the same study is
    resumed. ``config["study"]`` is what must match.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if config_path.is_file() and not force:
        if json.loads(config_path.read_text()).get("study") != config["study"]:
            raise ConfigError(f"out folder {folder} holds a different run; use another --out, or --force to start over")
    elif folder.exists() and not folder.is_dir():
        raise ConfigError(f"out {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_text(config_path, json.dumps(config, indent=2) + "\n")
