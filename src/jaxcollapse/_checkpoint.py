"""The engine's checkpoints: everything a run needs to go on where it stopped.

A checkpoint is one ``.npz`` file (no pickle) written atomically at segment boundaries:
the finished chunks' records (merged moments and sketches, or their trajectories, and
their final metrics), and for the chunk in flight the carry (parameters and policy
state of every chain) after its last finished segment with the records of its
generations so far. Randomness needs no state: chain i's words at generation n are
threefry(fold_in(root, n), (i, j)), and the root is the seed, so a resumed run draws
exactly what the uninterrupted one would have, and ends bit-identical to it.

``identity`` is a JSON-able dict of everything that decides the numbers (the caller's
study description, seed, chains, generations, chunk size, segment length, records); a
checkpoint whose identity differs is refused rather than silently mixed in.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ._integrity import DamagedFile, load_npz, save_npz
from ._validation import ConfigError

CHECKPOINT_FORMAT = 1
# For tests of kill-and-resume: after this many checkpoint writes the process sends
# itself SIGKILL (a real, uncatchable kill, at a moment the test can choose).
KILL_AFTER_ENV = "JAXCOLLAPSE_TEST_KILL_AFTER_CHECKPOINTS"


@dataclass
class EngineState:
    """Where a run stands: ``chunk`` is the chunk in flight (or the next one when
    ``carry`` is None), ``segments`` how many of its segments are done."""

    chunk: int = 0
    segments: int = 0
    carry: Any = None  # host pytree of the chunk in flight
    partial: Any = None  # its records so far, stacked over generations
    moments: dict | None = None
    sketches: dict | None = None
    trajectory_chunks: list = field(default_factory=list)
    final_chunks: list = field(default_factory=list)


def _leaves_to_host(tree) -> list[np.ndarray]:
    leaves = []
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            raise ConfigError("a chain carry holding PRNG keys cannot be checkpointed; keep random words, not keys")
        leaves.append(np.asarray(leaf))
    return leaves


_writes = 0  # checkpoints written by this process (for KILL_AFTER_ENV)


def save(path: Path, identity: dict, state: EngineState) -> None:
    """Write ``state`` to ``path`` atomically."""
    arrays: dict[str, np.ndarray] = {}

    def put(prefix: str, tree) -> int:
        leaves = _leaves_to_host(tree)
        for index, leaf in enumerate(leaves):
            arrays[f"{prefix}/{index}"] = leaf
        return len(leaves)

    meta = {"format": CHECKPOINT_FORMAT, "identity": identity, "chunk": state.chunk, "segments": state.segments,
            "in_flight": state.carry is not None, "moments": sorted(state.moments or {}),
            "sketches": sorted(state.sketches or {}), "trajectory_chunks": len(state.trajectory_chunks),
            "final_chunks": [sorted(chunk) for chunk in state.final_chunks]}
    if state.carry is not None:
        put("carry", state.carry)
        put("partial", state.partial)
    for name, value in (state.moments or {}).items():
        arrays[f"moments/{name}"] = np.asarray(value)
    for name, value in (state.sketches or {}).items():
        arrays[f"sketches/{name}"] = np.asarray(value)
    for index, chunk in enumerate(state.trajectory_chunks):
        put(f"trajectories/{index}", chunk)
    for index, chunk in enumerate(state.final_chunks):
        for name, value in chunk.items():
            arrays[f"final/{index}/{name}"] = np.asarray(value)
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)  # with its content digest, checked on load
    after_write()


def after_write() -> None:
    """Count a saved state (an engine checkpoint, a host executor's stage artefact); under
    :data:`KILL_AFTER_ENV` = N the N-th one is followed by SIGKILL (tests of kill -9)."""
    global _writes
    _writes += 1
    limit = os.environ.get(KILL_AFTER_ENV)
    if limit and _writes >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


_META_TYPES = {"format": int, "identity": dict, "chunk": int, "segments": int, "in_flight": bool, "moments": list,
               "sketches": list, "trajectory_chunks": int, "final_chunks": list}


def _meta(path: Path, stored) -> dict:
    """The checkpoint's metadata, every field of its type (and counts >= 0), or a named refusal."""
    try:
        meta = json.loads(str(stored)) if stored is not None and stored.shape == () else None
    except (TypeError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise DamagedFile(f"checkpoint {path} has no readable metadata; delete it to start the run over")
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            raise DamagedFile(f"checkpoint {path}: metadata {key!r} is {value!r}, not a valid {kind.__name__}; "
                              f"delete it to start the run over")
    return meta


def load(path: Path, identity: dict, carry_shapes, record_shapes) -> EngineState:
    """Read the checkpoint at ``path`` for the run described by ``identity``.

    ``carry_shapes`` and ``record_shapes`` (pytrees of ``jax.ShapeDtypeStruct``: a chunk's
    carry and one generation's records) give the structure the flat leaves are put back
    in; every leaf's shape and dtype is checked against them.
    """
    try:
        arrays = load_npz(path, "checkpoint")
    except DamagedFile as error:
        raise DamagedFile(f"{error}. Nothing was resumed from it: delete it (or run with --force) to start the run "
                          f"over") from None
    meta = _meta(path, arrays.pop("meta", None))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"checkpoint {path} has format {meta.get('format')!r}; this jaxcollapse writes "
                          f"{CHECKPOINT_FORMAT}. Delete it to start the run over")
    identity = json.loads(json.dumps(identity))  # as it reads back from the file (tuples become lists)
    if meta["identity"] != identity:
        changed = sorted(key for key in set(meta["identity"]) | set(identity)
                         if meta["identity"].get(key) != identity.get(key))
        raise ConfigError(f"checkpoint {path} belongs to a different run (differs in: {', '.join(changed)}); "
                          f"delete it or use another folder")

    def take(prefix: str, shapes, extra: int = 0, free: int = 0):
        """The pytree ``prefix``: each leaf has ``extra`` leading axes more than its shape
        in ``shapes``, whose first ``free`` axes are not checked (trimmed chain axes)."""
        structure = jax.tree.structure(shapes)
        leaves = []
        for index, want in enumerate(jax.tree.leaves(shapes)):
            leaf = arrays.get(f"{prefix}/{index}")
            if leaf is None or leaf.shape[extra + free:] != tuple(want.shape)[free:] or leaf.dtype != want.dtype:
                leaf = leaf if leaf is not None else np.zeros(0)
                raise ConfigError(f"checkpoint {path}: {prefix}/{index} is {leaf.dtype}{list(leaf.shape)}, "
                                  f"expected {want.dtype}{list(want.shape)}; it was written by another program")
            leaves.append(leaf)
        return jax.tree.unflatten(structure, leaves)

    state = EngineState(chunk=meta["chunk"], segments=meta["segments"])
    if meta["in_flight"]:
        state.carry = take("carry", carry_shapes)
        state.partial = take("partial", record_shapes, extra=1)
    if meta["moments"]:
        state.moments = {name: arrays[f"moments/{name}"] for name in meta["moments"]}
        state.sketches = {name: arrays[f"sketches/{name}"] for name in meta["sketches"]}
    state.trajectory_chunks = [take(f"trajectories/{index}", record_shapes, extra=1, free=1)
                               for index in range(meta["trajectory_chunks"])]
    state.final_chunks = [{name: arrays[f"final/{index}/{name}"] for name in names}
                          for index, names in enumerate(meta["final_chunks"])]
    return state
