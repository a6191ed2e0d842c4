"""The exact gamma, chi-square and Wishart samplers against their distributions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxcollapse._random import chi_square, gamma, gamma_from_draws, wishart_scatter
from conftest import assert_z


def _draws(shape, count, seed=0):
    keys = jax.random.split(jax.random.key(seed), count)
    return np.asarray(jax.jit(jax.vmap(gamma, (0, None)))(keys, shape), np.float64)


@pytest.mark.parametrize("shape", [0.3, 0.5, 1.0, 4.5, 49.5, 499.5, 5e5])
def test_gamma_matches_its_distribution(shape):
    draws = _draws(shape, 100_000, seed=int(shape * 10) % 1000)
    assert np.all(draws > 0) and np.all(np.isfinite(draws))
    # mean and variance within 5 standard errors, and a Kolmogorov-Smirnov test
    assert_z(draws.mean(), draws.std() / np.sqrt(draws.size), shape, "gamma mean")
    centred = (draws - shape) ** 2
    assert_z(centred.mean(), centred.std() / np.sqrt(draws.size), shape, "gamma variance")
    assert stats.kstest(draws, stats.gamma(shape).cdf).pvalue > 1e-4


def test_gamma_shape_zero_and_batch_independence():
    key = jax.random.key(3)
    single = jax.jit(gamma)
    assert float(single(key, 0.0)) == 0.0
    keys = jax.random.split(key, 256)
    batched = jax.jit(jax.vmap(gamma, (0, None)))
    # each lane keeps its value when the rest of the batch (and its while loop) changes;
    # batches are whole blocks of 16 lanes, as the engine runs them
    np.testing.assert_array_equal(np.asarray(batched(keys[:32], 2.0)), np.asarray(batched(keys, 2.0)[:32]))
    np.testing.assert_allclose(float(single(keys[3], 2.0)), float(batched(keys, 2.0)[3]), rtol=1e-6)


def test_retried_lanes_follow_the_distribution_and_ignore_the_batch():
    """A first attempt of normal -100 is always rejected: every lane comes from the retry
    windows (a third of the lanes here, many windows), and must still be Gamma(2.5) and
    keep its bits whatever batch it is drawn in."""
    count = 30_000
    seeds = jax.random.bits(jax.random.key(8), (count, 2))
    draws = np.array(jax.random.uniform(jax.random.key(9), (count, 3), minval=0.01, maxval=0.99))
    draws[::3, 0] = -100.0
    batched = jax.jit(jax.vmap(lambda seed, lane: gamma_from_draws(seed, 2.5, lane)))
    values = np.asarray(batched(seeds, jnp.asarray(draws)))
    retried = values[::3].astype(np.float64)
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert stats.kstest(retried, stats.gamma(2.5).cdf).pvalue > 1e-4
    np.testing.assert_array_equal(np.asarray(batched(seeds[:48], jnp.asarray(draws[:48]))), values[:48])
    # a batch that is not whole blocks of 16 lanes is padded for the retry windows
    ragged = np.asarray(batched(seeds[:37], jnp.asarray(draws[:37])))
    np.testing.assert_allclose(ragged, values[:37], rtol=1e-5)


def test_chi_square_mean():
    keys = jax.random.split(jax.random.key(5), 50_000)
    draws = np.asarray(jax.jit(jax.vmap(chi_square, (0, None)))(keys, 9.0), np.float64)
    assert_z(draws.mean(), draws.std() / np.sqrt(draws.size), 9.0, "chi-square mean")


def test_wishart_scatter_moments():
    cov = np.array([[2.0, 0.6, 0.1], [0.6, 1.0, -0.3], [0.1, -0.3, 0.5]])
    chol = jnp.asarray(np.linalg.cholesky(cov), jnp.float32)
    k, n = 7, 40_000
    keys = jax.random.split(jax.random.key(11), n)
    draws = np.asarray(jax.jit(jax.vmap(wishart_scatter, (0, None, None)))(keys, chol, float(k)), np.float64)
    # E W = k Sigma;  Var W_ij = k (Sigma_ij^2 + Sigma_ii Sigma_jj)
    expected_var = k * (cov**2 + np.outer(np.diag(cov), np.diag(cov)))
    assert_z(draws.mean(0), np.sqrt(expected_var / n), k * cov, "Wishart mean")
    centred = (draws - draws.mean(0)) ** 2
    assert_z(centred.mean(0), centred.std(0) / np.sqrt(n), expected_var, "Wishart variance")
    np.testing.assert_allclose(draws, np.swapaxes(draws, 1, 2), atol=1e-5)


def test_words_never_give_an_infinite_normal_or_a_closed_uniform():
    """A float32 rounding once mapped the largest word to v = 1 and erfinv(1) = inf
    (one chain in 2*10^7 draws turned infinite); the extremes are now exact."""
    from jaxcollapse._random import normals_from_words, uniforms_from_words

    extremes = jnp.array([0, 1, 255, 511, 2**31, 2**32 - 512, 2**32 - 257, 2**32 - 1], dtype=jnp.uint32)
    for dtype in (jnp.float32,):
        normals = np.asarray(normals_from_words(extremes, dtype))
        uniforms = np.asarray(uniforms_from_words(extremes, dtype))
        assert np.all(np.isfinite(normals)) and np.all(np.abs(normals) < 5.5)
        assert np.all(uniforms > 0) and np.all(uniforms < 1)
        np.testing.assert_allclose(normals[0], -normals[-1], rtol=1e-6)  # symmetric
    words = jax.random.bits(jax.random.key(1), (200_000,))
    z = np.asarray(normals_from_words(words, jnp.float32), np.float64)
    assert_z(z.mean(), z.std() / np.sqrt(z.size), 0.0, "normal mean")
    assert stats.kstest(z, "norm").pvalue > 1e-4


def test_fused_bernoulli_is_threefry_of_the_element_index():
    from jax.extend.random import threefry_2x32

    from jaxcollapse._random import fused_bernoulli

    key = jax.random.fold_in(jax.random.key(3), 7)
    shape = (3, 5, 7)
    draws = fused_bernoulli(key, 0.9, shape)
    counter = jnp.arange(105, dtype=jnp.uint32)
    words = threefry_2x32(jax.random.key_data(key), jnp.concatenate([counter, jnp.zeros(105, jnp.uint32)]))[:105]
    np.testing.assert_array_equal(draws, (words < jnp.uint32(round(0.9 * 2**32))).reshape(shape))
    np.testing.assert_array_equal(jax.jit(fused_bernoulli, static_argnums=(1, 2))(key, 0.9, shape), draws)
    assert bool(jnp.all(fused_bernoulli(key, 1.0, shape))) and not bool(jnp.any(fused_bernoulli(key, 0.0, shape)))


@pytest.mark.parametrize("p", [0.9, 0.5, 0.01])
def test_fused_bernoulli_frequencies_and_independence(p):
    from jaxcollapse._random import fused_bernoulli

    n = 1 << 20
    first = np.asarray(fused_bernoulli(jax.random.key(0), p, (256, n // 256)), np.float64).ravel()
    other = np.asarray(fused_bernoulli(jax.random.key(1), p, (n,)), np.float64)
    sd = np.sqrt(p * (1 - p))
    assert abs(first.mean() - p) < 5 * sd / np.sqrt(n)
    # correlations with the next element, the next row and another key: zero within 5 standard errors
    for a, b in ((first[:-1], first[1:]), (first[:-4096], first[4096:]), (first, other)):
        r = np.corrcoef(a, b)[0, 1]
        assert abs(r) < 5 / np.sqrt(len(a)), r
