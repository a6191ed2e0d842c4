"""Exact count samplers for discrete chains: binomial and multinomial.

``jax.random.binomial`` and ``jax.random.multinomial`` are exact but several times slower
than numpy on CPU: under ``vmap`` their rejection loops run every lane until the slowest
finishes, and both of their algorithms are evaluated for every lane. Here:

* **binomial(n, p)** uses inversion (a sequential search from k = 0) where n min(p, 1 - p)
  < 10 and Hormann's BTRS transformed rejection (Hormann 1993, "The generation of
  binomial random variates") elsewhere. The function works on whole arrays: its loops
  and branch choices look at every element of the batch at once (a ``custom_vmap`` rule
  makes ``vmap`` over chains call it on the batched arrays), so a branch that no element
  needs is skipped and a loop stops when the last element is done. The acceptance test
  of BTRS is written with ``log1p`` of exact integer differences and Stirling tails, so
  it keeps its precision in float32 (a direct difference of log-gamma values of size
  n log n would not).
* **multinomial(n, p)** over K states draws K - 1 conditional binomials on a balanced
  binary tree over the states (left subtree count ~ Binomial(parent count,
  p_left / (p_left + p_right))): O(K) work in ceil(log2 K) vectorised levels, memory
  independent of n, and p need not be normalised.

Counts are float arrays (exact integers below 2**24 in float32).

Example:
    >>> import jax, jax.numpy as jnp
    >>> counts = multinomial(jax.random.key(0), 100.0, jnp.array([0.2, 0.3, 0.5]))
    >>> float(counts.sum())
    100.0
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._random import threefry_elementwise, uniforms_from_words

__all__ = ["binomial", "multinomial", "INVERSION_MEAN"]

INVERSION_MEAN = 10.0  # BTRS needs n p >= 10 (Hormann 1993); inversion below costs ~n p steps
_UNROLL = 8  # inversion search steps per loop trip
_UNROLL_ATTEMPTS = 1  # BTRS attempts per loop trip (each copy costs ~0.5 s of compile time)

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
    """Smallest k with F(k) >= u for Binomial(n, q), searched from k = 0.

    Each trip of the loop takes ``_UNROLL`` search steps for the whole batch in one fused
    pass (a loop of single steps would be bound by memory traffic, not arithmetic)."""
    ratio = q / (1.0 - q)
    pmf0 = jnp.exp(n * jnp.log1p(-q))

    def active(state):
        k, pmf, cdf = state
        return (cdf < uniforms) & (k < n) & (pmf > 0)

    def steps(state):
        for _ in range(_UNROLL):
            k, pmf, cdf = state
            moving = active(state)
            next_pmf = pmf * (n - k) / (k + 1.0) * ratio
            state = (jnp.where(moving, k + 1.0, k), jnp.where(moving, next_pmf, pmf),
                     jnp.where(moving, cdf + next_pmf, cdf))
        return state

    start = (jnp.zeros_like(n), pmf0, pmf0)
    return jax.lax.while_loop(lambda s: jnp.any(active(s)), steps, start)[0]


def _btrs_attempt(source, salt, n, q):
    """One BTRS attempt for every element: (accepted, candidate)."""
    u, v = _uniform_pair(source, salt)
    p = 1.0 - q
    spq = jnp.sqrt(n * q * p)
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * q
    u = u - 0.5
    us = 0.5 - jnp.abs(u)
    k = jnp.floor((2.0 * a / us + b) * u + n * q + 0.5)
    quick = (us >= 0.07) & (v <= 0.92 - 4.2 / b)
    inside = (k >= 0) & (k <= n)
    k = jnp.clip(k, 0.0, n)
    log_v = jnp.log(v * (2.83 + 5.1 / b) * spq / (a / (us * us) + b))
    mode = jnp.floor((n + 1.0) * q)
    scaled = q * (n + 2.0)  # its rounding cancels between the first and third terms
    # ln f(k) / f(mode) for the Binomial(n, q) pmf f, as a sum of O(1) terms
    bound = ((mode + 0.5) * jnp.log1p((mode + 1.0 - scaled) / (q * (n - mode + 1.0)))
             + (n + 1.0) * jnp.log1p((k - mode) / (n - k + 1.0))
             + (k + 0.5) * jnp.log1p((scaled - k - 1.0) / (p * (k + 1.0)))
             + _stirling_tail(mode) + _stirling_tail(n - mode) - _stirling_tail(k) - _stirling_tail(n - k))
    return quick | (inside & (log_v <= bound)), k


def _btrs(source, n, q, needed):
    """Hormann's BTRS for n q >= 10, q <= 1/2, where ``needed``; other elements get 0.

    Attempts run for the whole batch in one fused pass per trip; an attempt is accepted
    with probability ~0.9, so a batch of 1e6 elements needs about six trips. (Gathering the rejected elements into a buffer, as the gamma sampler
    does, costs more here than the attempts it saves: an attempt is a few ns.)"""
    n = jnp.where(needed, n, 100.0)  # harmless parameters where the value is not wanted
    q = jnp.where(needed, q, 0.5)

    def attempts(state):
        salt, done, value = state
        for offset in range(_UNROLL_ATTEMPTS):
            ok, candidate = _btrs_attempt(source, salt + offset, n, q)
            value = jnp.where(~done & ok, candidate, value)
            done = done | ok
        return salt + _UNROLL_ATTEMPTS, done, value

    start = (jnp.uint32(1), ~needed, jnp.zeros_like(n))
    return jax.lax.while_loop(lambda s: jnp.any(~s[1]), attempts, start)[2]


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
def _binomial(key_words, n, p):
    return _binomial_core((key_words[0], key_words[1], _element_index(n.shape)), n, p)


@_binomial.def_vmap
def _binomial_batched(axis_size, in_batched, key_words, n, p):
    def lanes_of(value, batched):
        return value if batched else jnp.broadcast_to(value, (axis_size,) + jnp.shape(value))

    key_words, n, p = (lanes_of(v, b) for v, b in zip((key_words, n, p), in_batched))
    per_chain = (axis_size,) + (1,) * (n.ndim - 1)
    source = (key_words[:, 0].reshape(per_chain), key_words[:, 1].reshape(per_chain), _element_index(n.shape[1:]))
    return _binomial_core(source, n, p), True


def binomial(key, n, p):
    """Binomial(n, p) variates, elementwise over the broadcast shape of ``n`` and ``p``.

    ``n`` holds non-negative integers (as floats or ints), ``p`` probabilities in [0, 1].
    Returns floats of the default float dtype.

    Example:
        >>> import jax
        >>> float(binomial(jax.random.key(1), 50, 0.0))
        0.0
    """
    dtype = jnp.result_type(float)
    n, p = jnp.broadcast_arrays(jnp.asarray(n, dtype), jnp.asarray(p, dtype))
    return _binomial(jax.random.key_data(key), n, p)


def multinomial(key, n, p):
    """Counts of ``n`` draws over the K states of the (unnormalised) weights ``p`` (last axis).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> multinomial(jax.random.key(0), 7.0, jnp.array([0.0, 1.0, 0.0])).tolist()
        [0.0, 7.0, 0.0]
    """
    dtype = jnp.result_type(float)
    p = jnp.asarray(p, dtype)
    states = p.shape[-1]
    levels = max(1, math.ceil(math.log2(states)))
    padded = jnp.pad(p, [(0, 0)] * (p.ndim - 1) + [(0, 2**levels - states)])
    # subtree weights, leaves up: sums[l] holds the 2**l subtrees of depth l
    sums = [padded]
    for _ in range(levels):
        sums.append(sums[-1][..., 0::2] + sums[-1][..., 1::2])
    sums.reverse()
    counts = jnp.asarray(n, dtype)[..., None]
    for level in range(levels):
        left, right = sums[level + 1][..., 0::2], sums[level + 1][..., 1::2]
        total = left + right
        ratio = jnp.where(total > 0, left / jnp.where(total > 0, total, 1.0), 0.0)
        left_counts = binomial(jax.random.fold_in(key, level), counts, ratio)
        counts = jnp.stack([left_counts, counts - left_counts], axis=-1).reshape(p.shape[:-1] + (-1,))
    return counts[..., :states]
