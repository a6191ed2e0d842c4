"""Saved state is verified before it is trusted.

Every file a run writes to go on from later (the engine's ``checkpoint.npz``, the host
executor's parameters, samples and metrics, ``config.json``) carries a SHA-256 digest of
its own content, written with it in the same atomic write: an ``.npz`` holds it as the
array ``__sha256__``, a safetensors file in its metadata, ``config.json`` as the key
``sha256`` (:func:`jaxcollapse._files.write_config`). On resume each file is read, its digest recomputed and compared, its arrays'
shapes and dtypes checked against what the run expects; a truncated, bit-flipped, edited
or foreign file is refused with its name and what is wrong, never silently used. Each
file also records which of its floating arrays were finite when written; an array that
holds NaN or infinity on reading but was finite then is refused, so a carry or a weight
replaced by NaNs cannot slip through even with a digest recomputed to match. (A
digest inside the file, rather than a separate manifest, keeps every write a single
atomic rename: a kill at any moment leaves each file whole with its own digest.)

Examples:
    >>> import numpy as np
    >>> arrays = {"x": np.arange(3)}
    >>> digest = arrays_digest(arrays)
    >>> digest == arrays_digest({"x": np.arange(3)}), digest == arrays_digest({"x": np.arange(1, 4)})
    (True, False)
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ._files import atomic_bytes
from ._validation import ConfigError

__all__ = ["arrays_digest", "save_npz", "load_npz", "read_safetensors", "finite_names", "check_finite",
           "DIGEST_KEY", "FINITE_KEY", "DamagedFile"]

DIGEST_KEY = "__sha256__"
# the names of the file's floating arrays that held no NaN or infinity when it was written
FINITE_KEY = "__finite__"


class DamagedFile(ConfigError):
    """A saved file that is damaged, edited or not what the run wrote (a ConfigError)."""


def arrays_digest(arrays: dict) -> str:
    """SHA-256 of named arrays: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(np.asarray(arrays[name]))
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def finite_names(arrays: dict) -> list[str]:
    """The names of the floating (or complex) arrays among ``arrays`` with only finite values."""
    return sorted(name for name, value in arrays.items()
                  if np.asarray(value).dtype.kind in "fc" and bool(np.all(np.isfinite(value))))


def check_finite(path: Path, what: str, arrays: dict, finite) -> None:
    """Refuse ``arrays`` if one named in ``finite`` (the list :func:`finite_names` gave when
    the file was written) now holds NaN or infinity. Files written before the record
    existed (``finite`` None) carry only their digest."""
    if finite is None:
        return
    if not (isinstance(finite, list) and all(isinstance(name, str) for name in finite)):
        raise DamagedFile(f"{what} {path} has an unreadable record of its finite arrays: it was edited")
    for name in finite:
        if name in arrays and not bool(np.all(np.isfinite(arrays[name]))):
            raise DamagedFile(f"{what} {path}: {name!r} holds NaN or infinite values but was finite when it was "
                              f"written: it was edited or is damaged")


def save_npz(path: Path, arrays: dict) -> None:
    """``arrays`` as one ``.npz`` (no pickle) with their digest and a record of which were
    finite, written atomically."""
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    arrays[FINITE_KEY] = np.array(json.dumps(finite_names(arrays)))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{DIGEST_KEY: np.array(arrays_digest(arrays))})
    atomic_bytes(path, buffer.getvalue())


def load_npz(path: Path, what: str = "saved file") -> dict:
    """The arrays of a :func:`save_npz` file, after checking its digest; a file that cannot
    be read, holds objects, or does not match its digest raises :class:`DamagedFile`."""
    path = Path(path)
    if not path.is_file():
        raise DamagedFile(f"{what} {path} is not a regular file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("not an .npz archive")
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as error:
        raise DamagedFile(f"{what} {path} cannot be read ({type(error).__name__}: {error}); it is damaged") from None
    stored = arrays.pop(DIGEST_KEY, None)
    if stored is None or stored.shape != () or stored.dtype.kind != "U":
        raise DamagedFile(f"{what} {path} has no content digest: it was not written by this jaxcollapse, or was edited")
    if str(stored) != arrays_digest(arrays):
        raise DamagedFile(f"{what} {path} does not match the digest written with it: it is damaged or was edited")
    recorded = arrays.pop(FINITE_KEY, None)
    if recorded is not None:
        try:
            recorded = json.loads(str(recorded))
        except ValueError:
            recorded = "unreadable"  # refused by check_finite
    check_finite(path, what, arrays, recorded)
    return arrays


# a safetensors header larger than this is not a real one (the format itself allows 100 MB)
MAX_SAFETENSORS_HEADER = 100 << 20


def read_safetensors(path: Path, what: str = "saved parameters") -> tuple[dict, dict]:
    """The tensors and metadata of a safetensors file (the host executor's parameters, an
    OPT checkpoint's weights), or :class:`DamagedFile` naming it: a truncated or foreign
    file, an absurd header, a folder or FIFO in its place."""
    from safetensors import safe_open

    path = Path(path)
    try:
        if not path.is_file():
            raise ValueError("not a regular file")
        with open(path, "rb") as handle:
            header = handle.read(8)
        if len(header) < 8 or int.from_bytes(header, "little") > MAX_SAFETENSORS_HEADER:
            raise ValueError("no safetensors header")
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise DamagedFile(f"{what} {path} cannot be read as safetensors ({type(error).__name__}: {error}); it is "
                          f"damaged or not a safetensors file") from None
    return tensors, metadata
