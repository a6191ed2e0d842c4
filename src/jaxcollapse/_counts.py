"""Exact count samplers for discrete chains: binomial and multinomial.

``jax.random.binomial`` and ``jax.random.multinomial`` are exact but several times slower
than numpy on CPU: under ``vmap`` their rejection loops run every lane until the slowest
finishes, and both of their algorithms are evaluated for every lane. Here:

* **binomial(n, p)** uses inversion (a sequential search from k = 0) where n min(p, 1 - p)
  < 50 and Hormann's BTRS transformed rejection (Hormann 1993, "The generation of
  binomial random variates") elsewhere. The function works on whole arrays: its loops
  and branch choices look at every element of the batch at once (a ``custom_vmap`` rule
  makes ``vmap`` over chains call it on the batched arrays), so a branch that no element
  needs is skipped and a loop stops when the last element is done. The acceptance test
  of BTRS is written with ``log1p`` of exact integer differences and Stirling tails, so
  it keeps its precision in float32 (a direct difference of log-gamma values of size
  n log n would not).
* **multinomial(n, p)** over K states draws K - 1 conditional binomials on a binary tree
  over the states (left subtree count ~ Binomial(parent count, p_left / (p_left +
  p_right))): O(K) work in ceil(log2 K) vectorised levels, memory independent of n, and
  p need not be normalised. When n is known to stay at most K, n inverse-CDF draws and a
  histogram cost less (O(n log K + K)) and are used instead.

Counts are float arrays (exact integers below 2**24 in float32).

Example:
    >>> import jax, jax.numpy as jnp
    >>> counts = multinomial(jax.random.key(0), 100.0, jnp.array([0.2, 0.3, 0.5]))
    >>> float(counts.sum())
    100.0
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._random import threefry_elementwise, uniforms_from_words

__all__ = ["binomial", "multinomial", "categorical", "INVERSION_MEAN"]

# BTRS needs n p >= 10 (Hormann 1993). Below n q = 50 inversion (n q + a few sd cheap steps
# in fused trips of 16) beats BTRS, whose whole-batch rejection loop runs ~7 trips for its
# slowest element (measured per draw over 2e5 draws: 23-25 ns against 80 ns at n q = 25-30,
# 39 against 73 at n q = 30; the K = 10, M = 100 chain went from 0.85-0.96x numpy at a
# threshold of 20 to 1.5-2.0x). The bound keeps inversion's first pmf (1 - q)^n =
# exp(-n q * (-log1p(-q) / q)) >= exp(-50 ln 4) ~ 8e-31 a normal float32 (q <= 1/2).
INVERSION_MEAN = 50.0
_UNROLL = 16  # inversion search steps per loop trip
_ATTEMPTS_PER_TRIP = 1  # BTRS attempts per loop trip
DRAWS_PER_STATE = 1.0  # multinomials of at most this many draws per state are drawn point by point

# ln k! - [(k + 1/2) ln(k + 1) - (k + 1) + ln(2 pi) / 2] for k < 10, from math.lgamma in float64
_STIRLING_TAIL_TABLE = tuple(
    math.lgamma(k + 1.0) - ((k + 0.5) * math.log(k + 1.0) - (k + 1.0) + 0.5 * math.log(2 * math.pi))
    for k in range(10)
)


def _stirling_tail(k):
    """ln k! minus its Stirling approximation around k + 1 (k a non-negative float)."""
    table = jnp.asarray(_STIRLING_TAIL_TABLE, k.dtype)
    small = table[jnp.clip(k, 0, 9).astype(jnp.int32)]
    inverse = 1.0 / (k + 1.0)
    squared = inverse * inverse
    series = inverse * (1.0 / 12.0 - squared * (1.0 / 360.0 - squared / 1260.0))
    return jnp.where(k < 10, small, series)


def _uniform_pair(source, salt):
    """Two arrays of open-interval uniforms for ``salt`` from ``source`` = (key0, key1,
    element index): threefry of the counter (salt, element) under the element's key."""
    key0, key1, element = source
    first, second = threefry_elementwise(key0, key1, jnp.uint32(salt), element)
    dtype = jnp.result_type(float)
    return uniforms_from_words(first, dtype), uniforms_from_words(second, dtype)


def _inversion(uniforms, n, q):
    """Smallest k with F(k) >= u for Binomial(n, q), searched upwards from k = 0.

    Every element still searching at step j sits at k = j, so the pmf recurrence
    f(j + 1) = f(j) (n - j) / (j + 1) q / (1 - q) needs no per-element counter and no
    per-element division. Each trip of the loop takes ``_UNROLL`` steps for the whole batch
    in one fused pass. An element whose pmf reaches 0 (j = n, or float underflow past the
    mode while u lies above the float32 sum of the pmf: probability ~1e-7) stops there.
    """
    ratio = q / (1.0 - q)
    pmf = jnp.exp(n * jnp.log1p(-q))
    found = jnp.where(uniforms <= pmf, 0.0, -1.0)

    def searching(state):
        _, found, pmf, _ = state
        return (found < 0) & (pmf > 0)

    def steps(state):
        j, found, pmf, cdf = state
        for offset in range(_UNROLL):
            step = (j + offset).astype(n.dtype)
            pmf = pmf * ((n - step) * ratio) * (1.0 / (step + 1.0))
            cdf = cdf + pmf
            found = jnp.where((found < 0) & (uniforms <= cdf), step + 1.0, found)
        return j + _UNROLL, found, pmf, cdf

    j, found, pmf, _ = jax.lax.while_loop(lambda s: jnp.any(searching(s)), steps, (jnp.int32(0), found, pmf, pmf))
    return jnp.where(found < 0, jnp.minimum(j.astype(n.dtype), n), found)


class _BtrsSetup(NamedTuple):
    """Per-element constants of BTRS, computed once for all attempts."""

    n: jax.Array
    q: jax.Array
    b: jax.Array
    a: jax.Array
    centre: jax.Array  # n q + 1/2
    quick_bound: jax.Array  # v_r
    alpha_spq: jax.Array
    mode: jax.Array
    scaled: jax.Array  # q (n + 2)
    mode_terms: jax.Array  # the k-independent part of ln f(k) / f(mode)


def _btrs_setup(n, q):
    p = 1.0 - q
    spq = jnp.sqrt(n * q * p)
    b = 1.15 + 2.53 * spq
    mode = jnp.floor((n + 1.0) * q)
    scaled = q * (n + 2.0)  # its rounding cancels between the first and third terms of the bound
    mode_terms = ((mode + 0.5) * jnp.log1p((mode + 1.0 - scaled) / (q * (n - mode + 1.0)))
                  + _stirling_tail(mode) + _stirling_tail(n - mode))
    return _BtrsSetup(n, q, b, -0.0873 + 0.0248 * b + 0.01 * q, n * q + 0.5, 0.92 - 4.2 / b,
                      (2.83 + 5.1 / b) * spq, mode, scaled, mode_terms)


def _btrs_attempt(source, salt, setup: _BtrsSetup):
    """One BTRS attempt for every element: (accepted, candidate)."""
    n, q, b, a, centre, quick_bound, alpha_spq, mode, scaled, mode_terms = setup
    u, v = _uniform_pair(source, salt)
    u = u - 0.5
    us = 0.5 - jnp.abs(u)
    k = jnp.floor((2.0 * a / us + b) * u + centre)
    quick = (us >= 0.07) & (v <= quick_bound)
    inside = (k >= 0) & (k <= n)
    k = jnp.clip(k, 0.0, n)
    log_v = jnp.log(v * alpha_spq / (a / (us * us) + b))
    # ln f(k) / f(mode) for the Binomial(n, q) pmf f, as a sum of O(1) terms
    bound = (mode_terms
             + (n + 1.0) * jnp.log1p((k - mode) / (n - k + 1.0))
             + (k + 0.5) * jnp.log1p((scaled - k - 1.0) / ((1.0 - q) * (k + 1.0)))
             - _stirling_tail(k) - _stirling_tail(n - k))
    return quick | (inside & (log_v <= bound)), k


def _btrs(source, n, q, needed):
    """Hormann's BTRS for n q >= INVERSION_MEAN (>= 10), q <= 1/2, where ``needed``; other elements get 0.

    An attempt is accepted with probability 0.78 (n q (1 - q) ~ 25) to ~0.9 (large n q).
    Each trip of the loop makes ``_ATTEMPTS_PER_TRIP`` attempts for the whole batch in one
    fused pass, so a batch of 1e5 elements needs about three trips: on CPU a trip's fixed
    cost, not its arithmetic, dominates batches of this size. (Gathering the rejected
    elements into a small buffer, as the gamma sampler does, costs more than it saves.)
    """
    setup = _btrs_setup(jnp.where(needed, n, 100.0), jnp.where(needed, q, 0.5))  # harmless where unused

    # one loop-carried array, -1 while pending: carrying a separate "done" mask makes XLA
    # compute each attempt once per consumer (measured: 3x slower)
    def attempts(state):
        salt, value = state
        for offset in range(_ATTEMPTS_PER_TRIP):
            ok, candidate = _btrs_attempt(source, salt + offset, setup)
            value = jnp.where((value < 0) & ok, candidate, value)
        return salt + _ATTEMPTS_PER_TRIP, value

    start = (jnp.uint32(1), jnp.where(needed, -1.0, 0.0).astype(n.dtype))
    return jax.lax.while_loop(lambda state: jnp.any(state[1] < 0), attempts, start)[1]


def _binomial_core(source, n, p):
    """Binomial(n, p) elementwise; ``source`` = (key0, key1, element index) broadcastable
    to n's shape (see :func:`_uniform_pair`)."""
    # one flat axis: XLA:CPU vectorises the minor axis, which for (chains, nodes) arrays
    # is often 1 or 2 long
    shape = n.shape
    source = tuple(jnp.broadcast_to(x, shape).reshape(-1) for x in source)
    return _binomial_flat(source, n.reshape(-1), p.reshape(-1)).reshape(shape)


def _binomial_flat(source, n, p):
    flip = p > 0.5
    q = jnp.clip(jnp.where(flip, 1.0 - p, p), 0.0, 0.5)
    small = n * q < INVERSION_MEAN
    by_inversion = jax.lax.cond(
        jnp.any(small), lambda: _inversion(_uniform_pair(source, 0)[0], jnp.where(small, n, 0.0), q),
        lambda: jnp.zeros_like(n),
    )
    by_rejection = jax.lax.cond(jnp.any(~small), lambda: _btrs(source, n, q, ~small), lambda: jnp.zeros_like(n))
    k = jnp.where(small, by_inversion, by_rejection)
    return jnp.where(flip, n - k, k)


def _element_index(shape):
    return jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape)


@jax.custom_batching.custom_vmap
def _binomial(key_words, offset, n, p):
    return _binomial_core((key_words[0], key_words[1], _element_index(n.shape) + offset), n, p)


@_binomial.def_vmap
def _binomial_batched(axis_size, in_batched, key_words, offset, n, p):
    def lanes_of(value, batched):
        return value if batched else jnp.broadcast_to(value, (axis_size,) + jnp.shape(value))

    key_words, n, p = (lanes_of(v, b) for v, b in zip((key_words, n, p), (in_batched[0], *in_batched[2:])))
    if in_batched[1]:
        raise NotImplementedError("the element offset of a binomial batch must be the same for every lane")
    per_chain = (axis_size,) + (1,) * (n.ndim - 1)
    source = (key_words[:, 0].reshape(per_chain), key_words[:, 1].reshape(per_chain),
              _element_index(n.shape[1:]) + offset)
    return _binomial_core(source, n, p), True


def _binomial_words(key_words, n, p, offset: int = 0):
    """Binomial(n, p) from a key's two words; element e draws from the counter e + offset,
    so calls with disjoint offset ranges are independent."""
    dtype = jnp.result_type(float)
    n, p = jnp.broadcast_arrays(jnp.asarray(n, dtype), jnp.asarray(p, dtype))
    return _binomial(key_words, jnp.uint32(offset), n, p)


def binomial(key, n, p):
    """Binomial(n, p) variates, elementwise over the broadcast shape of ``n`` and ``p``.

    ``n`` holds non-negative integers (as floats or ints), ``p`` probabilities in [0, 1].
    Returns floats of the default float dtype.

    Example:
        >>> import jax
        >>> float(binomial(jax.random.key(1), 50, 0.0))
        0.0
    """
    return _binomial_words(jax.random.key_data(key), n, p)


def _pairs(values, nodes):
    """(..., nodes, 2): ``values`` (last axis) padded with zeros to 2 * nodes, in pairs."""
    padding = 2 * nodes - values.shape[-1]
    padded = jnp.pad(values, [(0, 0)] * (values.ndim - 1) + [(0, padding)])
    return padded.reshape(values.shape[:-1] + (nodes, 2))


def _tree_multinomial(key, n, p):
    """K - 1 conditional binomials on a binary tree whose level sizes halve (rounding up)
    from the K leaves: a node with a single child passes its count on."""
    widths = [p.shape[-1]]
    while widths[-1] > 1:
        widths.append(-(-widths[-1] // 2))
    weights = [p]  # subtree weights, leaves up
    for nodes in widths[1:]:
        weights.append(_pairs(weights[-1], nodes).sum(-1))
    counts = n[..., None]
    key_words = jax.random.key_data(key)
    offset = 0  # every node of the tree draws from its own counters
    for level in range(len(widths) - 1, 0, -1):
        children = _pairs(weights[level - 1], widths[level])
        left, total = children[..., 0], children.sum(-1)
        ratio = jnp.where(total > 0, left / jnp.where(total > 0, total, 1.0), 0.0)
        left_counts = _binomial_words(key_words, counts, ratio, offset)
        offset += widths[level]
        counts = jnp.stack([left_counts, counts - left_counts], axis=-1)
        counts = counts.reshape(counts.shape[:-2] + (-1,))[..., : widths[level - 1]]
    return counts


def categorical(key, p, count: int):
    """``count`` state indices drawn from the (unnormalised) weights ``p`` (1-D) by inverse
    CDF: threefry words under the key, one per draw, searched in the cumulative weights.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> categorical(jax.random.key(0), jnp.array([0.0, 2.0, 0.0]), 3).tolist()
        [1, 1, 1]
    """
    cdf = jnp.cumsum(p)
    key_words = jax.random.key_data(key)
    words = threefry_elementwise(key_words[0], key_words[1], jnp.uint32(0), jnp.arange(count, dtype=jnp.uint32))[0]
    uniforms = uniforms_from_words(words, p.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, uniforms, side="right"), p.shape[-1] - 1)


def _draws_multinomial(key, n, p, max_count: int):
    """Histogram of ``n`` <= ``max_count`` categorical draws: O(max_count log K + K), the
    cheaper way when max_count is at most about K."""
    states = p.shape[-1]

    def histogram(key, n, p):
        used = (jnp.arange(max_count) < n).astype(p.dtype)
        return jnp.zeros(states, p.dtype).at[categorical(key, p, max_count)].add(used)

    batch = p.shape[:-1]
    keys = jnp.broadcast_to(key, batch).reshape(-1)
    flat = jax.vmap(histogram)(keys, jnp.broadcast_to(n, batch).reshape(-1), p.reshape(-1, states))
    return flat.reshape(batch + (states,))


def multinomial(key, n, p, max_count: int | None = None):
    """Counts of ``n`` draws over the K states of the (unnormalised) weights ``p`` (last axis).

    With ``max_count`` (a static bound on n) at most K, the draws are made one by one by
    inverse CDF (O(max_count log K + K), memory O(K)); otherwise by K - 1 conditional
    binomials on a tree (O(K), memory independent of n). Both are exact.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> multinomial(jax.random.key(0), 7.0, jnp.array([0.0, 1.0, 0.0])).tolist()
        [0.0, 7.0, 0.0]
    """
    dtype = jnp.result_type(float)
    p = jnp.asarray(p, dtype)
    n = jnp.asarray(n, dtype)
    if max_count is not None and max_count <= DRAWS_PER_STATE * p.shape[-1]:
        return _draws_multinomial(key, n, p, int(max_count))
    return _tree_multinomial(key, n, p)
