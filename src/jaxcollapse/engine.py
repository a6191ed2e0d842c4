"""The engine: one ``lax.scan`` over generations around a ``vmap`` over chains.

A :class:`ChainProgram` describes one chain: its generation-0 parameters, ``step``
(build D_n and fit generation n + 1; n = 0 draws D_0 from p_0) and ``metrics``. The
engine runs many chains of it:

* randomness is derived, never split across chains: at generation n chain i gets the
  random words threefry(fold_in(root, n), (i, j)), j < ``words_per_step``, computed for
  the whole batch as one flat array; so chain i's trajectory is the same whatever the
  number of chains, the chunk size or the number of devices;
* chains are processed in chunks that fit a memory budget; each chunk runs the
  generations in segments of one compiled ``scan`` (the same executable for every chunk
  and segment: it is compiled once per configuration), which lets a progress meter see
  the generation counter;
* chains of a chunk are sharded over the devices of a 1-D ``jax.sharding`` mesh with a
  ``chains`` axis;
* records are either full per-chain trajectories or streaming summaries across chains
  (moments and quantile sketches, O(generations) memory).

Examples:
    >>> from jaxcollapse import gaussian_study, simulate
    >>> study = gaussian_study(samples=100, generations=5)
    >>> result = simulate(study.program(), num_chains=64, num_generations=5, seed=0)
    >>> result.summary("w2_risk")["mean"].shape
    (6,)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _checkpoint
from ._progress import Progress
from ._random import LANE_BLOCK, step_words
from ._validation import ConfigError, require_int, require_memory
from .distributed import is_main_process
from .host import HostProgram, run_host_program
from .summaries import chunk_moments, describe_moments, merge_moments, sketch, sketch_quantiles

__all__ = ["ChainProgram", "SimulationResult", "simulate", "RECORDS", "EXECUTORS"]

RECORDS = ("summary", "trajectories")
# where the generation loop runs: "scan", segments of generations in one compiled lax.scan;
# "host", a Python loop with one compiled call per generation (a step too heavy to sit in
# a loop body, or one whose generations need host work between them); the same keys,
# records, chunks and checkpoints, and the same numbers (tested)
EXECUTORS = ("scan", "host")
# generations per segment by default (a tenth of the run, at least this many): each call
# of the compiled segment costs a fixed time on top of its generations (measured on 2
# cores: ~13 ms for 112 chains at K = M = 10^4, where a generation takes ~22 ms)
MIN_SEGMENT = 10
MAX_CHAINS = 2**31


class _ChainProgramFields(NamedTuple):
    """The fields of :class:`ChainProgram` (documented there)."""

    initial_params: Any
    initial_state: Callable[[], Any]
    step: Callable[[Any, Any, Any], Any]
    metrics: Callable[[Any], dict]
    bytes_per_chain: int
    metric_names: tuple[str, ...]
    words_per_step: int = 2
    preferred_chunk: int | None = None
    num_generations: int | None = None
    chain_block: int = 0
    arguments: Any = None
    bind: Callable[[Any], Any] | None = None
    cache_key: Any = None


class ChainProgram(_ChainProgramFields):
    """One recursion chain, written for a single chain (the engine vmaps it).

    ``initial_params``: generation 0's parameters (p_0 or its moment-matched model).
    ``step(words, carry, n) -> carry``: ``words`` are ``words_per_step`` random uint32
    words for this chain and generation (``jaxcollapse._random.key_from_words`` turns two
    of them into a key for bulk draws); carry = (params, policy_state); n = 0 must build
    D_0 from p_0 and ignore the incoming state.
    ``initial_state()``: a policy state of the right structure (zeros) for n = 0.
    ``metrics(params) -> dict`` of scalars. ``bytes_per_chain``: working-set estimate.
    ``preferred_chunk``: chains per chunk whose working set stays in cache (the default
    chunk size when the memory budget allows it; a data path over thousands of points per
    chain runs several times faster in chunks of ~100 chains than in one of thousands).
    ``chain_block``: on XLA:CPU, run ``step`` over a chunk in blocks of this many chains
    per device (a multiple of ``LANE_BLOCK``; 0: off), one compiled block body in a loop,
    instead of one vmap over the chunk; chunks are padded to whole blocks. For programs
    whose vmapped reductions over many rows XLA:CPU rounds by batch size (the data
    paths): with it a chain's numbers do not depend on the chunk size.
    ``arguments``, ``bind`` and ``cache_key`` let programs that differ only in numbers
    (sample sizes, p_0's parameters, ...) share one compilation: ``arguments`` is a
    pytree of arrays, passed to every compiled call as a traced argument, and
    ``bind(arguments)`` returns the program whose functions read those numbers from it.
    ``cache_key`` (hashable) names everything else the functions bake in: two programs
    with equal keys and arguments of equal shapes must compute the same function of their
    arguments. :func:`simulate` then keeps the compiled executables for the process, and
    a second run of the same shape compiles (and traces) nothing.
    ``num_generations``: the G the program was built for (its schedule's length; a study's
    ``generations``), which :func:`simulate` runs by default; ``None`` for a program that
    does not know it (``simulate`` then needs ``num_generations``). Step n reads the
    schedule's n-th sample size, so running past G would reuse its last size.
    """

    __slots__ = ()

    def _replace(self, **changes) -> "ChainProgram":
        """A copy with ``changes``. A program whose numbers are traced arguments (``bind``)
        loses ``arguments``, ``bind`` and ``cache_key`` when anything it computes with is
        replaced (a wrapped ``step``, other ``metrics``): ``bind`` would rebuild the
        original functions and ignore the change, and a cache key would name a program that
        no longer is. Run settings (memory, chunking) keep them."""
        keeps = {"bytes_per_chain", "preferred_chunk", "chain_block", "num_generations", "arguments", "bind",
                 "cache_key"}
        if self.bind is not None and set(changes) - keeps and not {"bind", "cache_key"} & set(changes):
            changes = {**changes, "arguments": None, "bind": None, "cache_key": None}
        return super()._replace(**changes)

    def resolve_generations(self, requested: int | None = None) -> int:
        """The G a run covers: the program's own, or ``requested`` where it knows none; a
        ``requested`` G other than the program's is refused (a longer run would reuse the
        schedule's last sample size: wrong numbers, no error). Checked on the host."""
        built = self.num_generations
        if built is not None:
            built = require_int("ChainProgram.num_generations", built, 0)
        if requested is None:
            if built is None:
                raise ConfigError("num_generations is required: this program does not know its generations "
                                  "(ChainProgram.num_generations is None); pass an integer >= 0")
            return built
        requested = require_int("num_generations", requested, 0)
        if built is not None and requested != built:
            raise ConfigError(
                f"num_generations must equal the program's G = {built} (the generations its schedule was built "
                f"for); got {requested}. Omit num_generations to run the program's G, or build the study with "
                f"generations={requested}")
        return requested


@dataclass
class SimulationResult:
    """What a run recorded; per-generation arrays have ``num_generations + 1`` rows."""

    num_chains: int
    num_generations: int
    record: str
    metric_names: tuple[str, ...]
    moments: dict[str, np.ndarray] | None = None  # (G + 1, 5)
    sketches: dict[str, np.ndarray] | None = None  # (G + 1, bins)
    trajectories: dict[str, np.ndarray] | None = None  # (G + 1, chains)
    params: Any = None  # pytree of (G + 1, chains, ...)
    final: dict[str, np.ndarray] | None = None  # (chains,): final_metrics at the last generation
    compile_seconds: float = 0.0
    run_seconds: float = 0.0

    def summary(self, metric: str) -> dict[str, np.ndarray]:
        """Across-chain mean, its standard error, variance and variance standard error."""
        if metric not in self.metric_names:
            raise ConfigError(f"unknown metric {metric!r}; this run records {', '.join(self.metric_names)}")
        if self.moments is None:
            values = self.trajectories[metric].astype(np.float64)
            moments = _host_moments(values)
        else:
            moments = self.moments[metric]
        return describe_moments(moments)

    def quantiles(self, metric: str, quantiles) -> np.ndarray:
        """(G + 1, len(quantiles)): exact from trajectories, sketched from summaries."""
        if self.trajectories is not None:
            return np.quantile(self.trajectories[metric], quantiles, axis=1).T
        if not self.sketches or metric not in self.sketches:
            raise ConfigError(f"no quantile sketch was recorded for {metric!r}; pass quantile_metrics=({metric!r},)")
        return sketch_quantiles(self.sketches[metric], quantiles)

    def to_dataframe(self, quantiles=(0.05, 0.5, 0.95), theory=()):
        """A tidy pandas table, one row per (metric, generation): ``mean``, ``se``, ``var``,
        ``var_se``, a column ``q<level>`` per quantile (NaN where none was recorded), and
        one column per formula of ``theory`` (a study's ``theory_curves()``): ``E[m]``
        curves under their formula's name, ``Var[m]`` ones as ``Var <formula>``.

        Examples:
            >>> import jaxcollapse as jc
            >>> study = jc.gaussian_study(samples=10, generations=2)
            >>> result = jc.simulate(study.program(), num_chains=64, quantile_metrics=("w2_risk",))
            >>> frame = result.to_dataframe(theory=study.theory_curves())
            >>> frame.query("metric == 'w2_risk'")[["generation", "mean", "exact"]].shape
            (3, 3)
        """
        pd = _optional("pandas", "to_dataframe")
        generations = np.arange(self.num_generations + 1)
        frames = []
        for metric in self.metric_names:
            block = {"generation": generations, "metric": metric, **self.summary(metric)}
            try:
                found = np.asarray(self.quantiles(metric, list(quantiles)), np.float64).reshape(generations.size, -1)
            except ConfigError:  # no sketch of this metric was recorded
                found = np.full((generations.size, len(quantiles)), np.nan)
            for index, level in enumerate(quantiles):
                block[f"q{level:g}"] = found[:, index]
            for curve in theory:
                values = np.asarray(curve.values, np.float64)
                if values.ndim == 1 and curve.quantity in (f"E[{metric}]", f"Var[{metric}]"):
                    name = curve.formula if curve.quantity.startswith("E[") else f"Var {curve.formula}"
                    block[name] = values[: generations.size]
            frames.append(pd.DataFrame(block))
        return pd.concat(frames, ignore_index=True)  # a formula of some metrics only: NaN for the others

    def to_xarray(self):
        """An xarray Dataset: with ``record="trajectories"``, one variable per metric over
        ``generation`` x ``chain``; with summaries, one per metric over ``generation`` x
        ``statistic`` (mean, se, var, var_se).

        Examples:
            >>> import jaxcollapse as jc
            >>> study = jc.gaussian_study(samples=10, generations=2)
            >>> data = jc.simulate(study.program(), num_chains=8, record="trajectories").to_xarray()
            >>> data["w2_risk"].dims, data["w2_risk"].shape
            (('generation', 'chain'), (3, 8))
        """
        xr = _optional("xarray", "to_xarray")
        generation = np.arange(self.num_generations + 1)
        if self.trajectories is not None:
            chain = np.arange(self.num_chains)
            return xr.Dataset({metric: (("generation", "chain"), np.asarray(self.trajectories[metric]))
                               for metric in self.metric_names}, coords={"generation": generation, "chain": chain})
        statistics = ("mean", "se", "var", "var_se")
        return xr.Dataset(
            {metric: (("generation", "statistic"), np.stack([self.summary(metric)[k] for k in statistics], axis=-1))
             for metric in self.metric_names},
            coords={"generation": generation, "statistic": list(statistics)})


def _optional(module: str, method: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"SimulationResult.{method} needs {module}: pip install 'jaxcollapse[results]'") from None


def _host_moments(values: np.ndarray) -> np.ndarray:
    """(G + 1, ..., 5) moments of (G + 1, chains, ...) trajectories."""
    n = values.shape[1]
    mean = values.mean(axis=1)
    centred = values - mean[:, None]
    return np.stack([
        np.full(mean.shape, float(n)), mean,
        (centred**2).sum(1), (centred**3).sum(1), (centred**4).sum(1),
    ], axis=-1)


def _record_summary(metric_values: dict, valid, quantile_metrics):
    moments = {name: chunk_moments(value, valid) for name, value in metric_values.items()}
    sketches = {name: sketch(metric_values[name], valid) for name in quantile_metrics}
    return moments, sketches


def _to_host(array) -> np.ndarray:
    """A global array as numpy in every process: local data as is, a replicated array from
    this process's copy, an array sharded over processes gathered from all of them."""
    if array.is_fully_addressable:
        return np.asarray(array)
    if array.is_fully_replicated:
        return np.asarray(array.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def check_run_fits(program: ChainProgram, num_chains: int, *, record: str = "summary", quantile_metrics=(),
                   final_metrics=()) -> None:
    """Refuse (``ConfigError``), before any compilation or allocation, a run of
    ``program`` whose smallest chunk (one block of chains) or whose records cannot fit in
    this machine's memory; :func:`simulate` checks the same, and run writers call this
    before they write anything."""
    returned = jax.eval_shape(program.metrics, program.initial_params)
    _check_memory(program, returned, num_chains, program.resolve_generations(None) if program.num_generations
                  is not None else 0, record, quantile_metrics, final_metrics)


def _check_memory(program, metric_shapes, num_chains, num_generations, record, quantile_metrics, final_metrics):
    """Refuse, before any compilation or allocation, a run whose smallest chunk (one block
    of chains) or whose records cannot fit in this machine's memory."""
    from .summaries import SKETCH_BINS

    chunk = 2 * LANE_BLOCK * max(int(program.bytes_per_chain), 1)  # the carry and a step's working set
    require_memory(f"one chunk of {LANE_BLOCK} chains of this program", chunk,
                   "lower the sample sizes (--samples, the schedule), --dim, the number of states, or use "
                   "--path stats where it applies")
    sizes = {name: max(1, int(np.prod(np.shape(shape)))) for name, shape in metric_shapes.items()}
    recorded = sum(sizes.get(name, 1) for name in program.metric_names)
    rows = num_generations + 1
    if record == "trajectories":
        params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(program.initial_params))
        records = 4 * rows * num_chains * (recorded + params)
    else:
        records = 8 * rows * (5 * recorded + SKETCH_BINS * len(quantile_metrics))
    records += 8 * num_chains * sum(sizes.get(name, 1) for name in final_metrics)
    require_memory(f"the records of {num_chains} chains over {num_generations} generations", 2 * records,
                   "lower --generations or --chains, or record summaries instead of trajectories")


# compiled calls kept for the process, by a program's cache key and the run's shape (see
# ChainProgram.cache_key); a study's programs are few, each a handful of executables
_COMPILED: dict = {}


def _chain_block(program: ChainProgram) -> int:
    """Chains per block of :func:`_chain_step` (0: one vmap over the chunk)."""
    if not program.chain_block or jax.default_backend() != "cpu":
        return 0
    return LANE_BLOCK * math.ceil(require_int("ChainProgram.chain_block", program.chain_block, 0) / LANE_BLOCK)


def _chain_step(program: ChainProgram, num_devices: int, per_device: int):
    """``program.step`` over a chunk of ``num_devices * per_device`` chains: one vmap, or
    (``program.chain_block`` on CPU) a loop over blocks of ``LANE_BLOCK`` chains per device,
    so that each chain's arithmetic is compiled for one batch size whatever the chunk's.
    On an accelerator the whole chunk is one vmap: there, width is speed."""
    vmapped = jax.vmap(program.step, in_axes=(0, 0, None))
    block = _chain_block(program)
    blocks = per_device // block if block else 1
    if blocks <= 1:
        return vmapped

    def split(leaf):  # (devices * per_device, ...) -> (blocks, devices * block, ...), devices kept apart
        leaf = leaf.reshape((num_devices, blocks, block) + leaf.shape[1:])
        return jnp.swapaxes(leaf, 0, 1).reshape((blocks, num_devices * block) + leaf.shape[3:])

    def join(leaf):
        leaf = leaf.reshape((blocks, num_devices, block) + leaf.shape[2:])
        return jnp.swapaxes(leaf, 0, 1).reshape((num_devices * per_device,) + leaf.shape[3:])

    def blocked(words, carry, n):
        stepped = jax.lax.map(lambda block: vmapped(*block, n), jax.tree.map(split, (words, carry)))
        return jax.tree.map(join, stepped)

    return blocked


def _chain_mesh(num_devices: int):
    devices = jax.devices()[:num_devices]
    return jax.sharding.Mesh(np.array(devices), ("chains",))


def simulate(
    program: ChainProgram,
    *,
    num_chains: int,
    num_generations: int | None = None,
    seed: int = 0,
    record: str = "summary",
    metrics: tuple[str, ...] | None = None,
    quantile_metrics: tuple[str, ...] = (),
    final_metrics: tuple[str, ...] = (),
    chunk_size: int | None = None,
    memory_budget_bytes: int = 1 << 30,
    num_devices: int | None = 1,
    segment_length: int | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    identity: dict | None = None,
    executor: str | None = None,
) -> SimulationResult:
    """Run ``num_chains`` independent chains of ``program`` for ``num_generations``.

    ``num_generations`` defaults to the program's (``ChainProgram.num_generations``, the
    study's G); given as well, it must equal it (a study's schedule has no sample sizes
    past its G; for a shorter run, build the study with fewer generations).
    ``record='summary'`` keeps across-chain moments per generation (and quantile sketches
    for ``quantile_metrics``); ``'trajectories'`` keeps every chain's metrics and params.
    ``metrics`` (default: all the program's) chooses which metrics are recorded;
    ``final_metrics`` (any of the program's) are kept for every chain at the last
    generation (O(chains) memory, e.g. a chain's absorption time).
    ``chunk_size`` (default: what ``memory_budget_bytes`` allows) bounds the chains in
    flight; ``num_devices`` (``None``: all) shards each chunk over a ``chains`` mesh.
    ``segment_length`` generations run per call of the compiled scan (default: a tenth of
    the run, at least ``MIN_SEGMENT``, at most ``checkpoint_every``); progress is reported
    and checkpoints written between calls. A run in a loop of calls is faster on XLA:CPU
    inside :func:`jaxcollapse.keep_freed_memory` (process-wide allocator settings, so the
    caller chooses: the CLI does).

    ``checkpoint`` (a file path) saves the run's state there (atomically, ``.npz``) at
    least every ``checkpoint_every`` generations (default: every segment) and after every
    chunk; if the file exists when the call starts, the run resumes from it and ends
    bit-identical to an uninterrupted run. ``identity`` (JSON-able) describes the program
    (e.g. the study's settings): a checkpoint of another program or seed is refused.

    ``executor`` says where the generation loop runs: ``"scan"`` (segments of generations
    in one compiled ``lax.scan``) or ``"host"`` (a Python loop, one compiled call per
    generation: for a step too heavy for a loop body, or generations that need host work
    between them). Keys, records, chunks and checkpoints are the driver's: the two give
    bit-identical trajectories (parameters and metrics, tested); summaries agree to
    rounding (a metric's reduction may round differently inside a loop body). The default
    is ``"scan"`` for a :class:`ChainProgram`.

    A :class:`~jaxcollapse.host.HostProgram` (a neural family's chain, built by
    :func:`jaxcollapse.programs.host_program`) runs on the host executor only (the
    default for it): a Python loop over generations whose stages (fit, sample, score) are
    calls of their own, with the same keys and data policies; ``checkpoint`` is then a
    folder of per-stage artefacts (see :mod:`jaxcollapse.host`) and ``num_chains`` the
    number of independent runs. ``chunk_size``, ``num_devices`` and ``segment_length`` do
    not apply to it.
    """
    if not isinstance(program, (ChainProgram, HostProgram)):
        raise ConfigError(f"program must be a ChainProgram (study.program(), data_path_program) or a HostProgram "
                          f"(host_program); got {type(program).__name__}")
    if isinstance(program, HostProgram):
        return _simulate_on_host(program, num_chains=num_chains, num_generations=num_generations, seed=seed,
                                 record=record, metrics=metrics, quantile_metrics=quantile_metrics,
                                 final_metrics=final_metrics, progress=progress, checkpoint=checkpoint,
                                 identity=identity, executor=executor)
    executor = "scan" if executor is None else executor
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    num_chains, num_generations, seed = _check_run_arguments(program, num_chains, num_generations, seed, record,
                                                             metrics, quantile_metrics, final_metrics)
    all_metrics = program.metrics
    returned = jax.eval_shape(all_metrics, program.initial_params)  # a traced shape check, no computation
    missing = [name for name in program.metric_names if name not in returned]
    if missing:
        raise ConfigError(f"the program's metric_names name {missing}, which its metrics function does not return "
                          f"(it returns {sorted(returned)})")
    chosen = None if metrics is None else tuple(metrics)
    source = program  # its bind, arguments and cache key (a replaced field drops them)
    if chosen is not None:
        program = program._replace(metric_names=chosen)

    def bound(arguments):
        """The program whose functions read ``arguments`` (traced in a compiled call), its
        metrics cut to the chosen ones; and its metrics in full (final metrics)."""
        concrete = source.bind(arguments) if source.bind is not None else source
        full = concrete.metrics
        if chosen is not None:
            concrete = concrete._replace(
                metrics=lambda params: {k: v for k, v in full(params).items() if k in chosen}, metric_names=chosen)
        return concrete, full

    arguments = source.arguments
    _check_memory(program, returned, num_chains, num_generations, record, quantile_metrics, final_metrics)
    available = len(jax.devices())
    num_devices = available if num_devices is None else require_int("devices", num_devices, 1)
    if num_devices > available:
        raise ConfigError(f"devices must be <= {available} (the devices JAX sees); got {num_devices}")
    if chunk_size is None:
        chunk_size = max(1, min(num_chains, memory_budget_bytes // max(program.bytes_per_chain, 1)))
        if program.preferred_chunk:
            chunk_size = min(chunk_size, program.preferred_chunk)
    chunk_size = require_int("chunk_size", chunk_size, 1)
    chunk_size = min(chunk_size, num_chains)
    # Whole SIMD blocks of chains per device: XLA:CPU evaluates the tail of a vectorised
    # loop (and a batch of one) with other instructions, whose last bits differ; with
    # every chain in a full vector lane, a chain's numbers do not depend on its chunk.
    # Padded chains are masked out of every record.
    per_device = LANE_BLOCK * math.ceil(chunk_size / num_devices / LANE_BLOCK)
    block = _chain_block(program)
    if block and per_device > block:  # whole blocks (a chunk within one block is one vmap of it)
        per_device = block * math.ceil(per_device / block)
    chunk_size = num_devices * per_device
    num_chunks = math.ceil(num_chains / chunk_size)
    if checkpoint_every is not None:
        checkpoint_every = require_int("checkpoint_every", checkpoint_every, 1)
    if segment_length is None:
        segment_length = max(MIN_SEGMENT, math.ceil(num_generations / 10))
        if checkpoint is not None and checkpoint_every is not None:
            segment_length = min(segment_length, checkpoint_every)
        segment_length = max(1, min(num_generations, segment_length))
    segment_length = require_int("segment_length", segment_length, 1)
    num_segments = math.ceil(num_generations / segment_length)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        checkpoint_every = segment_length if checkpoint_every is None else checkpoint_every
        identity = {"program": identity, "chains": num_chains, "generations": num_generations, "seed": seed,
                    "record": record, "metrics": list(program.metric_names), "quantile_metrics": list(quantile_metrics),
                    "final_metrics": list(final_metrics), "chunk_size": chunk_size, "segment_length": segment_length,
                    "x64": bool(jax.config.jax_enable_x64), "executor": executor}

    mesh = _chain_mesh(num_devices)
    chain_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chains"))
    # the root key is an argument of the compiled program, not a constant baked into it:
    # another seed reuses the executable (through JAX's persistent cache too)
    root = jax.random.key(seed)
    keep_trajectories = record == "trajectories"

    def observe(program, params, valid):
        if keep_trajectories:
            return params  # metrics of a whole segment at once, after it (trajectory_metrics)
        values = jax.vmap(program.metrics)(params)
        # the barrier makes XLA compute each metric once: otherwise it fuses a metric's
        # arithmetic (an ndtr, a log) into both moment passes and evaluates it twice
        return _record_summary(jax.lax.optimization_barrier(values), valid, quantile_metrics)

    def broadcast(tree, chain_ids):
        return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, chain_ids.shape + jnp.shape(leaf)), tree)

    def start(chain_ids, valid, arguments):
        program = bound(arguments)[0]
        params = broadcast(program.initial_params, chain_ids)
        state = broadcast(program.initial_state(), chain_ids)
        carry = jax.lax.with_sharding_constraint((params, state), chain_sharding)
        return carry, observe(program, params, valid)

    def stepped(program, carry, n, chain_ids, root):
        step = _chain_step(program, num_devices, per_device)
        return step(step_words(root, n, chain_ids, program.words_per_step), carry, n)

    def advance(carry, chain_ids, valid, first_generation, root, arguments):
        """The scan executor: a segment of generations in one compiled loop."""
        program = bound(arguments)[0]

        def body(carry, offset):
            n = first_generation + offset
            carry = jax.lax.cond(n < num_generations, lambda c, n: stepped(program, c, n, chain_ids, root),
                                 lambda c, n: c, carry, n)
            return carry, observe(program, carry[0], valid)

        carry, records = jax.lax.scan(body, carry, jnp.arange(segment_length))
        return jax.lax.with_sharding_constraint(carry, chain_sharding), records

    def generation(carry, chain_ids, valid, n, root, arguments):
        """The host executor's compiled call: one generation, outside any loop."""
        program = bound(arguments)[0]
        carry = jax.lax.with_sharding_constraint(stepped(program, carry, n, chain_ids, root), chain_sharding)
        return carry, observe(program, carry[0], valid)

    def advance_on_host(carry, chain_ids, valid, first_generation, root):
        """The host executor: a segment's generations one compiled call each, in Python;
        a segment past G repeats its last record, as the scan's does."""
        records = []
        for n in range(first_generation, min(first_generation + segment_length, num_generations)):
            carry, record = compiled["generation"](carry, chain_ids, valid, jnp.int32(n), root, arguments)
            records.append(record)
        records += records[-1:] * (segment_length - len(records))
        return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *records)

    def trajectory_metrics(params, arguments):
        """(metrics, params) of a segment's (or generation 0's) recorded parameters: one
        compiled call, the same whichever executor ran the segment, so both record the
        same bits (computed inside a loop body, a reduction may round otherwise)."""
        return jax.vmap(jax.vmap(bound(arguments)[0].metrics))(params), params

    def finish(params, arguments):
        values = jax.vmap(bound(arguments)[1])(params)
        return {name: values[name] for name in final_metrics}

    # the compiled calls of this run's shape: this process's earlier ones where the program
    # names a cache key (numbers in its arguments), else compiled below for this run
    cache_key = None if source.cache_key is None else (
        source.cache_key, jax.tree.structure(arguments), tuple((np.shape(a), str(jnp.asarray(a).dtype))
                                                               for a in jax.tree.leaves(arguments)),
        chunk_size, segment_length, num_generations, record, chosen, tuple(quantile_metrics),
        tuple(final_metrics), executor, bool(jax.config.jax_enable_x64), tuple(d.id for d in mesh.devices.flat))
    compiled = _COMPILED.get(cache_key) if cache_key is not None else None
    reused = compiled is not None
    if compiled is None:
        compiled = {"start": jax.jit(start), "finish": jax.jit(finish),
                    "trajectory_metrics": jax.jit(trajectory_metrics),
                    "advance": jax.jit(advance, donate_argnums=(0,)),
                    "generation": jax.jit(generation, donate_argnums=(0,))}

    def recorded(records):
        """A segment's records on the host (trajectories: with the metrics of its parameters)."""
        if keep_trajectories:
            records = compiled["trajectory_metrics"](records, arguments)
        return jax.tree.map(_to_host, records)
    final_chunks: list = []
    meter = Progress(num_generations, num_chains, num_chunks, progress)

    shapes = jax.eval_shape(start, jax.ShapeDtypeStruct((chunk_size,), jnp.uint32),
                            jax.ShapeDtypeStruct((chunk_size,), jnp.float32), arguments)
    resumed = _checkpoint.EngineState()
    if checkpoint is not None and checkpoint.exists():
        carry_shapes, record_shapes = shapes
        if keep_trajectories:  # a generation's records are its metrics and its parameters
            record_shapes = jax.eval_shape(lambda params: jax.tree.map(
                lambda x: x[0], trajectory_metrics(jax.tree.map(lambda x: x[None], params), arguments)), record_shapes)
        resumed = _checkpoint.load(checkpoint, identity, carry_shapes, record_shapes)
        if resumed.chunk > num_chunks or resumed.segments > num_segments or (
                resumed.carry is None and resumed.segments) or (resumed.carry is not None and resumed.chunk >= num_chunks):
            raise ConfigError(f"checkpoint {checkpoint} says chunk {resumed.chunk}, segment {resumed.segments} of a run "
                              f"of {num_chunks} chunks of {num_segments} segments; it is damaged: delete it to start "
                              f"the run over")
    merged_moments, merged_sketches = resumed.moments, resumed.sketches
    trajectory_chunks, final_chunks = resumed.trajectory_chunks, resumed.final_chunks

    def save(chunk, segments, carry=None, partial=None):
        # every process holds the whole state (records and carries are gathered); one
        # writes it, all read it back on resume (the folder is on a shared file system)
        if not is_main_process():
            return
        state = _checkpoint.EngineState(chunk, segments, carry, partial, merged_moments, merged_sketches,
                                        trajectory_chunks, final_chunks)
        _checkpoint.save(checkpoint, identity, state)

    compile_seconds = 0.0
    started = time.perf_counter()
    for chunk in range(resumed.chunk, num_chunks):
        ids = np.arange(chunk * chunk_size, (chunk + 1) * chunk_size, dtype=np.uint32)
        valid_np = (ids < num_chains).astype(np.float32)
        chain_ids = jax.device_put(ids, chain_sharding)
        valid = jax.device_put(valid_np, chain_sharding)
        if chunk == resumed.chunk and not reused:
            tick = time.perf_counter()
            compiled["start"] = compiled["start"].lower(chain_ids, valid, arguments).compile()
            if num_segments:
                carry_spec = jax.tree.map(
                    lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=chain_sharding), shapes[0]
                )
                name = "advance" if executor == "scan" else "generation"
                compiled[name] = compiled[name].lower(carry_spec, chain_ids, valid, jnp.int32(0), root,
                                                      arguments).compile()
            compile_seconds = time.perf_counter() - tick
            meter.compiled(compile_seconds)
            if cache_key is not None:
                _COMPILED[cache_key] = compiled
        if chunk == resumed.chunk and resumed.carry is not None:
            carry = jax.device_put(resumed.carry, chain_sharding)
            outputs = [resumed.partial]
            first_segment = resumed.segments
            meter.update(chunk, first_segment * segment_length, int(valid_np.sum()), 0)
        else:
            carry, first = compiled["start"](chain_ids, valid, arguments)
            outputs = [recorded(jax.tree.map(lambda x: x[None], first))]
            first_segment = 0
        saved_at = first_segment * segment_length
        for segment in range(first_segment, num_segments):
            first_generation = segment * segment_length
            if executor == "scan":
                carry, out = compiled["advance"](carry, chain_ids, valid, jnp.int32(first_generation), root,
                                                 arguments)
            else:  # the generation counter stays a Python int: no device round trip per segment
                carry, out = advance_on_host(carry, chain_ids, valid, first_generation, root)
            outputs.append(recorded(out))
            done = min(segment_length, num_generations - first_generation)
            meter.update(chunk, first_generation + done, int(valid_np.sum()), done)
            reached = first_generation + done
            if checkpoint is not None and reached - saved_at >= checkpoint_every and segment + 1 < num_segments:
                outputs = [jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *outputs)]
                save(chunk, segment + 1, jax.tree.map(_to_host, carry), outputs[0])
                saved_at = reached
        stacked = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0)[: num_generations + 1], *outputs)
        if final_metrics:
            take = int(valid_np.sum())
            final_chunks.append({k: _to_host(v)[:take] for k, v in compiled["finish"](carry[0], arguments).items()})
        if keep_trajectories:
            values, params = stacked
            take = int(valid_np.sum())
            trajectory_chunks.append(jax.tree.map(lambda x, take=take: x[:, :take], (values, params)))
        else:
            moments, sketches = stacked
            if merged_moments is None:
                merged_moments, merged_sketches = moments, {k: v.astype(np.int64) for k, v in sketches.items()}
            else:
                merged_moments = {k: merge_moments(merged_moments[k], moments[k]) for k in moments}
                merged_sketches = {k: merged_sketches[k] + sketches[k] for k in sketches}
        if checkpoint is not None and chunk + 1 < num_chunks:
            save(chunk + 1, 0)
    meter.close()
    run_seconds = time.perf_counter() - started - compile_seconds

    result = SimulationResult(
        num_chains=num_chains,
        num_generations=num_generations,
        record=record,
        metric_names=program.metric_names,
        compile_seconds=compile_seconds,
        run_seconds=run_seconds,
    )
    if final_metrics:
        result.final = {name: np.concatenate([chunk[name] for chunk in final_chunks]) for name in final_metrics}
    if keep_trajectories:
        values, params = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *trajectory_chunks)
        result.trajectories = values
        result.params = params
    else:
        result.moments = {k: np.asarray(v, np.float64) for k, v in merged_moments.items()}
        result.sketches = merged_sketches
    return result


def _check_run_arguments(program, num_chains, num_generations, seed, record, metrics, quantile_metrics,
                         final_metrics) -> tuple[int, int, int]:
    """Both executors' checks of :func:`simulate`'s arguments, on the host before any
    tracing: (chains, G, seed) as integers; unknown records or metric names are refused."""
    num_chains = require_int("chains", num_chains, 1, MAX_CHAINS, "chain ids are 32-bit words of the random stream")
    num_generations = program.resolve_generations(num_generations)
    seed = require_int("seed", seed, 0)
    if seed >= 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32); got {seed}")
    if record not in RECORDS:
        raise ConfigError(f"unknown record {record!r}; choose one of {', '.join(RECORDS)}")
    names = program.metric_names
    unknown_final = [name for name in final_metrics if name not in names]
    if unknown_final:
        raise ConfigError(f"final metrics must be among {', '.join(names)}; got {unknown_final!r}")
    if metrics is not None and (not metrics or any(name not in names for name in metrics)):
        raise ConfigError(f"metrics must be a non-empty selection of {', '.join(names)}; got {metrics!r}")
    recorded = names if metrics is None else tuple(metrics)
    for name in quantile_metrics:
        if name not in recorded:
            raise ConfigError(f"quantile metric {name!r} is not one of {', '.join(recorded)}")
        if name == "cov_logdet":
            raise ConfigError("quantile sketches need a non-negative metric; cov_logdet can be negative")
    return num_chains, num_generations, seed


def _simulate_on_host(program: HostProgram, *, num_chains, num_generations, seed, record, metrics, quantile_metrics,
                      final_metrics, progress, checkpoint, identity, executor) -> SimulationResult:
    """:func:`simulate` for a host program: checks on the host, then the host executor."""
    if executor not in (None, "host"):
        raise ConfigError(f"a HostProgram (family {program.family.name!r}) runs on executor='host' only; "
                          f"got executor={executor!r}")
    num_chains, num_generations, seed = _check_run_arguments(program, num_chains, num_generations, seed, record,
                                                             metrics, quantile_metrics, final_metrics)
    names = program.metric_names
    identity = {"program": identity, "chains": num_chains, "generations": num_generations, "seed": seed,
                "x64": bool(jax.config.jax_enable_x64), "executor": "host"}
    started = time.perf_counter()
    trajectories, params = run_host_program(program, num_chains=num_chains, seed=seed, checkpoint=checkpoint,
                                            identity=identity, progress=bool(progress))
    chosen = tuple(metrics) if metrics is not None else names
    trajectories = {name: trajectories[name] for name in chosen}
    result = SimulationResult(num_chains=num_chains, num_generations=num_generations, record=record,
                              metric_names=chosen, run_seconds=time.perf_counter() - started)
    if final_metrics:
        result.final = {name: trajectories[name][-1] for name in final_metrics}
    if record == "trajectories":
        result.trajectories, result.params = trajectories, params
    else:
        result.moments = {name: _host_moments(np.asarray(values, np.float64)) for name, values in trajectories.items()}
        result.sketches = {name: np.stack([np.asarray(sketch(jnp.asarray(values), jnp.ones(values.shape[0])))
                                           for values in trajectories[name]]).astype(np.int64)
                           for name in quantile_metrics}
    return result
