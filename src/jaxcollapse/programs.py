"""The data path of any family as a :class:`~jaxcollapse.engine.ChainProgram`.

Generation n = 0 draws D_0 from p_0; every later step samples the current model, lets the
data policy build D_n and fits generation n + 1. Families whose fit is iterative (EM)
start from the previous generation's parameters when they offer ``Family.refit``
(generation 1, fitted to D_0, always uses ``Family.fit``). Data are rows of the family's
``Family.row`` (any shape and dtype: float vectors, integer tokens, images); the buffers
are built from it, and the samplers are checked against it when the program is built.

Examples:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxcollapse import gaussian, normal_initial, GaussianParams, DataPolicy, simulate
    >>> family = gaussian(dim=1)
    >>> program = data_path_program(
    ...     family, DataPolicy("replace"), np.array([50, 50, 50]), normal_initial(0.0, 1.0).sampler(1),
    ...     GaussianParams(jnp.zeros(1), jnp.eye(1)), metrics=lambda p: {"sigma2": p.cov[0, 0]},
    ...     metric_names=("sigma2",))
    >>> program.num_generations
    3
    >>> simulate(program, num_chains=16).summary("sigma2")["mean"].shape
    (4,)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._random import key_from_words
from ._validation import ConfigError, require_int
from .engine import ChainProgram
from .families.base import Family
from .host import Generation, HostProgram
from .policies import DataPolicy, data_program

__all__ = ["data_path_program", "host_program", "HostProgram", "Generation"]


def data_path_program(
    family: Family,
    policy: DataPolicy,
    sizes: np.ndarray,
    sample_initial: Callable[[Any, int], Any],
    initial_params: Any,
    *,
    metrics: Callable[[Any], dict],
    metric_names: tuple[str, ...],
    bytes_per_chain: int | None = None,
    preferred_chunk: int | None = None,
    num_generations: int | None = None,
    chain_block: int = 0,
) -> ChainProgram:
    """A chain that samples ``family``, builds D_n with ``policy`` and refits, for the
    schedule ``sizes`` (M_0..M_{G-1}); ``sample_initial(key, n)`` draws D_0 from p_0.
    Both samplers must return ``(n, *family.row.shape)`` arrays of the row's dtype
    (checked here, abstractly, so a mismatch is a ``ConfigError``, not a failed trace).

    ``num_generations`` (default ``len(sizes)``) is the program's G; a study with G = 0
    may pass a placeholder schedule (its one size shapes the buffers) with
    ``num_generations=0``. ``bytes_per_chain`` defaults to the data buffers' size plus
    the parameters'; ``preferred_chunk`` and ``chain_block`` are passed to the engine (see
    :class:`ChainProgram`)."""
    if family.fit is None or family.sample is None:
        raise ConfigError(f"family {family.name!r} trains or samples on the host (its fit or sample is not a "
                          f"traceable function): build its chain with host_program and run it with executor='host'")
    num_generations, sizes_np, rows, row = _schedule_and_row(family, sizes, num_generations, sample_initial)
    sizes_device = jnp.asarray(sizes_np, jnp.int32)
    program = data_program(policy, sizes_np)
    _check_rows("family.sample(key, params, n)",
                jax.eval_shape(lambda key: family.sample(key, initial_params, rows), jax.random.key(0)), rows, row)
    refit = family.refit

    def first(keys, state, params, m):
        sample_key, policy_key = keys
        return program.init(policy_key, sample_initial(sample_key, rows), m)

    def later(keys, state, params, m):
        sample_key, policy_key = keys
        model = family.sample(sample_key, params, rows)
        return program.step(policy_key, state, model, m, sample_initial)

    def step(words, carry, n):
        params, state = carry
        sample_key, policy_key, fit_key = jax.random.split(key_from_words(words), 3)
        data, weights, state = jax.lax.cond(
            n == 0, first, later, (sample_key, policy_key), state, params, sizes_device[n]
        )
        if refit is None:
            return family.fit(fit_key, data, weights), state
        # generation 1 is fitted to real data from scratch: p_0 need not be a model of the
        # family. n is the same for every chain, so under vmap this stays a branch.
        fitted = jax.lax.cond(
            n == 0, lambda: family.fit(fit_key, data, weights), lambda: refit(fit_key, data, weights, params)
        )
        return fitted, state

    def initial_state():
        shapes = jax.eval_shape(
            lambda key: program.init(key, jnp.zeros((rows, *row.shape), row.dtype), sizes_device[0])[2],
            jax.random.key(0),
        )
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    if bytes_per_chain is None:
        param_bytes = sum(np.size(leaf) * 8 for leaf in jax.tree.leaves(initial_params))
        row_bytes = family.dim * row.dtype.itemsize
        bytes_per_chain = row_bytes * (8 * rows + 2 * policy.pool_rows(sizes_np)) + param_bytes
    return ChainProgram(
        initial_params=initial_params,
        initial_state=initial_state,
        step=step,
        metrics=metrics,
        bytes_per_chain=int(bytes_per_chain),
        metric_names=tuple(metric_names),
        words_per_step=2,
        preferred_chunk=preferred_chunk,
        num_generations=num_generations,
        chain_block=chain_block,
    )


def _schedule_and_row(family: Family, sizes, num_generations, sample_initial):
    """Both program builders' reading of a schedule: G (``len(sizes)`` by default, at most
    that), the sizes (a placeholder of one size for G = 0), the rows of D_n's buffers and
    the family's row in JAX's canonical dtype (a float64 row is float32 unless x64 is
    on); ``sample_initial`` is checked to draw such rows."""
    sizes = np.asarray(sizes)
    if num_generations is None:
        num_generations = len(sizes)
    num_generations = require_int("num_generations", num_generations, 0)
    if num_generations > len(sizes):
        raise ConfigError(f"num_generations must be <= {len(sizes)} (the schedule's sample sizes M_0..M_(G-1)); "
                          f"got {num_generations}")
    sizes = sizes if len(sizes) else np.array([2], np.int64)
    rows = int(np.max(sizes))
    row = jax.ShapeDtypeStruct(family.row.shape, jax.dtypes.canonicalize_dtype(family.row.dtype))
    _check_rows("sample_initial(key, n)", jax.eval_shape(lambda key: sample_initial(key, rows), jax.random.key(0)),
                rows, row)
    return num_generations, sizes, rows, row


def _check_rows(what: str, produced, rows: int, row: jax.ShapeDtypeStruct) -> None:
    """``produced`` (the abstract value a sampler returns for ``rows`` rows) must hold
    rows of the family's ``row``: the data buffers are built from it."""
    expected = (rows, *row.shape)
    if not isinstance(produced, jax.ShapeDtypeStruct) or (produced.shape, produced.dtype) != (expected, row.dtype):
        got = f"{produced.shape} {produced.dtype}" if isinstance(produced, jax.ShapeDtypeStruct) else repr(produced)
        raise ConfigError(f"{what} must return rows of the family's row, shape {expected} {row.dtype} for n = {rows}; "
                          f"got {got}")


def host_program(
    family: Family,
    policy: DataPolicy,
    sizes,
    sample_initial: Callable[[Any, int], Any],
    *,
    metrics: Callable[[Generation], dict],
    metric_names: tuple[str, ...],
    initial_params: Any = None,
    params_shape: Any = None,
    chains_per_call: int | None = None,
    on_stage: Callable[[int, str, int, int], None] | None = None,
    num_generations: int | None = None,
) -> HostProgram:
    """A chain of ``family`` for the host executor (:mod:`jaxcollapse.host`): the same
    data policy, schedule and keys as :func:`data_path_program`, with the generation loop
    in Python and each stage (fit, sample, score) a call of its own, so that a fit may be
    a host loop over minibatches (``Family.fit_runs``) and every stage's result can be
    saved as it ends.

    ``metrics(generation) -> dict`` is a host function of a :class:`~jaxcollapse.host.Generation`
    (parameters, the rows the generation wrote, the data it was fitted to, the first
    model), returning arrays with the runs axis first; ``metric_names`` are its keys.
    ``initial_params`` (optional): generation 0's parameters (then the result holds every
    generation's parameters, as the data path's trajectories do). ``params_shape``: one
    run's parameters as ``jax.ShapeDtypeStruct``s (to read saved parameters back);
    derived from ``family.fit`` when it is traceable, required otherwise.
    ``chains_per_call``: runs per call of a stage (default all; 1 trains runs in turn and
    saves each as it ends). ``on_stage(generation, stage, first_run, end_run)`` is called
    after every computed stage (progress, or a test's interruption)."""
    if (family.fit is None and family.fit_runs is None) or (family.sample is None and family.sample_runs is None):
        raise ConfigError(f"family {family.name!r} needs fit or fit_runs, and sample or sample_runs")
    if chains_per_call is not None:
        chains_per_call = require_int("chains_per_call", chains_per_call, 1)
    metric_names = tuple(metric_names)
    if not metric_names:
        raise ConfigError("metric_names must name at least one metric")
    num_generations, sizes_np, rows, row = _schedule_and_row(family, sizes, num_generations, sample_initial)
    policy.check_sizes(sizes_np)
    if params_shape is None:
        if family.fit is None:
            raise ConfigError(f"family {family.name!r} fits on the host only: give host_program its params_shape "
                              f"(one run's parameters as jax.ShapeDtypeStruct leaves)")
        params_shape = jax.eval_shape(family.fit, jax.random.key(0), jax.ShapeDtypeStruct((rows, *row.shape), row.dtype),
                                      jax.ShapeDtypeStruct((rows,), jnp.result_type(float)))
    return HostProgram(family, policy, sizes_np, sample_initial, metrics, metric_names, num_generations,
                       params_shape, initial_params, chains_per_call, on_stage)
