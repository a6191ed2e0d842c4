"""The host executor: chains whose generations are trained from Python.

A neural family (the VAE, OPT, a researcher's own Flax model) takes minutes per
generation, trains with a host loop (progress, best-epoch selection) and runs a handful
of independent runs, not thousands of chains. :class:`HostProgram` is such a chain, built
by :func:`jaxcollapse.programs.host_program`; ``jaxcollapse.simulate(program)`` runs it
here, with the engine's keys and data policies and the engine's result type:

* **keys**: step n's random words are the engine's (``step_words(root, n, chain ids)``),
  split into a sample key, a policy key and a fit key exactly as the data path of
  :func:`jaxcollapse.programs.data_path_program` splits them, so a traceable family gives
  the same trajectories on both executors (tested for the Gaussian family);
* **data policies**: D_n is built by :func:`jaxcollapse.policies.data_program`, jitted and
  vmapped over runs: every policy applies (replace, accumulate, real fractions, mixing);
* **stages**: per generation, *fit* (``Family.fit_runs``, or ``fit`` vmapped), *sample*
  (``Family.sample_runs``, or ``sample`` vmapped: the rows generation n + 1 writes) and
  *score* (``HostProgram.metrics``, a host function of a :class:`Generation`), each run
  for ``chains_per_call`` runs at a time;
* **artefacts**: with ``checkpoint=DIR`` every stage's result is written atomically as soon
  as it exists, ``generation_<n>/params_<a>-<b>.safetensors`` (runs a..b-1's parameters),
  ``samples_<a>-<b>.npz`` (the rows they wrote) and ``metrics_<a>-<b>.npz``, beside
  ``identity.json`` (the run they belong to: another run's folder is refused). Each file
  carries the SHA-256 digest of its content and is verified (digest, names, shapes,
  dtypes) before it is used: a damaged file is refused, naming the generation to
  recompute from. A run
  killed at any moment and started again loads every finished stage, rebuilds the data
  sets by replaying the policy over the saved samples (no fit is redone) and ends
  bit-identical to an uninterrupted run. A stage may keep partial work of its own in
  :func:`stage_scratch` (OPT's generation saves its finished batches there).

Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxcollapse import DataPolicy, GaussianParams, gaussian, normal_initial, simulate
    >>> from jaxcollapse.programs import host_program
    >>> program = host_program(
    ...     gaussian(dim=1), DataPolicy("accumulate"), np.array([20, 20, 20]), normal_initial(0.0, 1.0).sampler(1),
    ...     metrics=lambda g: {"sigma2": np.asarray(g.params.cov[:, 0, 0])},
    ...     metric_names=("sigma2",), initial_params=GaussianParams(jnp.zeros(1), jnp.eye(1)))
    >>> result = simulate(program, num_chains=4, record="trajectories")
    >>> result.trajectories["sigma2"].shape
    (4, 4)
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checkpoint import after_write
from ._files import atomic_bytes, read_config, write_config
from ._integrity import (DamagedFile, arrays_digest, check_finite, finite_names, load_npz, read_safetensors,
                         save_npz)
from ._random import key_from_words, step_words
from ._validation import ConfigError, require_int
from .families.base import Family
from .policies import DataPolicy, data_program

__all__ = ["HostProgram", "Generation", "stage_scratch", "save_params", "load_params", "STAGES"]

STAGES = ("fit", "sample", "score")


class Generation(NamedTuple):
    """What ``HostProgram.metrics`` sees of generation ``index`` for a group of runs (every
    array has the runs axis first).

    ``params``: the generation's parameters (``None`` at generation 0 unless the program
    has ``initial_params``); ``samples``: the rows it wrote (at generation 0, the draw of
    p_0 that makes D_0); ``data``, ``weights``: D_{n-1}, the data set the parameters were
    fitted to (``None`` at generation 0); ``reference``: generation 1's parameters, the
    first model fitted (to real data), for scores "under the generation-0 model";
    ``chains``: the runs' indices."""

    index: int
    params: Any
    samples: Any
    data: Any
    weights: Any
    reference: Any
    chains: np.ndarray


class HostProgram(NamedTuple):
    """A chain of a host-trained family (see :func:`jaxcollapse.programs.host_program`)."""

    family: Family
    policy: DataPolicy
    sizes: np.ndarray
    sample_initial: Callable[[Any, int], Any]
    metrics: Callable[[Generation], dict]
    metric_names: tuple[str, ...]
    num_generations: int
    params_shape: Any
    initial_params: Any = None
    chains_per_call: int | None = None
    on_stage: Callable[[int, str, int, int], None] | None = None

    def resolve_generations(self, requested: int | None = None) -> int:
        if requested is not None and require_int("num_generations", requested, 0) != self.num_generations:
            raise ConfigError(f"num_generations must equal the program's G = {self.num_generations}; got {requested}")
        return self.num_generations


# ---------------------------------------------------------------------------- artefacts

_SCRATCH: contextvars.ContextVar[Path | None] = contextvars.ContextVar("jaxcollapse_stage_scratch", default=None)


def stage_scratch() -> Path | None:
    """A folder the running stage may keep partial work in (created on demand; removed
    once the stage's artefact is written), or ``None`` when the run has no checkpoint.
    A family's ``sample_runs`` or ``fit_runs`` may save finished pieces there and pick
    them up when an interrupted stage runs again."""
    return _SCRATCH.get()


def _leaf_name(key_path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in key_path)


INTEGRITY_KEY = "jaxcollapse"  # a parameter file's metadata: {"sha256": digest, "finite": names}


def save_params(path: Path, params) -> None:
    """A parameter pytree as one safetensors file, leaves named by their key paths, with
    the SHA-256 digest of its tensors and the names of its finite ones in the file's
    metadata (atomic). The metadata is one key: safetensors writes several in an order
    that changes between processes, and a resumed run's files must equal a whole run's."""
    from safetensors.numpy import save

    flat = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        flat[_leaf_name(key_path) or "leaf"] = np.ascontiguousarray(np.asarray(leaf))
    record = {"sha256": arrays_digest(flat), "finite": finite_names(flat)}
    atomic_bytes(path, save(flat, metadata={INTEGRITY_KEY: json.dumps(record, sort_keys=True)}))


def load_params(path: Path, template):
    """The pytree :func:`save_params` wrote, shaped like ``template`` (arrays or
    ``ShapeDtypeStruct``s), after checking its digest; a damaged file, or one whose names,
    shapes or dtypes do not match the template, is refused by name."""
    stored, metadata = read_safetensors(path)
    try:
        record = json.loads(metadata.get(INTEGRITY_KEY, "null"))
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("sha256") != arrays_digest(stored):
        raise DamagedFile(f"saved parameters {path} do not match the digest written with them: damaged or edited")
    check_finite(path, "saved parameters", stored, record.get("finite", []))
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for key_path, leaf in paths:
        name = _leaf_name(key_path) or "leaf"
        found = stored.get(name)
        if found is None or tuple(found.shape) != tuple(leaf.shape) or found.dtype != np.dtype(leaf.dtype):
            got = "missing" if found is None else f"{found.dtype}{list(found.shape)}"
            raise DamagedFile(f"saved parameters {path} do not match this run's model: parameter {name!r} is {got}, "
                              f"expected {np.dtype(leaf.dtype)}{list(leaf.shape)}")
        leaves.append(jnp.asarray(found))
    return jax.tree_util.tree_unflatten(treedef, leaves)


class _Store:
    """The run's artefacts: one file per (generation, stage, group of runs), or memory only."""

    def __init__(self, folder: Path | None, identity: dict):
        self.folder = folder
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / "identity.json"
        identity = json.loads(json.dumps(identity))  # as it reads back (tuples become lists)
        if marker.exists():
            try:
                saved = read_config(marker)  # its digest checked: damage is told apart from another run
            except ConfigError as error:
                raise DamagedFile(f"{error}. The checkpoint folder {folder} cannot be trusted; delete it to start "
                                  f"over") from None
            if saved != identity:
                changed = sorted(key for key in set(saved) | set(identity) if saved.get(key) != identity.get(key))
                raise ConfigError(f"the checkpoint folder {folder} belongs to a different run ({marker.name} differs "
                                  f"in: {', '.join(changed)}); use another folder, or delete it to start over")
        else:
            write_config(marker, identity)

    def path(self, generation: int, stage: str, group: tuple[int, int]) -> Path | None:
        if self.folder is None:
            return None
        suffix = {"fit": "safetensors", "sample": "npz", "score": "npz"}[stage]
        name = {"fit": "params", "sample": "samples", "score": "metrics"}[stage]
        return self.folder / f"generation_{generation}" / f"{name}_{group[0]}-{group[1]}.{suffix}"

    @contextlib.contextmanager
    def scratch(self, generation: int, stage: str, group: tuple[int, int]):
        if self.folder is None:
            yield
            return
        where = self.folder / f"generation_{generation}" / f"partial_{stage}_{group[0]}-{group[1]}"
        token = _SCRATCH.set(where)
        try:
            yield
        finally:
            _SCRATCH.reset(token)

    def finished(self, generation: int, stage: str, group: tuple[int, int]) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder / f"generation_{generation}" / f"partial_{stage}_{group[0]}-{group[1]}",
                          ignore_errors=True)


# ---------------------------------------------------------------------------- the executor

def _concat(parts):
    return jax.tree.map(lambda *xs: jnp.concatenate([jnp.asarray(x) for x in xs]), *parts)


def _samples(samples, runs: int, rows: int, row: jax.ShapeDtypeStruct, refusal) -> jax.Array:
    """``samples`` as an array of ``runs`` x ``rows`` rows of ``row``: what a stage drew or
    a file holds; anything else raises ``refusal(expected, got)`` (the stage's words)."""
    expected = (runs, rows, *row.shape)
    got = "nothing" if samples is None else f"{np.shape(samples)} {np.asarray(samples).dtype}"
    if samples is None or tuple(np.shape(samples)) != expected or np.asarray(samples).dtype != row.dtype:
        raise refusal(f"{expected} {row.dtype}", got)
    return jnp.asarray(samples)


def run_host_program(program: HostProgram, *, num_chains: int, seed: int, checkpoint, identity, progress) -> tuple:
    """Every run's metrics for generations 0..G (a dict of (G + 1, runs, ...) arrays), and
    their parameters (a pytree of (G + 1, runs, ...)) when the program has initial ones."""
    family, policy = program.family, program.policy
    G = program.num_generations
    sizes = np.asarray(program.sizes)  # never empty: host_program gives G = 0 a placeholder size
    rows = int(np.max(sizes))
    sizes_device = jnp.asarray(sizes, jnp.int32)
    policy_program = data_program(policy, sizes)
    sample_initial = program.sample_initial
    store = _Store(None if checkpoint is None else Path(checkpoint), identity)
    per_call = program.chains_per_call or num_chains
    groups = [(a, min(a + per_call, num_chains)) for a in range(0, num_chains, per_call)]
    chain_ids = jnp.arange(num_chains, dtype=jnp.uint32)
    root = jax.random.key(seed)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (lambda text: None)

    @jax.jit
    def keys_of(n):
        """(sample, policy, fit) keys of every run at step n: the data path's split."""
        words = step_words(root, n, chain_ids, 2)
        keys = jax.vmap(lambda w: jax.random.split(key_from_words(w), 3))(words)
        return keys[:, 0], keys[:, 1], keys[:, 2]

    @jax.jit
    @jax.vmap
    def first_data(sample_key, policy_key):
        real = sample_initial(sample_key, rows)
        data, weights, state = policy_program.init(policy_key, real, sizes_device[0])
        return real, data, weights, state

    @jax.jit
    def next_data(policy_keys, state, model, n):
        step = lambda key, state, model: policy_program.step(key, state, model, sizes_device[n], sample_initial)
        return jax.vmap(step)(policy_keys, state, model)

    fit_runs, sample_runs, refit = family.fit_runs, family.sample_runs, family.refit
    if fit_runs is None:
        vmapped_fit = jax.jit(jax.vmap(family.fit))
        vmapped_refit = None if refit is None else jax.jit(jax.vmap(refit))

        def fit_runs(keys, data, weights, previous):
            if previous is None or vmapped_refit is None:
                return vmapped_fit(keys, data, weights)
            return vmapped_refit(keys, data, weights, previous)
    if sample_runs is None:
        vmapped_sample = jax.jit(jax.vmap(family.sample, in_axes=(0, 0, None)), static_argnums=2)

        def sample_runs(keys, params, n):
            return vmapped_sample(keys, params, n)
    def template(group):  # one run's parameter shapes, with the group's runs axis in front
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct((group[1] - group[0],) + tuple(s.shape), s.dtype),
                            program.params_shape)

    def stage(generation, name, group, compute, load, save):
        """One stage for one group of runs: its artefact if it was written (verified), else
        computed and written."""
        path = store.path(generation, name, group)
        if path is not None and path.exists():
            try:
                return load(path, group)
            except DamagedFile as error:
                raise DamagedFile(f"{error}. Nothing was resumed from it: delete {path.parent} and every later "
                                  f"generation_* folder of {path.parent.parent}, and run again to recompute from "
                                  f"generation {generation - 1}") from None
        label = f"generation {generation}/{G}: {name} runs {group[0]}-{group[1] - 1}"
        say(label + " ...")
        started = time.perf_counter()
        with store.scratch(generation, name, group):
            value = compute()
        if path is not None:
            save(path, value)
            store.finished(generation, name, group)
            after_write()  # (a test may kill the process here: KILL_AFTER_ENV)
        say(f"{label} done in {time.perf_counter() - started:.1f} s")
        if program.on_stage is not None:
            program.on_stage(generation, name, *group)
        return value

    load_fit = lambda path, group: load_params(path, template(group))
    row = jax.ShapeDtypeStruct(family.row.shape, jax.dtypes.canonicalize_dtype(family.row.dtype))

    def load_samples(path, group):
        return _samples(load_npz(path, "saved samples").get("samples"), group[1] - group[0], rows, row,
                        lambda expected, got: DamagedFile(f"saved samples {path} hold {got}, not {expected}"))

    def sampled(samples, runs):
        return _samples(samples, runs, rows, row, lambda expected, got: ConfigError(
            f"family {family.name!r}: sample_runs must return {expected} (runs, n, *row); got {got}"))

    def save_samples(path, samples):
        save_npz(path, {"samples": samples})

    def load_scores(path, group):
        scores = load_npz(path, "saved metrics")
        if set(scores) != set(program.metric_names):
            raise DamagedFile(f"saved metrics {path} hold {sorted(scores)}, not this run's {list(program.metric_names)}")
        return scores

    def scores(generation, params, samples, data, weights, reference, group):
        a, b = group
        view = Generation(generation, params, samples, data, weights, reference, np.arange(a, b))
        values = program.metrics(view)
        missing = [name for name in program.metric_names if name not in values]
        if missing:
            raise ConfigError(f"the host program's metrics did not return {missing}")
        return {name: np.asarray(values[name]) for name in program.metric_names}

    def per_group(fn):
        return [fn(group, slice(*group)) for group in groups]

    sample_keys, policy_keys, fit_keys = keys_of(jnp.int32(0))
    real, data, weights, state = first_data(sample_keys, policy_keys)
    records = [None] * (G + 1)
    kept_params = [program.initial_params]
    params = reference = None
    initial = program.initial_params
    for n in range(G):
        previous = params  # generation n's, for a fit that starts from it (None at n = 0)
        params = _concat(per_group(lambda group, s: stage(
            n + 1, "fit", group,
            lambda: fit_runs(fit_keys[s], data[s], weights[s],
                             None if previous is None else jax.tree.map(lambda x: x[s], previous)),
            load_fit, save_params)))
        if reference is None:
            reference = params  # generation 0's record needs the first model (scores under it)
            records[0] = _merge_groups(per_group(lambda group, s: _score_stage(
                stage, scores, group, s, initial, real, reference, load_scores)))
        sample_keys, policy_keys, fit_keys_next = keys_of(jnp.int32(n + 1))
        samples = _concat(per_group(lambda group, s: stage(
            n + 1, "sample", group,
            lambda: sampled(sample_runs(sample_keys[s], jax.tree.map(lambda x: x[s], params), rows),
                            s.stop - s.start),
            load_samples, save_samples)))
        records[n + 1] = _merge_groups(per_group(lambda group, s: stage(
            n + 1, "score", group,
            lambda: scores(n + 1, jax.tree.map(lambda x: x[s], params), samples[s], data[s], weights[s],
                           jax.tree.map(lambda x: x[s], reference), group),
            load_scores, save_npz)))
        if initial is not None:
            kept_params.append(params)
        if n + 1 < G:
            data, weights, state = next_data(policy_keys, state, samples, jnp.int32(n + 1))
        fit_keys = fit_keys_next
    if G == 0:
        records[0] = {name: np.full((num_chains,), np.nan) for name in program.metric_names}
    trajectories = {name: np.stack([record[name] for record in records]) for name in program.metric_names}
    stacked = None
    if initial is not None:
        first = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (num_chains,) + np.shape(x)), initial)
        stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), first, *kept_params[1:])
    return trajectories, stacked


def _merge_groups(parts: list[dict]) -> dict:
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _score_stage(stage, scores, group, s, initial, real, reference, load_scores):
    """Generation 0's record: p_0's parameters (when the program has them) and D_0's draw."""
    runs = s.stop - s.start
    params = None if initial is None else jax.tree.map(
        lambda x: jnp.broadcast_to(x, (runs,) + jnp.shape(x)), initial)
    return stage(0, "score", group,
                 lambda: scores(0, params, real[s], None, None, jax.tree.map(lambda x: x[s], reference), group),
                 load_scores, save_npz)
