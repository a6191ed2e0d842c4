"""The Gaussian family: 1-D and d-dimensional with full covariance (paper section 4.2).

``fit`` is the sample mean and the sample covariance with ``ddof`` = 1 (the paper's
unbiased estimator, eq. 1) or 0 (the MLE, which the authors' notebook uses).
The exact sufficient-statistics sampler draws the sample mean ~ N(mu, Sigma / M) and the
scatter matrix ~ Wishart(M - 1, Sigma) (sigma^2 chi^2_{M-1} in one dimension), which are
independent (Cochran's theorem), so no sample is materialised.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> family = gaussian(dim=1, estimator="unbiased")
    >>> params = GaussianParams(jnp.zeros(1), jnp.eye(1))
    >>> data = family.sample(jax.random.key(0), params, 1000)
    >>> fitted = family.fit(jax.random.key(1), data, jnp.ones(1000))
    >>> fitted.cov.shape
    (1, 1)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr
from scipy import stats as scipy_stats

from .._random import WORDS_PER_DRAW, gamma_from_draws, key_from_words, normals_from_words, uniforms_from_words, wishart_scatter
from .._validation import ConfigError, require_choice, require_covariance, require_finite, require_int
from .base import Family, SufficientStatistics, float_row, pairwise_sum

__all__ = ["GaussianParams", "GaussianStats", "GaussianReference", "gaussian", "gaussian_reference", "ESTIMATORS"]

ESTIMATORS = {"unbiased": 1, "mle": 0}


class GaussianParams(NamedTuple):
    mean: jax.Array  # (d,)
    cov: jax.Array  # (d, d)


class GaussianStats(NamedTuple):
    count: jax.Array  # ()
    mean: jax.Array  # (d,)
    scatter: jax.Array  # (d, d): sum of (x - mean)(x - mean)^T


class GaussianReference(NamedTuple):
    """p_0 (or its moment-matched Gaussian) in the forms the metrics need."""

    mean: jax.Array
    cov: jax.Array
    cov_sqrt: jax.Array  # symmetric square root, for the Bures term
    cov_logdet: jax.Array
    lower_quantile: jax.Array  # 1-D: p_0's 1 % quantile
    upper_quantile: jax.Array  # 1-D: p_0's 99 % quantile


def gaussian_reference(mean, cov, lower_quantile=None, upper_quantile=None) -> GaussianReference:
    """Precompute p_0's constants on the host; quantiles default to the Gaussian ones."""
    mean = require_finite("p0 mean", mean).reshape(-1)
    cov = require_covariance("p0 covariance", cov, dim=mean.size)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    cov_sqrt = (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T
    sd = float(np.sqrt(cov[0, 0]))
    if lower_quantile is None:
        lower_quantile = mean[0] + sd * scipy_stats.norm.ppf(0.01)
    if upper_quantile is None:
        upper_quantile = mean[0] + sd * scipy_stats.norm.ppf(0.99)
    as_array = lambda value: jnp.asarray(value, dtype=jnp.result_type(float))
    return GaussianReference(
        as_array(mean), as_array(cov), as_array(cov_sqrt), as_array(np.sum(np.log(eigenvalues))),
        as_array(lower_quantile), as_array(upper_quantile),
    )


def _weighted_stats(data, weights) -> GaussianStats:
    """(count, mean, scatter) of the rows of ``data`` with 0/1 ``weights``. The sums run
    over the rows in a fixed order (pairwise_sum): a chain's statistics are the same bits
    whatever the chunk of chains it is vmapped in."""
    count = pairwise_sum(weights)
    mean = pairwise_sum(weights[:, None] * data) / count
    centred = data - mean
    if data.shape[-1] == 1:
        scatter = pairwise_sum(weights[:, None] * centred * centred).reshape(1, 1)
    else:
        scatter = (centred * weights[:, None]).T @ centred
    return GaussianStats(count, mean, scatter)


def _params_of_stats(stats, ddof) -> GaussianParams:
    return GaussianParams(stats.mean, stats.scatter / (stats.count - ddof))


def _fit(data, weights, ddof):
    return _params_of_stats(_weighted_stats(data, weights), ddof)


def _square_root(cov):
    """(F, eigenvalues, eigenvectors) with F F^T = cov, from a symmetric eigendecomposition
    with eigenvalues clipped at 0. Unlike a float32 Cholesky factor, which turns NaN once a
    collapsing chain's covariance is badly conditioned, it stays finite all the way to a
    point mass."""
    eigenvalues, eigenvectors = jnp.linalg.eigh(0.5 * (cov + cov.T))
    eigenvalues = jnp.maximum(eigenvalues, 0.0)
    return eigenvectors * jnp.sqrt(eigenvalues), eigenvalues, eigenvectors


def _sample(key, params, n):
    dim = params.mean.shape[-1]
    z = jax.random.normal(key, (n, dim), dtype=params.mean.dtype)
    if dim == 1:
        return params.mean + jnp.sqrt(params.cov[0, 0]) * z
    return params.mean + z @ _square_root(params.cov)[0].T


def _draw_stats(words, params, m):
    """Exact statistics of m samples from N(mean, cov), from ``WORDS_PER_DRAW`` random
    32-bit words (in d > 1 dimensions two of them seed a key for the Wishart draw)."""
    dim = params.mean.shape[-1]
    dtype = params.mean.dtype
    m = jnp.asarray(m, dtype=dtype)
    degrees = jnp.maximum(m - 1.0, 0.0)
    scale = 1.0 / jnp.sqrt(jnp.maximum(m, 1.0))
    if dim == 1:
        # one draw of four uniforms per chain and generation: per-chain key operations
        # cost far more than the arithmetic on CPU
        normals = normals_from_words(words[jnp.array([0, 3])], dtype)
        gamma_draws = jnp.stack([normals[0], *uniforms_from_words(words[1:3], dtype)])
        sd = jnp.sqrt(params.cov[0, 0])
        mean = params.mean + sd * scale * normals[1]
        # the rare rejected gamma attempts rehash two of the words
        scatter = params.cov[0, 0] * 2.0 * gamma_from_draws(words[:2], 0.5 * degrees, gamma_draws)
        scatter = scatter.reshape(1, 1)
    else:
        mean_key, scatter_key = jax.random.split(key_from_words(words[:2]))
        z = jax.random.normal(mean_key, (dim,), dtype=dtype)
        factor = _square_root(params.cov)[0]
        mean = params.mean + scale * (factor @ z)
        scatter = wishart_scatter(scatter_key, factor, degrees)
    return GaussianStats(m, mean, scatter)


def stats_of_samples(data) -> GaussianStats:
    """The exact statistics (count, mean, scatter) of an ``(n, d)`` sample: how a D_0 drawn
    from any p_0 enters the sufficient-statistics path (every later generation samples a
    Gaussian, whose statistics are drawn exactly without the samples).

    Examples:
        >>> import jax.numpy as jnp
        >>> stats = stats_of_samples(jnp.array([[1.0], [2.0], [6.0]]))
        >>> float(stats.count), float(stats.mean[0]), float(stats.scatter[0, 0])
        (3.0, 3.0, 14.0)
    """
    return _weighted_stats(data, jnp.ones(data.shape[0], data.dtype))  # every row counts once


def _merge_stats(a, b):
    count = a.count + b.count
    safe = jnp.maximum(count, 1.0)
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / safe)
    scatter = a.scatter + b.scatter + jnp.outer(delta, delta) * (a.count * b.count / safe)
    return GaussianStats(count, mean, scatter)


def _metrics(params, reference):
    delta = params.mean - reference.mean
    mean_error = jnp.sum(delta * delta)
    dim = params.mean.shape[-1]
    if dim == 1:
        variance = params.cov[0, 0]
        sigma = jnp.sqrt(variance)
        ref_variance = reference.cov[0, 0]
        ref_sigma = jnp.sqrt(ref_variance)
        # a point mass (the MLE fitted to one sample) is infinitely far from p_0 in KL and
        # carries tail mass only if it sits in a tail: limits, never 0/0
        degenerate = variance <= 0
        safe_sigma = jnp.where(degenerate, 1.0, sigma)
        kl = jnp.where(
            degenerate, jnp.inf,
            jnp.log(safe_sigma / ref_sigma) + (ref_variance + mean_error) / (2.0 * safe_sigma**2) - 0.5,
        )
        centre = params.mean[0]
        tail_mass = jnp.where(
            degenerate,
            ((centre < reference.lower_quantile) | (centre > reference.upper_quantile)).astype(sigma.dtype),
            ndtr((reference.lower_quantile - centre) / safe_sigma) + ndtr((centre - reference.upper_quantile) / safe_sigma),
        )
        return {
            "w2_risk": mean_error + (sigma - ref_sigma) ** 2,
            "mean_error": mean_error,
            "sigma": sigma,
            "sigma2": variance,
            "var_x": mean_error + variance,
            "kl": kl,
            "tail_mass": tail_mass,
        }
    trace = jnp.trace(params.cov)
    factor, eigenvalues, eigenvectors = _square_root(params.cov)
    # Sigma_0^1/2 Sigma_n Sigma_0^1/2 is built from the factor, so the two LAPACK calls
    # run one after the other: side by side inside the generation loop they made XLA:CPU
    # (jaxlib 0.10.2) spin forever.
    half = reference.cov_sqrt @ factor
    cross = jnp.sum(jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(half @ half.T), 0.0)))
    bures = jnp.maximum(jnp.trace(reference.cov) + trace - 2.0 * cross, 0.0)
    # a collapsed (numerically singular) covariance gives logdet -inf and KL +inf
    singular = jnp.any(eigenvalues <= 0)
    safe = jnp.where(eigenvalues > 0, eigenvalues, 1.0)
    logdet = jnp.where(singular, -jnp.inf, jnp.sum(jnp.log(safe)))
    rotated_delta = eigenvectors.T @ delta
    rotated_cov = eigenvectors.T @ reference.cov @ eigenvectors
    quadratic = jnp.sum(jnp.diagonal(rotated_cov) / safe) + jnp.sum(rotated_delta**2 / safe)
    kl = jnp.where(singular, jnp.inf, 0.5 * (quadratic - dim + logdet - reference.cov_logdet))
    return {
        "w2_risk": mean_error + bures,
        "mean_error": mean_error,
        "cov_trace": trace,
        "cov_logdet": logdet,
        "var_x": mean_error + trace,
        "kl": kl,
    }


METRICS_1D = ("w2_risk", "mean_error", "sigma", "sigma2", "var_x", "kl", "tail_mass")
METRICS_ND = ("w2_risk", "mean_error", "cov_trace", "cov_logdet", "var_x", "kl")


def metric_names(dim: int) -> tuple[str, ...]:
    return METRICS_1D if dim == 1 else METRICS_ND


def gaussian(dim: int = 1, estimator: str = "unbiased") -> Family:
    """The Gaussian family in ``dim`` dimensions with the ``unbiased`` or ``mle`` estimator."""
    dim = require_int("dim", dim, 1)
    ddof = ESTIMATORS[require_choice("estimator", estimator, tuple(ESTIMATORS))]

    def fit(key, data, weights):
        del key  # the Gaussian fit is deterministic
        return _fit(data, weights, ddof)

    def fit_stats(stats):
        return _params_of_stats(stats, ddof)

    return Family(
        name="gaussian",
        row=float_row(dim),
        fit=fit,
        sample=_sample,
        metrics=_metrics,
        sufficient=SufficientStatistics(_draw_stats, _merge_stats, fit_stats, WORDS_PER_DRAW),
    )


def minimum_samples(dim: int, estimator: str) -> int:
    """The smallest M the estimator accepts: 2 for the 1-D unbiased variance (it divides
    by M - 1), 1 for the 1-D MLE (M = 1 fits a point mass), d + 1 in d > 1 dimensions
    (fewer points give a singular covariance)."""
    if dim > 1:
        return dim + 1
    return 2 if estimator == "unbiased" else 1


def check_sample_sizes(sizes, dim: int, estimator: str, what: str = "samples") -> None:
    least = minimum_samples(dim, estimator)
    smallest = int(np.min(sizes)) if len(sizes) else least
    if smallest < least:
        if dim > 1:
            reason = f"a {dim}-dimensional covariance fitted to fewer points is singular"
        elif estimator == "unbiased":
            reason = "the unbiased estimator divides by M - 1"
        else:
            reason = "a fit needs at least one point"
        raise ConfigError(f"{what} must be >= {least} ({reason}); got M = {smallest}")
