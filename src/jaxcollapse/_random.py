"""Exact samplers that jax.random lacks or runs slowly on CPU.

``jax.random.gamma`` is exact but an order of magnitude slower than numpy on CPU. The
sufficient-statistics path draws one gamma variate per chain and generation, so it gets
its own sampler: Marsaglia and Tsang's method (ACM TOMS 26, 2000), exact, with one
normal and one uniform per attempt and an acceptance rate above 95 % for shape >= 1
(above 99.9 % for the shapes (M - 1) / 2 of samples of M >= 100). Shapes below 1 use
the boost Gamma(a) = Gamma(a + 1) * U**(1/a).

Per lane the value is the first accepted attempt in a sequence that depends only on the
lane's own words (attempt 0 from the draws it is given, attempt j from a hash of its seed
words and j), so results do not depend on the batch they are computed in. Under ``vmap``
a plain rejection ``while_loop`` would make every lane wait for the slowest one (with
1e5 chains some lane almost always rejects, and the whole batch pays a second pass); the
batching rule below instead runs attempt 0 for all lanes, gathers the few blocks of lanes
that hold a rejection into a small buffer and loops over those only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "gamma", "gamma_from_draws", "chi_square", "wishart_scatter", "step_words", "uniforms_from_words",
    "normals_from_words", "key_from_words", "threefry_elementwise", "finish_pending_blocks", "WORDS_PER_DRAW",
    "LANE_BLOCK", "SMALL_BATCH", "batched_lanes", "fused_bernoulli",
]

WORDS_PER_DRAW = 4  # two normals and two uniforms; the rare further attempts rehash them

_SQUEEZE = 0.0331


def _constants(shape):
    boosted = shape + jnp.where(shape < 1.0, 1.0, 0.0)
    d = boosted - 1.0 / 3.0
    return d, 1.0 / jnp.sqrt(9.0 * d)


def _attempt(normal, uniform, d, c):
    v = (1.0 + c * normal) ** 3
    safe_v = jnp.where(v > 0, v, 1.0)
    squeeze = uniform < 1.0 - _SQUEEZE * normal**4
    full = jnp.log(uniform) < 0.5 * normal**2 + d * (1.0 - safe_v + jnp.log(safe_v))
    return (v > 0) & (squeeze | full), d * safe_v


def step_words(root, generation, chain_ids, count: int):
    """``count`` random 32-bit words for every chain of a batch at one generation.

    Word pair j of chain i is Threefry-2x32 of the counter (i, j) under the key
    fold_in(root, generation): a chain's words depend only on the root key, the
    generation and its id (not on the batch). The hash runs elementwise over the chain
    ids, one flat pass per pair of words; drawing from a per-chain key under ``vmap``
    costs several times more on CPU (each key op works on (chains, 2) arrays whose minor
    axis is too short to vectorise), and so does one ``threefry_2x32`` call over
    interleaved counters (XLA:CPU then shuffles the words into place: 16 ns against 2.7 ns
    per chain for 4 words, measured).
    """
    generation_key = jax.random.key_data(jax.random.fold_in(root, generation))
    chain_ids = chain_ids.astype(jnp.uint32)
    words = []
    for pair in range((count + 1) // 2):
        words.extend(threefry_elementwise(generation_key[0], generation_key[1], chain_ids, jnp.uint32(pair)))
    return jnp.stack(words[:count], axis=-1)


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x, bits):
    return (x << jnp.uint32(bits)) | (x >> jnp.uint32(32 - bits))


def threefry_elementwise(key0, key1, count0, count1):
    """Threefry-2x32 (20 rounds, Salmon et al. 2011), the generator behind ``jax.random``,
    with a key per element: all four uint32 arrays broadcast together.

    ``jax.extend.random.threefry_2x32`` takes one key for a whole array; under ``vmap``
    over chains each chain's key then works on its own short array, which vectorises
    badly on CPU. Written elementwise, a batch of chains hashes as one flat array. The
    output equals ``threefry_2x32`` word for word (tested).
    """
    key0, key1, x0, x1 = (jnp.asarray(v, jnp.uint32) for v in (key0, key1, count0, count1))
    schedule = (key0, key1, key0 ^ key1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + key0, x1 + key1
    for block in range(5):
        for bits in _THREEFRY_ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, bits) ^ x0
        x0 = x0 + schedule[(block + 1) % 3]
        x1 = x1 + schedule[(block + 2) % 3] + jnp.uint32(block + 1)
    return x0, x1


def fused_bernoulli(key, p: float, shape) -> jax.Array:
    """Bernoulli(``p``) draws of ``shape``: element i is True when the first word of
    Threefry-2x32 of the counter (i, 0), under the key's two words, is below
    ``round(p * 2**32)`` (so P(True) equals ``p`` to within 2**-33).

    Elementwise, so XLA fuses the hash into the draws' consumers; ``jax.random.bernoulli``
    runs Threefry as a loop over whole arrays on a CPU and writes its bits out (7.7 ms for
    the 1.6 M dropout draws of a training step of the tiny OPT, measured, which the fused
    draws remove from a 25-28 ms step). ``p`` is a Python float; a key with other than two
    words of data, more than 2**32 - 1 draws or ``p`` outside [0, 1] go to
    ``jax.random.bernoulli``.

    Examples:
        >>> import jax
        >>> fused_bernoulli(jax.random.key(0), 0.9, (2, 3)).shape
        (2, 3)
    """
    shape = tuple(shape)
    size = math.prod(shape)
    data = jax.random.key_data(key)
    if data.shape != (2,) or size >= 2**32 or not 0.0 <= p <= 1.0:
        return jax.random.bernoulli(key, p, shape)
    # the row-major index from one iota per axis: a reshaped flat iota is not fused
    counter, stride = jnp.zeros(shape, jnp.uint32), 1
    for axis in reversed(range(len(shape))):
        counter = counter + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride *= shape[axis]
    word = threefry_elementwise(data[0], data[1], counter, jnp.uint32(0))[0]
    threshold = round(p * 2.0**32)
    if threshold >= 2**32:
        return jnp.ones(shape, bool)
    return word < jnp.uint32(threshold)


def _odd_integers(words, dtype):
    """2 (w >> 9) + 1: odd integers in [1, 2**24 - 1], exact in float32."""
    return ((words >> 9) * 2 + 1).astype(dtype)


def uniforms_from_words(words, dtype):
    """Uniforms in the open interval (0, 1) from 32-bit words: the odd multiples of
    2**-24, so 0 and 1 can never occur (k + 1/2 with a 24-bit k would round to 1 in
    float32)."""
    return _odd_integers(words, dtype) * (1.0 / (1 << 24))


def normals_from_words(words, dtype):
    """Standard normals from 32-bit words: sqrt(2) erfinv(v) with v uniform on the odd
    multiples of 2**-23 in (-1, 1), as ``jax.random.normal`` does (erfinv is cheaper than
    ndtri on CPU); |v| <= 1 - 2**-23, so the result is always finite (|z| < 5.4)."""
    symmetric = _odd_integers(words, dtype) * (1.0 / (1 << 23)) - 1.0
    return jnp.sqrt(jnp.asarray(2.0, dtype)) * jax.lax.erf_inv(symmetric)


def key_from_words(words):
    """A threefry key made of two random words."""
    return jax.random.wrap_key_data(words.astype(jnp.uint32), impl="threefry2x32")


def _first_attempt(shape, draws):
    """Attempt 0 from (normal, acceptance uniform, boost uniform)."""
    d, c = _constants(shape)
    return _attempt(draws[0], draws[1], d, c)


_RETRY_SALT = 0x9E3779B9  # attempt j >= 1 hashes the counter (j, salt) under the seed words


def _retry(seed_words, shape, accepted, value):
    """Attempts 1, 2, ... until accepted (a no-op for an accepted lane); attempt j draws
    its normal and uniform from threefry(seed_words, (j, salt)), elementwise, so a batch
    of lanes hashes as flat arrays."""
    d, c = _constants(shape)

    def not_done(state):
        return ~state[1]

    def attempt(state):
        index, _, current = state
        normal_word, uniform_word = threefry_elementwise(seed_words[0], seed_words[1], index, jnp.uint32(_RETRY_SALT))
        ok, candidate = _attempt(normals_from_words(normal_word, shape.dtype),
                                 uniforms_from_words(uniform_word, shape.dtype), d, c)
        return index + 1, ok, jnp.where(ok, candidate, current)

    return jax.lax.while_loop(not_done, attempt, (jnp.uint32(1), accepted, value))[2]


def _finish(shape, value, boost_uniform):
    boost = boost_uniform ** (1.0 / jnp.where(shape > 0, shape, 1.0))
    value = jnp.where(shape < 1.0, value * boost, value)
    return jnp.where(shape > 0, value, 0.0)


@jax.custom_batching.custom_vmap
def _gamma(seed_words, shape, draws):
    accepted, value = _first_attempt(shape, draws)
    return _finish(shape, _retry(seed_words, shape, accepted, value), draws[2])


LANE_BLOCK = 16  # lanes: a multiple of every CPU vector width in float32 (AVX-512: 16)
SMALL_BATCH = 1 << 15  # lanes: up to this, pending lanes are finished with the whole batch


def finish_pending_blocks(pending, value, finish, finish_all=None):
    """``value`` (N,) with the lanes where ``pending`` replaced by ``finish(lanes)``, which
    returns the finished values at the int32 lane indices ``lanes``: indices >= N are
    padding (read them clamped; their results are dropped), and lanes that are not
    pending but share a block with one must come back unchanged.

    The pending lanes are handled in whole blocks of ``LANE_BLOCK`` lanes, gathered a
    window of blocks at a time: a finished lane's arithmetic runs in a full vector, only
    one copy of ``finish`` is compiled, and finding the blocks scans blocks, not lanes (on
    this CPU, at 10^5 lanes: compacting single lanes with ``nonzero`` costs ~15 ns a lane,
    compacting blocks ~3 ns, one more whole-batch attempt of a rejection sampler ~12 ns).
    A window holds ~1.6 % of the blocks: this pays when few blocks are pending. Where more
    than an eighth of them are, ``finish_all()`` (if given) finishes the whole batch
    instead, and so does a batch of at most ``SMALL_BATCH`` lanes (``finish`` of every
    lane if no ``finish_all`` is given): the values are the same, each lane's own, and
    the block machinery, which costs ~0.3 s of compile time, is left out (the count
    samplers then also skip their separate first pass).

    Examples:
        >>> import jax.numpy as jnp
        >>> pending, value = jnp.array([False, True, False]), jnp.zeros(3)
        >>> def finish(lanes):
        ...     return jnp.where(pending[lanes], lanes + 10.0, value[lanes])
        >>> finish_pending_blocks(pending, value, finish).tolist()
        [0.0, 11.0, 0.0]
    """
    size = value.shape[0]
    if size <= SMALL_BATCH:  # the same values, with less to compile
        everything = finish_all or (lambda: finish(jnp.arange(size, dtype=jnp.int32)))
        return jax.lax.cond(jnp.any(pending), everything, lambda: value)
    num_blocks = -(-size // LANE_BLOCK)
    padding = num_blocks * LANE_BLOCK - size
    block_pending = jnp.any(jnp.pad(pending, (0, padding)).reshape(num_blocks, LANE_BLOCK), axis=1)
    count = jnp.sum(block_pending)
    room = 2 + math.ceil(num_blocks / 64)
    lane_in_block = jnp.arange(LANE_BLOCK, dtype=jnp.int32)

    def window(state, order):
        first, value = state
        blocks = jax.lax.dynamic_slice(order, (first,), (room,))
        lanes = (blocks[:, None] * LANE_BLOCK + lane_in_block).reshape(-1)  # past the end: fill or padding
        return first + room, value.at[lanes].set(finish(lanes), mode="drop")

    def by_windows():
        # the pending blocks in order, then fill (``jnp.nonzero`` compiles ~0.1 s slower and
        # runs 2x slower at ~6000 blocks)
        position = jnp.where(block_pending, jnp.cumsum(block_pending, dtype=jnp.int32) - 1, num_blocks + room)
        order = jnp.full((num_blocks + room,), num_blocks, jnp.int32).at[position].set(
            jnp.arange(num_blocks, dtype=jnp.int32), mode="drop")
        return jax.lax.while_loop(lambda state: state[0] < count, lambda state: window(state, order),
                                  (jnp.int32(0), value))[1]

    if finish_all is None:
        return jax.lax.cond(count == 0, lambda: value, by_windows)
    return jax.lax.cond(count == 0, lambda: value,
                        lambda: jax.lax.cond(8 * count > num_blocks, finish_all, by_windows))


def batched_lanes(axis_size, in_batched, *values):
    """The arguments of a ``custom_vmap`` rule, each with the batch axis in front: the
    unbatched ones broadcast to ``axis_size`` lanes."""
    return tuple(value if batched else jnp.broadcast_to(value, (axis_size,) + jnp.shape(value))
                 for value, batched in zip(values, in_batched))


@_gamma.def_vmap
def _gamma_batched(axis_size, in_batched, seed_words, shape, draws):
    seed_words, shapes, draws = batched_lanes(axis_size, in_batched, seed_words, shape, draws)
    accepted, value = jax.vmap(_first_attempt)(shapes, draws)
    # Attempt 0 runs for all lanes; the rejected ones are retried in blocks. A block needs
    # a retry with probability 1 - acceptance^16: ~0.1 % at M = 1000, ~10 % at M = 10.

    def retry(lanes):
        picked = jnp.minimum(lanes, axis_size - 1)
        return jax.vmap(_retry)(seed_words[picked], shapes[picked], accepted[picked], value[picked])

    value = finish_pending_blocks(~accepted, value, retry)
    return jax.vmap(_finish)(shapes, value, draws[:, 2]), True


def gamma_from_draws(seed_words, shape, draws):
    """Gamma(shape, 1) whose first attempt uses ``draws`` = (a standard normal, an
    open-interval uniform for the acceptance test, one for the boost of shapes < 1);
    ``seed_words`` (two uint32 words) seed only the rare further attempts. The words that
    made the draws may be reused as the seed: retries hash them, they do not reuse them.

    Examples:
        >>> import jax.numpy as jnp
        >>> draw = gamma_from_draws(jnp.array([1, 2], jnp.uint32), 2.5, jnp.array([0.3, 0.5, 0.5]))
        >>> bool(draw > 0)
        True
    """
    draws = jnp.asarray(draws)
    return _gamma(jnp.asarray(seed_words, jnp.uint32), jnp.asarray(shape, dtype=draws.dtype), draws)


def gamma(key, shape):
    """One Gamma(shape, 1) variate; ``shape`` is a traced scalar >= 0 (0 gives 0).

    Examples:
        >>> import jax
        >>> draws = jax.jit(jax.vmap(gamma, (0, None)))(jax.random.split(jax.random.key(0), 4), 2.5)
        >>> draws.shape
        (4,)
    """
    dtype = jnp.result_type(float)
    words = jax.random.bits(key, (5,))
    draws = jnp.stack([normals_from_words(words[0], dtype), *uniforms_from_words(words[1:3], dtype)])
    return gamma_from_draws(words[3:], shape, draws)


def chi_square(key, degrees_of_freedom):
    """One chi-square variate with (traced, real, >= 0) degrees of freedom."""
    return 2.0 * gamma(key, 0.5 * degrees_of_freedom)


def wishart_scatter(key, scale_cholesky, degrees_of_freedom):
    """The scatter matrix sum_j (x_j - xbar)(x_j - xbar)^T of a Gaussian sample.

    Draws W ~ Wishart_d(k, Sigma) with Sigma = L L^T and k = ``degrees_of_freedom`` (the
    sample size minus one) by Bartlett's decomposition: W = L A A^T L^T with A lower
    triangular, A_ii = sqrt(chi^2_{k - i}) and A_ij ~ N(0, 1) below the diagonal.
    Degrees of freedom below d give the singular scatter of a small sample.
    """
    dim = scale_cholesky.shape[-1]
    diag_key, off_key = jax.random.split(key)
    dofs = degrees_of_freedom - jnp.arange(dim, dtype=scale_cholesky.dtype)
    diagonal = jnp.sqrt(jax.vmap(chi_square)(jax.random.split(diag_key, dim), jnp.maximum(dofs, 0.0)))
    below = jnp.tril(jax.random.normal(off_key, (dim, dim), dtype=scale_cholesky.dtype), -1)
    # A column j is identically zero once k <= j: the sample spans only k directions.
    alive = (jnp.arange(dim) < degrees_of_freedom).astype(scale_cholesky.dtype)
    bartlett = (below + jnp.diag(diagonal)) * alive[None, :]
    factor = scale_cholesky @ bartlett
    return factor @ factor.T
