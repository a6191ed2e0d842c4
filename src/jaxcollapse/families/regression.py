"""The linear-regression family: ordinary least squares on a fixed design.

A model is a weight vector w (d,); its data are labels y = X w + sigma eps of a design X
(T rows, d features) with eps ~ N(0, I_T). The fit is the least-squares solution from the
moment X^T y and the lower Cholesky factor L of X^T X = L L^T (two triangular solves);
the fit's noise (X^T X)^{-1} X^T eps has the exact law L^{-T} z, z ~ N(0, I_d)
(:func:`ols_noise`), the shortcut the regression study's sufficient path takes. Metrics:
``test_error`` = ||w - w*||^2 (the excess error at a test point x ~ N(0, I_d)),
``weight_norm`` = ||w||^2 and ``train_error`` = ||X (w - w*)||^2 / T.

The regression study (:mod:`jaxcollapse.studies.regression`) keeps X fixed along a chain
and builds its chains from these pieces. :func:`regression` is the same family as a
:class:`~jaxcollapse.families.Family` for one shared design, whose rows are the pairs
(x, y): weighted least squares, so every data policy applies to it.

Examples:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> design = np.random.default_rng(0).standard_normal((50, 2))
    >>> family = regression(design, noise=0.1)
    >>> data = family.sample(jax.random.key(0), jnp.array([1.0, -1.0]), 50)
    >>> data.shape, [round(float(w), 1) for w in family.fit(jax.random.key(1), data, jnp.ones(50))]
    ((50, 3), [1.0, -1.0])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular

from .._validation import ConfigError, require_positive
from .base import Family, float_row

__all__ = [
    "RegressionParams", "METRICS", "regression", "gaussian_design", "sample_labels", "least_squares", "ols_noise",
    "metrics", "condition",
]

METRICS = ("test_error", "weight_norm", "train_error")


class RegressionParams(NamedTuple):
    """One generation of a chain: ``weights`` w_n (d,) and, for a per-chain design, the
    lower Cholesky factor L (d, d) of X^T X, drawn at generation 0 and carried unchanged
    (zeros before it is drawn); ``None`` for a shared design, whose factor the program
    closes over instead of copying it into every chain."""

    weights: Any
    gram_cholesky: Any = None


def gaussian_design(key, samples: int, dim: int, dtype):
    """A design X (samples, dim) with i.i.d. N(0, 1) entries and the lower Cholesky
    factor of X^T X."""
    design = jax.random.normal(key, (samples, dim), dtype)
    return design, jnp.linalg.cholesky(design.T @ design)


def sample_labels(key, design, weights, noise: float, dtype):
    """The labels y = X w + sigma eps of the design X, eps ~ N(0, I_T)."""
    return design @ weights + noise * jax.random.normal(key, (design.shape[0],), dtype)


def least_squares(cholesky, moment):
    """The least-squares weights (X^T X)^{-1} X^T y from ``moment`` = X^T y and the lower
    Cholesky factor of X^T X."""
    return cho_solve((cholesky, True), moment)


def ols_noise(cholesky, z):
    """L^{-T} z: with z ~ N(0, I_d) it has the law N(0, (X^T X)^{-1}) of the least-squares
    fit's noise (X^T X)^{-1} X^T eps."""
    return solve_triangular(cholesky, z, lower=True, trans="T")


def metrics(weights, cholesky, weights_star, samples: int) -> dict:
    """``test_error``, ``weight_norm`` and ``train_error`` of ``weights`` against w*
    (``cholesky``: the lower factor of X^T X; ``samples``: T)."""
    error = weights - weights_star
    fitted = cholesky.T @ error  # ||L^T e||^2 = e^T X^T X e = ||X e||^2, in O(d^2)
    return {
        "test_error": error @ error,
        "weight_norm": weights @ weights,
        "train_error": fitted @ fitted / samples,
    }


def condition(design: np.ndarray) -> float:
    """cond(X^T X) of a design (float64; inf when singular)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(np.linalg.cond(design.T @ design))
    return value if np.isfinite(value) else float("inf")


def regression(design, noise: float = 1.0) -> Family:
    """Least squares on one shared design X (T, d) as a :class:`Family`.

    A row is a pair (x, y), d + 1 floats. ``sample(key, w, n)`` labels the design's rows
    (n = T, or a multiple of T: the design repeated); ``fit(key, data, weights)`` is the
    weighted least-squares fit (frequency weights; 0 masks a padded slot), so the pooled
    blocks of an accumulating chain give the stacked fit. ``metrics(w, w_star)`` are the
    three metrics of the design."""
    design = np.asarray(design, np.float64)
    if design.ndim != 2 or design.shape[0] < design.shape[1]:
        raise ConfigError(f"design must be a (T, d) matrix with T >= d; got shape {design.shape}")
    noise = require_positive("noise sigma", noise)
    samples, dim = design.shape
    dtype = jnp.result_type(float)
    rows = jnp.asarray(design, dtype)
    cholesky = jnp.asarray(np.linalg.cholesky(design.T @ design), dtype)

    def sample(key, weights, n):
        if n % samples:
            raise ConfigError(f"a fixed design of T = {samples} rows labels n = T k rows; got n = {n}")
        repeated = jnp.tile(rows, (n // samples, 1))
        return jnp.concatenate([repeated, sample_labels(key, repeated, weights, noise, dtype)[:, None]], axis=1)

    def fit(key, data, weights):
        x, y = data[:, :dim], data[:, dim]
        gram = (x * weights[:, None]).T @ x
        return least_squares(jnp.linalg.cholesky(gram), x.T @ (weights * y))

    def family_metrics(weights, weights_star):
        return metrics(weights, cholesky, weights_star, samples)

    return Family(name="regression", row=float_row(dim + 1), fit=fit, sample=sample, metrics=family_metrics)
