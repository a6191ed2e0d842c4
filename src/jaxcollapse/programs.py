"""The data path of any family as a :class:`~jaxcollapse.engine.ChainProgram`.

Generation n = 0 draws D_0 from p_0; every later step samples the current model, lets the
data policy build D_n and fits generation n + 1. Families whose fit is iterative (EM)
start from the previous generation's parameters when they offer ``Family.refit``
(generation 1, fitted to D_0, always uses ``Family.fit``).

Example:
    >>> import jax.numpy as jnp, numpy as np
    >>> from jaxcollapse import gaussian, normal_initial, GaussianParams, DataPolicy, simulate
    >>> family = gaussian(dim=1)
    >>> program = data_path_program(
    ...     family, DataPolicy("replace"), np.array([50, 50, 50]), normal_initial(0.0, 1.0).sampler(1),
    ...     GaussianParams(jnp.zeros(1), jnp.eye(1)), metrics=lambda p: {"sigma2": p.cov[0, 0]},
    ...     metric_names=("sigma2",))
    >>> simulate(program, num_chains=16, num_generations=3).summary("sigma2")["mean"].shape
    (4,)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._random import key_from_words
from .engine import ChainProgram
from .families.base import Family
from .policies import DataPolicy, data_program

__all__ = ["data_path_program"]


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
) -> ChainProgram:
    """A chain that samples ``family``, builds D_n with ``policy`` and refits, for the
    schedule ``sizes`` (M_0..M_{G-1}); ``sample_initial(key, n)`` draws D_0 from p_0.

    ``bytes_per_chain`` defaults to the data buffers' size plus the parameters';
    ``preferred_chunk`` is passed to the engine (see :class:`ChainProgram`)."""
    sizes_np = np.asarray(sizes) if len(sizes) else np.array([2], np.int64)
    sizes_device = jnp.asarray(sizes_np, jnp.int32)
    program = data_program(policy, sizes_np)
    rows = int(np.max(sizes_np))
    dim = family.dim
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
            lambda key: program.init(key, jnp.zeros((rows, dim)), sizes_device[0])[2], jax.random.key(0)
        )
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    if bytes_per_chain is None:
        param_bytes = sum(np.size(leaf) * 8 for leaf in jax.tree.leaves(initial_params))
        bytes_per_chain = 4 * dim * (8 * rows + 2 * policy.pool_rows(sizes_np)) + param_bytes
    return ChainProgram(
        initial_params=initial_params,
        initial_state=initial_state,
        step=step,
        metrics=metrics,
        bytes_per_chain=int(bytes_per_chain),
        metric_names=tuple(metric_names),
        words_per_step=2,
        preferred_chunk=preferred_chunk,
    )
