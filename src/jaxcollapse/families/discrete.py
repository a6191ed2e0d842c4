"""The discrete families: categorical over K states (Bernoulli: K = 2) and Poisson.

Paper section 4.1: with exact functional approximation (fit = empirical frequencies) a
categorical chain is the Wright-Fisher model of population genetics. A model is a
probability vector ``probs`` (K,) (the rate, shape (1,), of a Poisson model); a data row
is one float, the state's index (the count of a Poisson draw). ``fit`` is the weighted
histogram, normalised (with additive smoothing alpha: (counts + alpha) / (M + K alpha)),
or the weighted mean of a Poisson sample. The fit only needs the counts, so a chain can
draw the counts directly (:mod:`jaxcollapse._counts`): :func:`draw_counts` and
:func:`poisson_total` are those exact shortcuts, which the discrete study's counts path
uses.

:func:`discrete` gives the :class:`~jaxcollapse.families.Family` (parameters: the
probability vector alone; the study's chains also carry the generation of absorption,
:class:`DiscreteParams`).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> family = discrete("categorical", states=3)
    >>> data = family.sample(jax.random.key(0), jnp.array([0.2, 0.3, 0.5]), 1000)
    >>> probs = family.fit(jax.random.key(1), data, jnp.ones(1000))
    >>> probs.shape, round(float(probs.sum()), 6)
    ((3,), 1.0)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._counts import categorical
from .._counts import multinomial as _multinomial
from .._validation import ConfigError, require_choice, require_finite, require_int
from .base import Family, float_row

__all__ = [
    "DiscreteParams", "DiscreteReference", "discrete", "discrete_reference", "absorbed", "categorical_metrics",
    "poisson_metrics", "count_fit", "histogram", "sample", "draw_counts", "poisson_total", "KINDS",
    "CATEGORICAL_METRICS", "POISSON_METRICS", "PER_STATE_METRICS", "MAX_COUNT",
]

KINDS = ("categorical", "bernoulli", "poisson")
CATEGORICAL_METRICS = ("support", "lost_mass", "tail_lost", "entropy", "heterozygosity", "tv", "kl", "w1", "absorbed")
POISSON_METRICS = ("rate", "rate_error", "extinct")
PER_STATE_METRICS = ("state_p", "state_alive", "state_absorbed")
MAX_COUNT = 2**24  # counts are floats: exact integers below 2**24 in float32


class DiscreteParams(NamedTuple):
    """One chain's generation: ``probs`` (K,) (the rate, shape (1,), of a Poisson chain)
    and the generation at which it was absorbed (-1: not yet)."""

    probs: jax.Array
    absorbed_at: jax.Array


class DiscreteReference(NamedTuple):
    """p_0 in the forms the categorical metrics need: ``p0`` (K,), ``tail`` (K,) bool (the
    states with p_0 below the tail threshold) and ``spacing`` (K - 1,) of the ordinal grid
    (for W1)."""

    p0: jax.Array
    tail: jax.Array
    spacing: jax.Array


def discrete_reference(p0, grid, threshold: float, dtype=None) -> DiscreteReference:
    """Precompute p_0's constants on the host: ``p0`` (K,) probabilities, ``grid`` (K,)
    the states' ordinal positions, ``threshold`` the tail's bound."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    p0 = np.asarray(p0, np.float64)
    grid = np.asarray(grid, np.float64)
    states = len(p0)
    spacing = jnp.asarray(np.diff(grid) if states > 1 else np.zeros(1), dtype)
    tail = jnp.asarray(p0 < threshold)
    return DiscreteReference(jnp.asarray(p0, dtype), tail, spacing)


def absorbed(kind: str, probs):
    """Whether ``probs`` is absorbing: a delta (a Poisson rate of 0)."""
    if kind == "poisson":
        return probs[0] == 0
    return jnp.sum(probs > 0) == 1


def categorical_metrics(probs, reference, per_state: bool):
    """Support, lost mass, entropy, heterozygosity, TV, KL, W1 and absorption of ``probs``
    against p_0 (``reference``: ``(p0, tail, spacing)``, see :func:`discrete_reference`)."""
    p0, tail, spacing = reference
    alive = probs > 0
    gone = ~alive & (p0 > 0)
    logs = jnp.log(jnp.where(alive, probs, 1.0))
    log_p0 = jnp.log(jnp.where(p0 > 0, p0, 1.0))
    absorbed = jnp.sum(alive) == 1
    values = {
        "support": jnp.sum(alive).astype(probs.dtype),
        "lost_mass": jnp.sum(jnp.where(gone, p0, 0.0)),
        "tail_lost": jnp.sum(jnp.where(gone & tail, p0, 0.0)),
        "entropy": -jnp.sum(jnp.where(alive, probs * logs, 0.0)),
        "heterozygosity": 1.0 - jnp.sum(probs * probs),
        "tv": 0.5 * jnp.sum(jnp.abs(probs - p0)),
        "kl": jnp.sum(jnp.where(alive, probs * (logs - log_p0), 0.0)),
        "w1": jnp.sum(jnp.abs(jnp.cumsum(probs - p0))[:-1] * spacing),
        "absorbed": absorbed.astype(probs.dtype),
    }
    if per_state:
        values["state_p"] = probs
        values["state_alive"] = alive.astype(probs.dtype)
        values["state_absorbed"] = (absorbed & alive).astype(probs.dtype)
    return values


def poisson_metrics(probs, rate0):
    """The rate, its squared error against p_0's rate ``rate0`` and extinction."""
    rate = probs[0]
    return {"rate": rate, "rate_error": (rate - rate0) ** 2, "extinct": (rate == 0).astype(probs.dtype)}


def count_fit(kind: str, states: int, smoothing: float = 0.0):
    """``fit_counts(counts) -> probs``: the fit from a data set's counts (K,) (a Poisson
    sample's ``(total, size)``)."""

    def fit_counts(counts):
        if kind == "poisson":
            total, size = counts
            return jnp.reshape(total / jnp.maximum(size, 1.0), (1,))
        return (counts + smoothing) / (jnp.sum(counts) + states * smoothing)

    return fit_counts


def sample(kind: str, key, probs, count: int, dtype):
    """``count`` rows (count, 1) of ``dtype``: state indices of ``probs`` (Poisson draws
    of the rate ``probs[0]``)."""
    if kind == "poisson":
        return jax.random.poisson(key, probs[0], (count, 1)).astype(dtype)
    return categorical(key, probs, count).astype(dtype)[:, None]


def histogram(kind: str, states: int, data, weights, dtype):
    """The weighted counts of the rows ``data`` (K,) of ``dtype`` (a Poisson sample's
    weighted ``(total, size)``)."""
    if kind == "poisson":
        return jnp.sum(data[:, 0] * weights), jnp.sum(weights)
    return jnp.zeros(states, dtype).at[data[:, 0].astype(jnp.int32)].add(weights)


def draw_counts(key, n, weights, max_count: int):
    """The counts (K,) of ``n`` <= ``max_count`` categorical draws of ``weights`` (a
    multinomial on a splitting tree, :func:`jaxcollapse._counts.multinomial`): small
    samples draw point by point."""
    return _multinomial(key, n, weights, max_count=max_count)


def poisson_total(key, rate, m, dtype):
    """The total of ``m`` Poisson(``rate``) draws: one Poisson(m rate) draw."""
    return jax.random.poisson(key, m * rate).astype(dtype)


def discrete(kind: str = "categorical", states: int = 2, smoothing: float = 0.0, *, per_state: bool = False) -> Family:
    """The categorical (``bernoulli``: K = 2) or Poisson family as a :class:`Family`.

    Parameters are ``probs`` (K,) (a Poisson model's rate, shape (1,)); a row is one
    float. ``metrics(probs, reference)`` takes a :class:`DiscreteReference` (a Poisson
    family: p_0's rate); ``per_state`` adds the per-state records."""
    require_choice("family", kind, KINDS)
    states = 1 if kind == "poisson" else require_int("states K", states, 1)
    if kind == "bernoulli" and states != 2:
        raise ConfigError("a Bernoulli family has K = 2 states")
    smoothing = float(require_finite("smoothing", smoothing))
    if smoothing < 0 or (smoothing and kind == "poisson"):
        raise ConfigError(f"smoothing must be >= 0 (categorical and Bernoulli families only); got {smoothing!r}")
    fit_counts = count_fit(kind, states, smoothing)

    def fit(key, data, weights):
        return fit_counts(histogram(kind, states, data, weights, data.dtype))

    def draw(key, probs, n):
        return sample(kind, key, probs, n, probs.dtype)

    def metrics(probs, reference):
        if kind == "poisson":
            return poisson_metrics(probs, reference)
        return categorical_metrics(probs, reference, per_state)

    return Family(name=f"discrete:{kind}", row=float_row(1), fit=fit, sample=draw, metrics=metrics)
