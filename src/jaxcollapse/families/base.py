"""The generational-step interface every family implements.

A family's data are rows: ``Family.row`` describes one row (its shape and dtype), and a
data set of n rows is an array of shape ``(n, *row.shape)``. Rows may be float vectors
(the Gaussian, GMM and KDE families), blocks of integer tokens or images.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> tokens = Family(name="tokens", row=jax.ShapeDtypeStruct((8,), jnp.int32),
    ...                 fit=None, sample=None, metrics=None)
    >>> tokens.row.dtype, tokens.dim
    (dtype('int32'), 8)
    >>> Family(name="vector", dim=3, fit=None, sample=None, metrics=None).row
    ShapeDtypeStruct(shape=(3,), dtype=float32)
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from .._validation import ConfigError, require_int

__all__ = ["Family", "SufficientStatistics", "float_row", "pairwise_sum"]


def pairwise_sum(values: jax.Array) -> jax.Array:
    """The sum over axis 0 in one fixed pairwise order (zero-padded to a power of two,
    then halves added until one row is left).

    A fit's sum over a chain's rows written as ``jnp.sum`` or a dot is, once vmapped over
    a chunk of chains, rounded by XLA:CPU according to the chunk's size; these adds are
    elementwise, so a chain's result is the same bits whatever chunk it runs in (and,
    over thousands of rows, no slower: measured 81 ms against 109 ms for a dot).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(pairwise_sum(jnp.arange(5.0)))
        10.0
    """
    rows = values.shape[0]
    padded = 1 << max(0, (rows - 1).bit_length())
    if padded > rows:
        values = jnp.concatenate([values, jnp.zeros((padded - rows,) + values.shape[1:], values.dtype)])
    while values.shape[0] > 1:
        half = values.shape[0] // 2
        values = values[:half] + values[half:]
    return values[0]


class SufficientStatistics(NamedTuple):
    """An exact shortcut: draw the statistics ``fit`` needs without the samples.

    ``draw(words, params, m)`` returns the statistics of m samples of the model ``params``
    from ``words_per_draw`` random uint32 words
    (m is a traced integer; m = 0 gives the empty statistics); ``merge(a, b)`` pools two
    sets of statistics; ``fit(stats)`` equals ``Family.fit`` on the pooled samples.
    """

    draw: Callable[[Any, Any, Any], Any]
    merge: Callable[[Any, Any], Any]
    fit: Callable[[Any], Any]
    words_per_draw: int = 6


def float_row(dim: int) -> jax.ShapeDtypeStruct:
    """One row of ``dim`` floats in JAX's default float type (float32 unless x64 is on).

    >>> float_row(2)
    ShapeDtypeStruct(shape=(2,), dtype=float32)
    """
    return jax.ShapeDtypeStruct((require_int("dim", dim, 1),), jnp.result_type(float))


def _row(row, dim) -> jax.ShapeDtypeStruct:
    """The row spec from ``row`` or the older ``dim``: an integer in either place is a
    vector of that many floats (``Family("name", 2, ...)`` was the positional spelling)."""
    if row is not None and dim is not None:
        raise ConfigError(f"give a Family its row or dim, not both; got row={row!r}, dim={dim!r}")
    if row is None and dim is None:
        raise ConfigError("a Family needs row (a jax.ShapeDtypeStruct of one row) or dim (a float vector's length)")
    if row is None or not isinstance(row, jax.ShapeDtypeStruct):
        value = dim if row is None else row
        if isinstance(value, (tuple, list)) or not hasattr(value, "__index__"):
            raise ConfigError(
                f"row must be a jax.ShapeDtypeStruct describing one row (or dim an integer >= 1); got {value!r}")
        return float_row(value)
    return row


class _FamilyFields(NamedTuple):
    name: str
    row: jax.ShapeDtypeStruct
    fit: Callable[[Any, Any, Any], Any]
    sample: Callable[[Any, Any, int], Any]
    metrics: Callable[[Any, Any], dict]
    sufficient: SufficientStatistics | None = None
    refit: Callable[[Any, Any, Any, Any], Any] | None = None
    fit_runs: Callable[[Any, Any, Any, Any], Any] | None = None
    sample_runs: Callable[[Any, Any, int], Any] | None = None


class Family(_FamilyFields):
    """A model family: the functional approximation F_theta and its sampler.

    ``row`` (a ``jax.ShapeDtypeStruct``) is the shape and dtype of one data row: a data
    set of n rows has shape ``(n, *row.shape)`` and the data policies build their buffers
    from it. ``dim`` is the number of entries of a row (the product of its shape).
    ``fit(key, data, weights) -> params`` fits the model to ``data``, where ``weights``
    (shape (n,), float) are frequency weights; 0 masks a padded slot.
    ``sample(key, params, n) -> data`` draws n rows (n static).
    ``metrics(params, reference) -> dict`` gives per-generation scalars against p_0.
    ``sufficient`` is ``None`` when the family has no exact statistics sampler.
    ``refit(key, data, weights, previous) -> params``, when given, replaces ``fit`` in a
    chain from generation 2 on: an iterative fit (EM) may start from the previous
    generation's parameters (generation 1 is fitted to real data with ``fit``).

    Host-driven training (:func:`jaxcollapse.programs.host_program`, run by the ``host``
    executor) may also offer batched forms over independent runs, called from Python
    rather than traced: ``fit_runs(keys, data, weights, previous) -> params`` fits run r
    to ``data[r]`` with ``keys[r]`` (``previous`` is the runs' previous parameters, or
    ``None``), and ``sample_runs(keys, params, n) -> data`` draws ``(runs, n, *row.shape)``.
    They may loop over runs, train with a host loop, show progress; without them the host
    executor uses ``jax.jit(jax.vmap(fit))`` and ``jax.jit(jax.vmap(sample))``. A family
    whose fit cannot be traced (OPT's fine-tuning) gives ``fit_runs`` and leaves ``fit``
    ``None``: it runs on the host executor only.

    The constructor also takes ``dim=d`` instead of ``row`` (and an integer in ``row``'s
    position), the spelling from before rows had a dtype: a row of d floats, as
    :func:`float_row` builds it. ``_replace`` keeps the row as it is.
    """

    __slots__ = ()

    # A __new__ on a subclass: typing.NamedTuple forbids overriding __new__ in its own
    # body, and the keyword ``dim`` is no field (it would duplicate the row).
    def __new__(cls, name, row=None, fit=None, sample=None, metrics=None, sufficient=None, refit=None,
                fit_runs=None, sample_runs=None, *, dim=None):
        return super().__new__(cls, name, _row(row, dim), fit, sample, metrics, sufficient, refit, fit_runs,
                               sample_runs)

    @property
    def dim(self) -> int:
        """Entries of one row: d for a vector of d floats, H * W * C for an image."""
        return math.prod(self.row.shape)
