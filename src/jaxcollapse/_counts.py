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
  histogram cost less (O(n log K + K)) and are used instead; for n close to K, the
  Poisson split (K Poisson counts and a few inverse-CDF draws to top up, see
  :func:`_split_rows`) costs less still.

The first pass of every search or rejection loop runs for the whole batch; the few
elements it leaves unfinished are gathered in blocks and finished apart
(:func:`jaxcollapse._random.finish_pending_blocks`), so the batch does not wait, trip
after trip, for its slowest element.

Counts are float arrays (exact integers below 2**24 in float32).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> counts = multinomial(jax.random.key(0), 100.0, jnp.array([0.2, 0.3, 0.5]))
    >>> float(counts.sum())
    100.0
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ._random import SMALL_BATCH, batched_lanes, finish_pending_blocks, threefry_elementwise, uniforms_from_words

__all__ = ["binomial", "multinomial", "categorical", "cumulative_weights", "INVERSION_MEAN"]

# BTRS needs n p >= 10 (Hormann 1993). Below n q = 50 inversion (n q + a few sd cheap steps
# in fused trips of 16) beats BTRS, whose whole-batch rejection loop runs ~7 trips for its
# slowest element (measured per draw over 2e5 draws: 23-25 ns against 80 ns at n q = 25-30,
# 39 against 73 at n q = 30; the K = 10, M = 100 chain went from 0.85-0.96x numpy at a
# threshold of 20 to 1.5-2.0x). The bound keeps inversion's first pmf (1 - q)^n =
# exp(-n q * (-log1p(-q) / q)) >= exp(-50 ln 4) ~ 8e-31 a normal float32 (q <= 1/2).
INVERSION_MEAN = 50.0
_UNROLL = 16  # inversion search steps per loop trip
_POISSON_FIRST_TRIPS = 2  # fused trips before the Poisson search finishes apart: fewer whole-batch trips late in a collapse
_FIRST_ATTEMPTS = 3  # BTRS attempts for the whole batch before the rejected elements are gathered
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


def _search_step(step, pmf, cdf, count, uniforms, params, numerator):
    """From k = ``step`` to k + 1: f(k + 1), F(k + 1) and the count of F values below u."""
    pmf = pmf * numerator(step, *params) * (1.0 / (step + 1.0))
    cdf = cdf + pmf
    return pmf, cdf, count + (cdf < uniforms).astype(pmf.dtype)


def _search_from_zero(uniforms, first_pmf, params, numerator):
    """Smallest k with F(k) >= u for the pmf f(0) = ``first_pmf``, f(k + 1) = f(k)
    numerator(k, *params) / (k + 1), searched upwards from k = 0 (binomial: numerator =
    (n - k) q / (1 - q); Poisson: the mean), until every element has found its k.

    k is counted as the number of cdf values F(0), F(1), ... below u, so a step is a
    multiply, an add and a compare, with no per-element counter, division or select; a
    trip takes ``_UNROLL`` steps in one fused pass. Past the mode, once the pmf no longer
    changes the float32 cdf, an element whose u lies above it (probability ~1e-7) stops
    counting: it gets a value in the distribution's far tail (at most ``_UNROLL`` - 1 past
    where the cdf stopped growing), not wherever the pmf underflows.
    """
    def trip(state):
        j, count, pmf, cdf, uniforms = state
        for offset in range(_UNROLL):
            step = (j + offset).astype(pmf.dtype)
            pmf, cdf, count = _search_step(step, pmf, cdf, count, uniforms, params, numerator)
        stalled = (cdf + pmf == cdf) & (numerator(step + 1.0, *params) < step + 2.0)
        return j + _UNROLL, count, pmf, cdf, jnp.where(stalled, -1.0, uniforms)

    def searching(state):
        _, _, pmf, cdf, uniforms = state
        return jnp.any((cdf < uniforms) & (pmf > 0))

    state = (jnp.int32(0), (first_pmf < uniforms).astype(first_pmf.dtype), first_pmf, first_pmf, uniforms)
    return jax.lax.while_loop(searching, trip, state)[1]


def _first_steps_count(uniforms, first_pmf, params, numerator, steps: int):
    """The number of F(0), ..., F(steps) below u: the search's k where it is at most
    ``steps``, and steps + 1 where the search goes on.

    It is the only output of its fused pass. Passing the search state (pmf, cdf) on as
    well made XLA:CPU compute the unrolled steps once for each of those outputs and for
    each of their consumers (measured on 10^6 Poisson draws of mean 1: 10.2 ms against
    4.1 ms); an element still searching is cheaper to search again from k = 0.
    """
    pmf, cdf = first_pmf, first_pmf
    count = (cdf < uniforms).astype(pmf.dtype)
    for step in range(steps):
        pmf, cdf, count = _search_step(jnp.asarray(step, pmf.dtype), pmf, cdf, count, uniforms, params, numerator)
    return count


def _first_pass_then_blocks(size: int, first_pass, draw):
    """``draw(lanes)`` (lanes: int32 indices, or None for every lane) for every element:
    for a batch above ``SMALL_BATCH`` lanes, ``first_pass()`` = (value, pending) runs for
    the whole batch and the pending elements are drawn in blocks
    (:func:`finish_pending_blocks`), or the whole batch where many are; ``draw`` must give
    a lane the same value whichever lanes it is called with."""
    if size <= SMALL_BATCH:  # one loop, the same values, less to compile
        return draw(None)
    value, pending = first_pass()
    return finish_pending_blocks(pending, value, lambda lanes: draw(jnp.minimum(lanes, size - 1)), lambda: draw(None))


def _lanes(values, lanes):
    """The elements ``lanes`` of each 1-D array of ``values`` (all of them for None)."""
    return values if lanes is None else tuple(value[lanes] for value in values)


class _Elsewhere(NamedTuple):
    """Elements the search from 0 does not serve: ``inside(*inputs)`` marks those it
    serves; ``draw(uniforms, inside, *inputs)`` gives the others' values (any values
    inside)."""

    inside: Callable
    draw: Callable


def _inversion(uniforms, inputs, setup, numerator, first_trips: int = 1, elsewhere: _Elsewhere | None = None):
    """:func:`_search_from_zero` with (first_pmf, params) = ``setup(*inputs)``; all arrays
    are 1-D. The first ``first_trips`` trips run for the whole batch, fused with what makes
    the uniforms (:func:`_first_steps_count`); the few elements still searching after them,
    and those ``elsewhere`` serves, are drawn in blocks (:func:`_first_pass_then_blocks`),
    which read only the uniforms and ``inputs`` and set up again: every array a branch
    reads is first written out in full (measured on the Poisson split at K = M = 10^4:
    1.15-1.2x faster than passing the set-up arrays in).
    """
    steps = first_trips * _UNROLL

    def first_pass():
        first_pmf, params = setup(*inputs)
        count = _first_steps_count(uniforms, first_pmf, params, numerator, steps)
        pending = count > steps
        return count, pending if elsewhere is None else pending | ~elsewhere.inside(*inputs)

    def draw(lanes):
        uniforms_, *inputs_ = _lanes((uniforms, *inputs), lanes)
        from_zero = _search_from_zero(uniforms_, *setup(*inputs_), numerator)
        if elsewhere is None:
            return from_zero
        inside = elsewhere.inside(*inputs_)
        other = jax.lax.cond(jnp.all(inside), lambda: from_zero, lambda: elsewhere.draw(uniforms_, inside, *inputs_))
        return jnp.where(inside, from_zero, other)

    return _first_pass_then_blocks(uniforms.shape[0], first_pass, draw)


def _binomial_numerator(step, n, ratio):
    return (n - step) * ratio


def _binomial_setup(n, q):
    return jnp.exp(n * jnp.log1p(-q)), (n, q / (1.0 - q))


def _binomial_inversion(uniforms, n, q):
    return jnp.minimum(_inversion(uniforms, (n, q), _binomial_setup, _binomial_numerator), n)


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
    The first ``_FIRST_ATTEMPTS`` attempts run for the whole batch; the few elements that
    all of them reject (~0.1-1 %) are finished in blocks (:func:`finish_pending_blocks`).
    A rejection loop over the whole batch runs ~5 trips for the slowest of 2e5 elements,
    each as costly as the first (measured per draw at n q >= 600: 40-54 ns, against 12-21).
    """
    n, q = jnp.where(needed, n, 100.0), jnp.where(needed, q, 0.5)  # harmless where unused

    # one array, -1 while pending: carrying a separate "done" mask makes XLA compute each
    # attempt once per consumer (measured: 3x slower)
    def attempt(salt, value, source, setup):
        ok, candidate = _btrs_attempt(source, salt, setup)
        return jnp.where((value < 0) & ok, candidate, value)

    def until_accepted(value, source, n, q, first_salt):
        setup = _btrs_setup(n, q)

        def trip(state):
            salt, value = state
            return salt + 1, attempt(salt, value, source, setup)

        start = (jnp.uint32(first_salt), value)
        return jax.lax.while_loop(lambda state: jnp.any(state[1] < 0), trip, start)[1]

    pending = jnp.where(needed, -1.0, 0.0).astype(n.dtype)
    if n.shape[0] <= SMALL_BATCH:  # one loop, the same values, less to compile
        return until_accepted(pending, source, n, q, 1)
    setup = _btrs_setup(n, q)
    # a rolled loop: unrolled, the three attempts compile 3x slower and run ~25 % faster
    value = jax.lax.fori_loop(0, _FIRST_ATTEMPTS,
                              lambda index, value: attempt(jnp.uint32(1) + index.astype(jnp.uint32), value, source, setup),
                              pending)
    size = n.shape[0]

    def finish(lanes):
        picked = jnp.minimum(lanes, size - 1)
        return until_accepted(value[picked], tuple(x[picked] for x in source), n[picked], q[picked],
                              1 + _FIRST_ATTEMPTS)

    return finish_pending_blocks(value < 0, value, finish)


def _binomial_core(source, n, p, rejection: bool = True):
    """Binomial(n, p) elementwise; ``source`` = (key0, key1, element index) broadcastable
    to n's shape (see :func:`_uniform_pair`). ``rejection=False`` promises n min(p, 1 - p)
    < INVERSION_MEAN everywhere, so BTRS is not even compiled."""
    # one flat axis: XLA:CPU vectorises the minor axis, which for (chains, nodes) arrays
    # is often 1 or 2 long
    shape = n.shape
    source = tuple(jnp.broadcast_to(x, shape).reshape(-1) for x in source)
    return _binomial_flat(source, n.reshape(-1), p.reshape(-1), rejection).reshape(shape)


def _binomial_flat(source, n, p, rejection: bool):
    flip = p > 0.5
    q = jnp.clip(jnp.where(flip, 1.0 - p, p), 0.0, 0.5)
    small = n * q < INVERSION_MEAN
    by_inversion = jax.lax.cond(
        jnp.any(small), lambda: _binomial_inversion(_uniform_pair(source, 0)[0], jnp.where(small, n, 0.0), q),
        lambda: jnp.zeros_like(n),
    )
    k = by_inversion
    if rejection:
        by_rejection = jax.lax.cond(jnp.any(~small), lambda: _btrs(source, n, q, ~small), lambda: jnp.zeros_like(n))
        k = jnp.where(small, by_inversion, by_rejection)
    return jnp.where(flip, n - k, k)


def _element_index(shape):
    return jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape)


@functools.lru_cache(maxsize=None)
def _binomial_sampler(rejection: bool):
    """The binomial whose ``vmap`` runs on the whole batch at once (see the module doc)."""

    @jax.custom_batching.custom_vmap
    def draw(key_words, offset, n, p):
        return _binomial_core((key_words[0], key_words[1], _element_index(n.shape) + offset), n, p, rejection)

    @draw.def_vmap
    def draw_batched(axis_size, in_batched, key_words, offset, n, p):
        key_words, n, p = batched_lanes(axis_size, (in_batched[0], *in_batched[2:]), key_words, n, p)
        if in_batched[1]:
            raise NotImplementedError("the element offset of a binomial batch must be the same for every lane")
        per_chain = (axis_size,) + (1,) * (n.ndim - 1)
        source = (key_words[:, 0].reshape(per_chain), key_words[:, 1].reshape(per_chain),
                  _element_index(n.shape[1:]) + offset)
        return _binomial_core(source, n, p, rejection), True

    return draw


def _binomial_words(key_words, n, p, offset: int = 0, max_count: float | None = None):
    """Binomial(n, p) from a key's two words; element e draws from the counter e + offset,
    so calls with disjoint offset ranges are independent. ``max_count``, a static bound on
    n, leaves BTRS out where n q <= max_count / 2 < INVERSION_MEAN (the same values)."""
    dtype = jnp.result_type(float)
    n, p = jnp.broadcast_arrays(jnp.asarray(n, dtype), jnp.asarray(p, dtype))
    rejection = max_count is None or max_count / 2 >= INVERSION_MEAN
    return _binomial_sampler(rejection)(key_words, jnp.uint32(offset), n, p)


def binomial(key, n, p):
    """Binomial(n, p) variates, elementwise over the broadcast shape of ``n`` and ``p``.

    ``n`` holds non-negative integers (as floats or ints), ``p`` probabilities in [0, 1].
    Returns floats of the default float dtype.

    Examples:
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


def _tree_multinomial(key, n, p, max_count: int | None = None):
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
        left_counts = _binomial_words(key_words, counts, ratio, offset, max_count)
        offset += widths[level]
        counts = jnp.stack([left_counts, counts - left_counts], axis=-1)
        counts = counts.reshape(counts.shape[:-2] + (-1,))[..., : widths[level - 1]]
    return counts


_CDF_BLOCK = 32  # states summed in sequence within a block of the running sum


def cumulative_weights(p):
    """The running sum of the weights ``p`` along the last axis, exactly flat across zero
    weights, so that a state of weight 0 is never drawn by inverse CDF.

    XLA:CPU computes each entry of ``cumsum`` as its own windowed sum, so adding a zero
    weight can still move the sum by an ulp (measured: ~15 of the ~1430 zero weights of a
    K = 10^4 vector), and a state that has died could be drawn again (~1e-6 per draw).
    Here every entry is the previous one plus its weight, in float arithmetic: a sequential
    sum within blocks of 32 states (one vector add per column, across blocks), and block
    offsets that are each the previous offset plus the previous block's total (a scan over
    K / 32 blocks), so an entry at the start of a block repeats the float operation that
    made the end of the block before it. It is also faster than ``cumsum`` (1.8-2.1 against
    4.8-6.0 ms for 100 x 10^4 weights).

    Examples:
        >>> import jax.numpy as jnp
        >>> cumulative_weights(jnp.array([0.5, 0.0, 0.25])).tolist()
        [0.5, 0.5, 0.75]
    """
    batch, states = p.shape[:-1], p.shape[-1]
    blocks = -(-states // _CDF_BLOCK)
    padded = jnp.pad(p, [(0, 0)] * len(batch) + [(0, blocks * _CDF_BLOCK - states)])
    padded = padded.reshape(batch + (blocks, _CDF_BLOCK))
    # the running sums as slices of the minor axis: moving the block axis in front instead
    # costs two transposes of the whole array (3.2-4.6 against 1.4-1.8 ms, measured)
    running = [padded[..., 0]]
    for column in range(1, _CDF_BLOCK):
        running.append(running[-1] + padded[..., column])

    def add_block(offset, block_total):
        return offset + block_total, offset

    _, offsets = jax.lax.scan(add_block, jnp.zeros(batch, p.dtype), jnp.moveaxis(running[-1], -1, 0), unroll=8)
    cdf = jnp.moveaxis(offsets, 0, -1)[..., None] + jnp.stack(running, axis=-1)
    return cdf.reshape(batch + (blocks * _CDF_BLOCK,))[..., :states]


def _categorical_words(key_words, p, count: int):
    """``count`` inverse-CDF draws from the weights ``p`` (1-D): word i is threefry of the
    counter (0, i) under the key's two words."""
    cdf = cumulative_weights(p)
    words = threefry_elementwise(key_words[0], key_words[1], jnp.uint32(0), jnp.arange(count, dtype=jnp.uint32))[0]
    uniforms = uniforms_from_words(words, p.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, uniforms, side="right"), p.shape[-1] - 1)


def categorical(key, p, count: int):
    """``count`` state indices drawn from the (unnormalised) weights ``p`` (1-D) by inverse
    CDF: threefry words under the key, one per draw, searched in the cumulative weights.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> categorical(jax.random.key(0), jnp.array([0.0, 2.0, 0.0]), 3).tolist()
        [1, 1, 1]
    """
    return _categorical_words(jax.random.key_data(key), p, count)


def _histograms(key_words, n, p, max_count: int):
    """(B, K) histograms of n[b] <= ``max_count`` categorical draws from p[b] under
    key_words[b]: O(max_count log K + K) per row."""
    def histogram(key_words, n, p):
        used = (jnp.arange(max_count) < n).astype(p.dtype)
        return jnp.zeros(p.shape, p.dtype).at[_categorical_words(key_words, p, max_count)].add(used)

    return jax.vmap(histogram)(key_words, n, p)


# The Poisson split (exact): counts N_j ~ Poisson(lambda p_j) for all states at once are a
# Multinomial(T, p) given their total T ~ Poisson(lambda); with lambda = n - 4 sqrt(n_max),
# T <= n but for ~3e-5 of the rows, and n - T further categorical draws complete a
# Multinomial(n, p). A row whose T overshoots n or leaves more than the buffer of
# categorical draws (another ~3e-5; the event depends on T alone, so the rows kept are
# still exact) is drawn again point by point.
_SPLIT_SLACK = 4.0  # lambda = n - _SPLIT_SLACK sqrt(max_count)
# a Poisson inversion with its share of the top-up costs about this many search steps
# (measured: the split wins from M ~ 0.7 K on at K = 10^4)
SPLIT_COST_RATIO = 8.0
_SPLIT_SALT, _TOP_UP_SALT, _ROW_SALT = 1, 2, 3  # counters (salt, i); categorical draws use (0, i)


def _split_room(max_count: int) -> int:
    return math.ceil(2.0 * _SPLIT_SLACK * math.sqrt(max_count))


def _poisson_from_mode(uniforms, means):
    """Poisson(mean) for means >= 1 by inversion in the order m, m + 1, m - 1, m + 2, ...
    outwards from the mode m = floor(mean) (any fixed order of the outcomes is an exact
    inversion): |X - m| + 1 steps, O(sqrt(mean)), where the search from 0 would take
    mean + O(sqrt(mean)) steps from a first pmf e^-mean that underflows float32 past 87.
    ln f(m) = (m - mean) + m ln(mean / m) - ln(2 pi m) / 2 - 1/(12 m) + 1/(360 m^3) (Stirling),
    with m ln(mean / m) as a log1p of an exact difference: accurate in float32."""
    mode = jnp.floor(means)
    inverse = 1.0 / mode
    log_mode_pmf = ((mode - means) + mode * jnp.log1p((means - mode) * inverse) - 0.5 * jnp.log(2.0 * math.pi * mode)
                    - inverse * (1.0 / 12.0 - inverse * inverse / 360.0))
    mode_pmf = jnp.exp(log_mode_pmf)
    left = uniforms - mode_pmf  # the part of u not yet covered by the outcomes visited
    found = jnp.where(left <= 0, mode, -1.0)

    def searching(state):
        _, found, up_pmf, down_pmf, _ = state
        return (found < 0) & ((up_pmf > 0) | (down_pmf > 0))

    def step(state):
        offset, found, up_pmf, down_pmf, left = state
        up = mode + offset
        up_pmf = up_pmf * means / up
        left = left - up_pmf
        found = jnp.where((found < 0) & (left <= 0), up, found)
        down = mode - offset
        down_pmf = jnp.where(down >= 0, down_pmf * (down + 1.0) / means, 0.0)
        left = left - down_pmf
        found = jnp.where((found < 0) & (left <= 0), down, found)
        return offset + 1.0, found, up_pmf, down_pmf, left

    state = (jnp.ones_like(means), found, mode_pmf, mode_pmf, left)
    _, found, _, _, _ = jax.lax.while_loop(lambda s: jnp.any(searching(s)), step, state)
    return jnp.where(found < 0, mode, found)  # u above the float32 sum of the pmf: ~1e-7


def _poisson_numerator(step, means):
    return means


def _poisson_small(means):
    return means < INVERSION_MEAN


def _poisson_setup(means):
    small_means = jnp.where(_poisson_small(means), means, 0.0)
    return jnp.exp(-small_means), (small_means,)


_POISSON_FROM_MODE = _Elsewhere(
    _poisson_small, lambda uniforms, small, means: _poisson_from_mode(uniforms, jnp.where(small, INVERSION_MEAN, means)))


def _poisson_inversion(uniforms, means):
    """Poisson(means) elementwise: the search from 0 for means below ``INVERSION_MEAN``,
    the search from the mode for the (typically few) larger ones, both finished in blocks
    after a first pass of ``_POISSON_FIRST_TRIPS`` trips from 0 (see :func:`_inversion`)."""
    return _inversion(uniforms, (means,), _poisson_setup, _poisson_numerator, _POISSON_FIRST_TRIPS, _POISSON_FROM_MODE)


def _split_rows(key_words, n, p, max_count: int):
    """(B, K) multinomial counts of n[b] <= ``max_count`` draws from the weights p[b] by
    the Poisson split; the rows where it fails are drawn point by point."""
    rows, states = p.shape
    total = jnp.sum(p, axis=-1, keepdims=True)
    rate = jnp.maximum(n - _SPLIT_SLACK * math.sqrt(max_count), 0.0)
    means = rate[:, None] * (p / jnp.where(total > 0, total, 1.0))
    room = _split_room(max_count)

    words = threefry_elementwise(key_words[:, :1], key_words[:, 1:], jnp.uint32(_SPLIT_SALT),
                                 jnp.arange(states, dtype=jnp.uint32))[0]
    uniforms = uniforms_from_words(words, p.dtype).reshape(-1)
    counts = _poisson_inversion(uniforms, means.reshape(-1)).reshape(rows, states)
    top_up = n - jnp.sum(counts, axis=-1)
    keep = (top_up >= 0) & (top_up <= room)
    top_up_words = jnp.stack(threefry_elementwise(key_words[:, 0], key_words[:, 1], jnp.uint32(_TOP_UP_SALT),
                                                  jnp.uint32(0)), axis=-1)
    counts = counts + _histograms(top_up_words, jnp.clip(top_up, 0.0, room), p, room)
    return jax.lax.cond(jnp.all(keep), lambda: counts,
                        lambda: jnp.where(keep[:, None], counts, _histograms(key_words, n, p, max_count)))


@functools.lru_cache(maxsize=None)
def _split_multinomial(max_count: int):
    """Per-row multinomial whose ``vmap`` runs :func:`_split_rows` on the whole batch, so
    its choice of method and its loops look at every row at once."""

    @jax.custom_batching.custom_vmap
    def draw(key_words, n, p):
        return _split_rows(key_words[None], n[None], p[None], max_count)[0]

    @draw.def_vmap
    def draw_batched(axis_size, in_batched, key_words, n, p):
        lanes = batched_lanes(axis_size, in_batched, key_words, n, p)
        key_words, n, p = (v.reshape((-1,) + v.shape[v.ndim - core:]) for v, core in zip(lanes, (1, 0, 1)))
        return _split_rows(key_words, n, p, max_count).reshape(lanes[2].shape), True

    return draw


def _uses_split(max_count: int, states: int) -> bool:
    """Whether the Poisson split beats max_count point draws: its K Poisson inversions and
    its buffer of top-up draws against max_count binary searches of log2 K steps."""
    room = _split_room(max_count)
    return (max_count - room) * math.log2(max(states, 2)) >= SPLIT_COST_RATIO * states


def _draws_multinomial(key, n, p, max_count: int):
    """Counts of ``n`` <= ``max_count`` draws, for max_count at most about K: the Poisson
    split when it is cheaper, else a histogram of categorical draws
    (O(max_count log K + K))."""
    batch, states = p.shape[:-1], p.shape[-1]
    key_words = jax.random.key_data(key)
    if batch:  # each row its own words
        rows = jnp.arange(math.prod(batch), dtype=jnp.uint32).reshape(batch)
        key_words = jnp.stack(threefry_elementwise(key_words[0], key_words[1], jnp.uint32(_ROW_SALT), rows), axis=-1)
    n = jnp.broadcast_to(n, batch)
    if _uses_split(max_count, states):
        draw = _split_multinomial(max_count)
        for _ in batch:
            draw = jax.vmap(draw)
        return draw(key_words, n, p)
    flat = _histograms(key_words.reshape(-1, 2), n.reshape(-1), p.reshape(-1, states), max_count)
    return flat.reshape(p.shape)


def multinomial(key, n, p, max_count: int | None = None):
    """Counts of ``n`` draws over the K states of the (unnormalised) weights ``p`` (last axis).

    With ``max_count`` (a static bound on n) at most K, the draws are made one by one by
    inverse CDF (O(max_count log K + K), memory O(K)); otherwise by K - 1 conditional
    binomials on a tree (O(K), memory independent of n). Both are exact.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> multinomial(jax.random.key(0), 7.0, jnp.array([0.0, 1.0, 0.0])).tolist()
        [0.0, 7.0, 0.0]
    """
    dtype = jnp.result_type(float)
    p = jnp.asarray(p, dtype)
    n = jnp.asarray(n, dtype)
    if max_count is not None and max_count <= DRAWS_PER_STATE * p.shape[-1]:
        return _draws_multinomial(key, n, p, int(max_count))
    return _tree_multinomial(key, n, p, max_count)
