"""Files of run folders: atomic writes and claiming a folder for one study.

A run killed at any moment must leave every file either whole or absent, so every writer
goes through a temporary file in the same folder and ``os.replace``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import tempfile
from pathlib import Path

from ._validation import ConfigError

__all__ = ["atomic_bytes", "atomic_text", "claim_run_folder", "write_config", "read_config", "json_digest",
           "folder_lock", "LOCK_FILE"]


TEMPORARY_MARK = ".partial-"  # in the names of atomic_bytes' temporary files: .<name>.partial-<random>
# tests of kill -9 during a write: under this variable = N, the N-th atomic write of the
# process writes half its bytes to the temporary file and the process SIGKILLs itself
KILL_MID_WRITE_ENV = "JAXCOLLAPSE_TEST_KILL_MID_WRITE"
_atomic_writes = 0


def atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once (the folder is created if needed). A write
    that fails (a full disk, an interruption) removes its temporary file, so the folder
    is as it was and a retry has the space back; one left by a killed process is removed
    when the folder is next locked (:func:`folder_lock`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMPORARY_MARK}")
    global _atomic_writes
    _atomic_writes += 1
    try:
        with os.fdopen(handle, "wb") as stream:
            if os.environ.get(KILL_MID_WRITE_ENV) == str(_atomic_writes):
                stream.write(data[: len(data) // 2])
                stream.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())  # whole on disk before it takes the name, even across a crash
        # mkstemp makes the file private (0600); a run's files get the modes the user's
        # umask gives any new file, so collaborators on a shared cluster can read them
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files that writers killed mid-write left under ``folder``
    (only under a lock this process holds: no live writer owns them); returns how many."""
    removed = 0
    for stale in Path(folder).rglob(f".*{TEMPORARY_MARK}*"):
        if stale.is_file():
            with contextlib.suppress(OSError):
                stale.unlink()
                removed += 1
    return removed


def atomic_text(path: Path, text: str) -> None:
    atomic_bytes(path, text.encode())


def json_digest(blob: dict) -> str:
    """SHA-256 of a JSON object's canonical text (sorted keys), its ``sha256`` key aside."""
    body = {key: value for key, value in blob.items() if key != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_config(path: Path, config: dict) -> None:
    """A run's ``config.json``, with the SHA-256 of its content under ``sha256`` (atomic)."""
    config = json.loads(json.dumps(config))
    config["sha256"] = json_digest(config)
    atomic_text(path, json.dumps(config, indent=2) + "\n")


def read_config(path: Path) -> dict:
    """A ``config.json`` as a dict, refused by name when it cannot be read, is not a JSON
    object, or does not match the digest it was written with (edited or damaged; a file
    without a digest, from an older jaxcollapse or written by hand, is read as it is)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} is not a regular file; the folder is not a jaxcollapse run folder")
    try:
        blob = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{path} cannot be read ({type(error).__name__}: {error}); it is damaged") from None
    if not isinstance(blob, dict):
        raise ConfigError(f"{path} must hold a JSON object (a run's settings); it holds a {type(blob).__name__}")
    if "sha256" in blob and blob["sha256"] != json_digest(blob):
        raise ConfigError(f"{path} does not match the digest it was written with: it was edited or is damaged. "
                          f"Write a new run (the command with --force) rather than editing a run's record")
    return {key: value for key, value in blob.items() if key != "sha256"}


def claim_run_folder(folder: Path, config: dict, *, force: bool) -> None:
    """Make ``folder`` the home of the run described by ``config`` (its ``config.json``).

    A folder holding a different study is refused unless ``force``; the same study is
    resumed. ``config["study"]`` is what must match.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"out {folder} exists and is not a folder")
    if config_path.exists() and not force:
        if read_config(config_path).get("study") != json.loads(json.dumps(config["study"])):
            raise ConfigError(f"out folder {folder} holds a different run; use another --out, or --force to start over")
    folder.mkdir(parents=True, exist_ok=True)
    write_config(config_path, config)


LOCK_FILE = ".jaxcollapse.lock"
_held: dict[str, int] = {}  # folders this process holds, with how many nested holders


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder):
    """Hold ``folder`` for this process while a run writes it: a second process (another
    run, another sweep) pointed at the same folder is refused, naming the holder's pid. A
    lock left by a process that no longer runs (killed) is stale and taken over. Nested
    holds in one process are allowed (a sweep's cell, a resumed run)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"out {folder} exists and is not a folder")
    key = str(folder.resolve())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
                pid, host = int(holder["pid"]), str(holder["host"])
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = -1, socket.gethostname()  # unreadable: a writer killed mid-write, stale
            if pid > 0 and (host != socket.gethostname() or _alive(pid)):
                raise ConfigError(f"{folder} is being written by process {pid} on {host} (its {LOCK_FILE}); wait "
                                  f"for it to finish, or delete {path} if that process is gone") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(handle, "w") as stream:
            stream.write(mine)
        break
    else:
        raise ConfigError(f"could not take the lock {path}; another process keeps taking it")
    _held[key] = 1
    remove_stale_temporaries(folder)  # the folder is ours now: what a killed writer left is garbage
    try:
        yield
    finally:
        _held.pop(key, None)
        with contextlib.suppress(OSError):
            if path.read_text() == mine:
                path.unlink()
