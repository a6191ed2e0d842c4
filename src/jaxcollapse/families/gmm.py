"""Gaussian mixtures fitted by EM (paper section 5.1, Figures 7 and 13).

``fit`` runs a fixed number of EM iterations inside ``lax.scan``, so thousands of chains
run in lock step under ``vmap`` (no data-dependent loop). The iteration follows
scikit-learn's ``GaussianMixture`` step for step (E-step, then M-step with the
covariance floor ``reg_covar`` added to every diagonal and ``10 eps`` added to every
component's responsibility mass), so on the same data and initialisation the parameters
agree with it (tested). The mean log-likelihood reported with the parameters is the one
of the last E-step, as scikit-learn's ``lower_bound_``, and ``loglik_change`` its change
over the last iteration: a chain whose change is still large has not converged.

Initialisation of each generation's EM (``init``):

* ``"previous"``: start from the previous generation's parameters (generation 1, fitted
  to real data, starts with k-means; ``Family.refit``). Component labels then persist across
  generations, and EM starts next to its optimum, since the data were drawn from that
  model: few iterations suffice.
* ``"kmeans++"``: D^2 seeding of k centres, every point assigned to its nearest centre,
  one M-step. (scikit-learn's ``init_params="k-means++"`` differs: it gives
  responsibility only to the k seed points, so its start has the seeds as means and
  ``reg_covar`` covariances; its seeding also tries greedy local candidates.)
* ``"kmeans"``: k-means++ then ``kmeans_iterations`` Lloyd steps, the closest match to the
  authors' code, which made a new ``GaussianMixture`` (k-means initialisation) each
  generation. A fresh start can re-split a component that a warm start would keep
  collapsed, so the two choices age differently (docs/classical.md).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> p0 = gmm_params(jnp.array([0.5, 0.5]), jnp.array([[-3.0, 0.0], [3.0, 0.0]]), jnp.stack([jnp.eye(2)] * 2))
    >>> family = gmm(components=2, dim=2, iterations=30)
    >>> data = family.sample(jax.random.key(0), p0, 1000)
    >>> fitted = family.fit(jax.random.key(1), data, jnp.ones(1000))
    >>> [round(float(m)) for m in jnp.sort(fitted.means[:, 0])]
    [-3, 3]
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from .._counts import categorical
from .._validation import require_choice, require_int, require_positive
from .base import Family, float_row

__all__ = [
    "GMMParams", "GMMReference", "gmm", "gmm_params", "gmm_reference", "gaussian_overlap", "l2_distance",
    "mixture_log_density", "COVARIANCE_TYPES", "INITS",
]

COVARIANCE_TYPES = ("full", "diag", "spherical")
INITS = ("previous", "kmeans++", "kmeans")
_UNROLLED_DIM = 4  # below this, small-matrix algebra is written out: faster under vmap than LAPACK
_UNROLLED_TERMS = 64  # EM is written per component and coordinate while k d^2 stays below this


class GMMParams(NamedTuple):
    weights: jax.Array  # (k,)
    means: jax.Array  # (k, d)
    covs: jax.Array  # (k, d, d), full matrices whatever the covariance type
    cov_cholesky: jax.Array  # (k, d, d), lower factors of covs
    loglik: jax.Array  # (): mean log-likelihood of the training data at the last E-step
    loglik_change: jax.Array  # (): its change over the last EM iteration


class GMMReference(NamedTuple):
    """p_0 in the forms the metrics need."""

    params: GMMParams
    self_overlap: jax.Array  # integral of p_0^2 (computed once, in float64)
    heldout: jax.Array  # (H, d) real points, never used for fitting


def cholesky(a):
    """Lower Cholesky factors of a stack of symmetric positive-definite matrices.

    Written out for d <= 4: it vectorises across chains and components, where a LAPACK call
    per tiny matrix would not. A pivot that rounding makes non-positive is floored, so a
    collapsed covariance gives a tiny factor, never NaN."""
    d = a.shape[-1]
    if d > _UNROLLED_DIM:
        return jnp.linalg.cholesky(a)
    tiny = jnp.finfo(a.dtype).tiny
    factor = [[None] * d for _ in range(d)]
    for j in range(d):
        pivot = a[..., j, j] - sum((factor[j][p] ** 2 for p in range(j)), jnp.zeros_like(a[..., 0, 0]))
        factor[j][j] = jnp.sqrt(jnp.maximum(pivot, tiny))
        for i in range(j + 1, d):
            off = a[..., i, j] - sum((factor[i][p] * factor[j][p] for p in range(j)), jnp.zeros_like(a[..., 0, 0]))
            factor[i][j] = off / factor[j][j]
    zero = jnp.zeros_like(a[..., 0, 0])
    return jnp.stack([jnp.stack([factor[i][j] if j <= i else zero for j in range(d)], -1) for i in range(d)], -2)


def lower_inverse(factor):
    """Inverse of a stack of lower-triangular matrices (written out for d <= 4)."""
    d = factor.shape[-1]
    if d > _UNROLLED_DIM:
        eye = jnp.broadcast_to(jnp.eye(d, dtype=factor.dtype), factor.shape)
        return jax.scipy.linalg.solve_triangular(factor, eye, lower=True)
    inverse = [[None] * d for _ in range(d)]
    for i in range(d):
        inverse[i][i] = 1.0 / factor[..., i, i]
        for j in range(i - 1, -1, -1):
            total = sum(factor[..., i, p] * inverse[p][j] for p in range(j, i))
            inverse[i][j] = -total * inverse[i][i]
    zero = jnp.zeros_like(factor[..., 0, 0])
    return jnp.stack([jnp.stack([inverse[i][j] if j <= i else zero for j in range(d)], -1) for i in range(d)], -2)


def gmm_params(weights, means, covs) -> GMMParams:
    """Parameters of a mixture from its weights (k,), means (k, d) and covariances (k, d, d)."""
    weights = jnp.asarray(weights, jnp.result_type(float))
    covs = jnp.asarray(covs, weights.dtype)
    zero = jnp.zeros((), weights.dtype)
    return GMMParams(weights, jnp.asarray(means, weights.dtype), covs, cholesky(covs), zero, zero)


def _log_densities_of_centred(centred, cov_cholesky):
    """(k, n): log N(x_i; mu_k, Sigma_k) from the centred points x_i - mu_k, (k, d, n).

    Written as broadcasts and reductions over the small axes, with the points' axis last,
    instead of tiny matrix products: under vmap, XLA:CPU fuses them into passes over the
    points, where (n, d) x (d, d) products became a batch of tiny GEMM calls."""
    d = centred.shape[1]
    precision = lower_inverse(cov_cholesky)  # Sigma_k^-1 = P^T P with P = L^-1
    projected = jnp.sum(precision[:, :, :, None] * centred[:, None, :, :], axis=2)  # (k, d, n)
    log_det = jnp.sum(jnp.log(jnp.diagonal(cov_cholesky, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * jnp.sum(projected**2, axis=1) - log_det[:, None] - 0.5 * d * math.log(2 * math.pi)


def _centred(points_t, means):
    return points_t[None, :, :] - means[:, :, None]  # (k, d, n)


def mixture_log_density(params: GMMParams, points):
    """log p(x) of the mixture at ``points`` (n, d)."""
    centred = _centred(points.T, params.means)
    joint = _log_densities_of_centred(centred, params.cov_cholesky) + jnp.log(params.weights)[:, None]
    return logsumexp(joint, axis=0)


def _responsibilities(centred, weights, params):
    """Responsibilities (k, n) and the weighted mean log-likelihood; one exponential per
    point and component (the normaliser reuses them)."""
    joint = _log_densities_of_centred(centred, params.cov_cholesky) + jnp.log(params.weights)[:, None]
    peak = jnp.max(joint, axis=0)
    scaled = jnp.exp(joint - peak)
    total = jnp.sum(scaled, axis=0)
    loglik = jnp.sum(weights * (peak + jnp.log(total))) / jnp.sum(weights)
    return scaled / total, loglik


def _m_step(points_t, weights, resp, covariance_type, reg_covar):
    """scikit-learn's M-step with frequency weights on the points (k, n) responsibilities;
    covariances from centred points (two passes), which stays exact in float32 when a
    component collapses far from the origin."""
    dtype = points_t.dtype
    dim = points_t.shape[0]
    weighted = resp * weights[None, :]
    mass = jnp.sum(weighted, axis=-1) + 10 * jnp.finfo(dtype).eps
    means = jnp.sum(weighted[:, None, :] * points_t[None], axis=-1) / mass[:, None]  # (k, d)
    centred = _centred(points_t, means)
    eye = jnp.eye(dim, dtype=dtype)
    if covariance_type == "full":
        covs = jnp.sum(weighted[:, None, None, :] * centred[:, :, None, :] * centred[:, None, :, :], axis=-1)
        covs = covs / mass[:, None, None] + reg_covar * eye
    else:
        variances = jnp.sum(weighted[:, None, :] * centred**2, axis=-1) / mass[:, None] + reg_covar
        if covariance_type == "spherical":
            variances = jnp.broadcast_to(jnp.mean(variances, axis=-1, keepdims=True), variances.shape)
        covs = variances[:, :, None] * eye
    return means, covs, mass / jnp.sum(mass)


def _em_step_vectorised(points_t, weights, params, covariance_type, reg_covar):
    resp, loglik = _responsibilities(_centred(points_t, params.means), weights, params)
    means, covs, mixing = _m_step(points_t, weights, resp, covariance_type, reg_covar)
    return mixing, means, covs, loglik


def _em_step_unrolled(columns, weights, params, covariance_type, reg_covar):
    """The same EM step written per component and coordinate on (n,) columns: every
    operation is elementwise or a sum over the points, which XLA:CPU fuses into a few
    vectorised passes (2-3x faster under vmap than the (k, d, n) form for small k d^2)."""
    k, dim = params.means.shape
    dtype = columns[0].dtype
    precision = lower_inverse(params.cov_cholesky)
    offsets = (jnp.log(params.weights) - jnp.sum(jnp.log(jnp.diagonal(params.cov_cholesky, axis1=-2, axis2=-1)), -1)
               - 0.5 * dim * math.log(2 * math.pi))
    joint = []
    for c in range(k):
        diffs = [columns[i] - params.means[c, i] for i in range(dim)]
        squared = sum(sum(precision[c, e, i] * diffs[i] for i in range(e + 1)) ** 2 for e in range(dim))
        joint.append(offsets[c] - 0.5 * squared)
    peak = functools.reduce(jnp.maximum, joint)
    scaled = [jnp.exp(j - peak) for j in joint]
    total = sum(scaled)
    loglik = jnp.sum(weights * (peak + jnp.log(total))) / jnp.sum(weights)
    share = weights / total
    masses, means, covs = [], [], []
    for c in range(k):
        weighted = scaled[c] * share
        mass = jnp.sum(weighted) + 10 * jnp.finfo(dtype).eps
        mean = [jnp.sum(weighted * columns[i]) / mass for i in range(dim)]
        centred = [columns[i] - mean[i] for i in range(dim)]
        second = {(i, j): jnp.sum(weighted * centred[i] * centred[j]) / mass
                  for i in range(dim) for j in range(i + 1) if covariance_type == "full" or i == j}
        if covariance_type == "spherical":
            average = sum(second[(i, i)] for i in range(dim)) / dim
            second = {(i, i): average for i in range(dim)}
        zero = jnp.zeros((), dtype)
        covs.append(jnp.stack([jnp.stack([second.get((max(i, j), min(i, j)), zero) for j in range(dim)])
                               for i in range(dim)]))
        masses.append(mass)
        means.append(jnp.stack(mean))
    mass = jnp.stack(masses)
    covs = jnp.stack(covs) + reg_covar * jnp.eye(dim, dtype=dtype)
    return mass / jnp.sum(mass), jnp.stack(means), covs, loglik


def _em(data, weights, start: GMMParams, iterations, covariance_type, reg_covar) -> GMMParams:
    k, dim = start.means.shape
    if k * dim * dim <= _UNROLLED_TERMS:
        points, em_step = [data[:, i] for i in range(dim)], _em_step_unrolled
    else:
        points, em_step = data.T, _em_step_vectorised

    def iteration(carry, _):
        params, previous_loglik = carry
        mixing, means, covs, loglik = em_step(points, weights, params, covariance_type, reg_covar)
        params = params._replace(weights=mixing, means=means, covs=covs, cov_cholesky=cholesky(covs))
        return (params, loglik), loglik - previous_loglik

    initial = (start, jnp.asarray(-jnp.inf, data.dtype))
    (params, loglik), changes = jax.lax.scan(iteration, initial, length=iterations)
    return params._replace(loglik=loglik, loglik_change=changes[-1])


def _kmeans_plus_plus(key, data, weights, k):
    """k centres by D^2 seeding; points of zero weight are never picked."""
    keys = jax.random.split(key, k)
    first = categorical(keys[0], weights, 1)[0]
    centres = jnp.zeros((k, data.shape[-1]), data.dtype).at[0].set(data[first])
    closest = jnp.sum((data - data[first]) ** 2, axis=-1)
    for index in range(1, k):
        scores = weights * closest
        # a chain whose points all coincide has D^2 = 0 everywhere: fall back to the weights
        pick = categorical(keys[index], jnp.where(jnp.sum(scores) > 0, scores, weights), 1)[0]
        centres = centres.at[index].set(data[pick])
        closest = jnp.minimum(closest, jnp.sum((data - data[pick]) ** 2, axis=-1))
    return centres


def _nearest(data, centres):
    """(k, n) one-hot assignment of each point to its nearest centre."""
    k, dim = centres.shape
    if k * dim > _UNROLLED_TERMS:
        distances = jnp.sum((data.T[None, :, :] - centres[:, :, None]) ** 2, axis=1)
        return jax.nn.one_hot(jnp.argmin(distances, axis=0), k, dtype=data.dtype).T
    # per centre on (n,) columns, as the unrolled EM step
    distances = [sum((data[:, i] - centres[c, i]) ** 2 for i in range(dim)) for c in range(k)]
    best, nearest = distances[0], jnp.zeros(data.shape[0], jnp.int32)
    for c in range(1, k):
        closer = distances[c] < best
        best, nearest = jnp.where(closer, distances[c], best), jnp.where(closer, c, nearest)
    return jnp.stack([(nearest == c).astype(data.dtype) for c in range(k)])


def _lloyd(data, weights, centres, steps):
    def step(centres, _):
        assignment = _nearest(data, centres) * weights[None, :]
        mass = jnp.sum(assignment, axis=-1)
        moved = jnp.sum(assignment[:, None, :] * data.T[None], axis=-1) / jnp.maximum(mass, 1e-30)[:, None]
        return jnp.where(mass[:, None] > 0, moved, centres), None

    return jax.lax.scan(step, centres, length=steps)[0]


def gmm(
    components: int = 2,
    dim: int = 2,
    *,
    covariance_type: str = "full",
    iterations: int = 20,
    init: str = "previous",
    reg_covar: float = 1e-6,
    kmeans_iterations: int = 10,
) -> Family:
    """The GMM family: ``components`` Gaussians in ``dim`` dimensions, ``iterations`` EM
    steps per fit from the ``init`` start (see the module docstring)."""
    k = require_int("components", components, 1)
    dim = require_int("dim", dim, 1)
    require_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
    # the change of the log-likelihood over the last iteration needs two E-steps
    iterations = require_int("iterations", iterations, 2)
    require_choice("init", init, INITS)
    reg_covar = require_positive("reg_covar", reg_covar)
    kmeans_iterations = require_int("kmeans_iterations", kmeans_iterations, 0)

    def fresh_start(key, data, weights, template):
        centres = _kmeans_plus_plus(key, data, weights, k)
        if init != "kmeans++":
            centres = _lloyd(data, weights, centres, kmeans_iterations)
        means, covs, mixing = _m_step(data.T, weights, _nearest(data, centres), covariance_type, reg_covar)
        return template._replace(weights=mixing, means=means, covs=covs, cov_cholesky=cholesky(covs))

    def fit(key, data, weights):
        return _em(data, weights, fresh_start(key, data, weights, _placeholder(k, dim, data.dtype)),
                   iterations, covariance_type, reg_covar)

    def refit(key, data, weights, previous):
        del key  # a warm start is deterministic
        return _em(data, weights, previous, iterations, covariance_type, reg_covar)

    return Family(name="gmm", row=float_row(dim), fit=fit, sample=sample, metrics=metrics,
                  refit=refit if init == "previous" else None)


def _placeholder(k, dim, dtype) -> GMMParams:
    zero = jnp.zeros((), dtype)
    eye = jnp.broadcast_to(jnp.eye(dim, dtype=dtype), (k, dim, dim))
    return GMMParams(jnp.full((k,), 1.0 / k, dtype), jnp.zeros((k, dim), dtype), eye, eye, zero, zero)


@functools.partial(jax.jit, static_argnums=2)
def sample_with_components(key, params: GMMParams, n: int):
    """n draws and the component of each: a component by inverse CDF of the weights, then
    its Gaussian. Jitted: called eagerly (held-out sets, figures) it is one compiled
    program, not dozens of small ones."""
    component_key, normal_key = jax.random.split(key)
    dtype = params.means.dtype
    component = categorical(component_key, params.weights, n)
    dim = params.means.shape[-1]
    z = jax.random.normal(normal_key, (dim, n), dtype)
    if dim > _UNROLLED_DIM:
        return params.means[component] + jnp.einsum("nij,jn->ni", params.cov_cholesky[component], z), component
    # x_i = mu_ci + sum_j L_cij z_j as gathers from (k,) tables: no batch of tiny products
    rows = [params.means[component, i] + sum(params.cov_cholesky[component, i, j] * z[j] for j in range(i + 1))
            for i in range(dim)]
    return jnp.stack(rows, axis=-1), component


def sample(key, params: GMMParams, n: int):
    """n draws from the mixture."""
    return sample_with_components(key, params, n)[0]


def gaussian_overlap(a: GMMParams, b: GMMParams):
    """Integral of p_a p_b over R^d: sum_ij a_i b_j N(mu_i; nu_j, Sigma_i + Lambda_j)."""
    d = a.means.shape[-1]
    summed = a.covs[:, None] + b.covs[None, :]
    factor = cholesky(summed)
    delta = a.means[:, None, :] - b.means[None, :, :]
    solved = jnp.einsum("ijde,ije->ijd", lower_inverse(factor), delta)
    log_det = jnp.sum(jnp.log(jnp.diagonal(factor, axis1=-2, axis2=-1)), axis=-1)
    log_density = -0.5 * jnp.sum(solved**2, axis=-1) - log_det - 0.5 * d * math.log(2 * math.pi)
    return jnp.sum(a.weights[:, None] * b.weights[None, :] * jnp.exp(log_density))


def l2_distance(params: GMMParams, reference: GMMReference):
    """Integral of (p - p_0)^2, the distance of Figure 13, in closed form; >= 0."""
    squared = gaussian_overlap(params, params) + reference.self_overlap - 2.0 * gaussian_overlap(params, reference.params)
    return jnp.maximum(squared, 0.0)


def gmm_reference(p0: GMMParams, heldout) -> GMMReference:
    """Precompute the metrics' view of p_0; ``heldout`` are real points (H, d)."""
    self_overlap = _overlap_float64(jax.tree.map(lambda x: np.asarray(x, np.float64), p0))
    dtype = jnp.result_type(float)
    return GMMReference(jax.tree.map(lambda x: jnp.asarray(x), p0), jnp.asarray(self_overlap, dtype),
                        jnp.asarray(heldout, dtype))


def _overlap_float64(p: GMMParams) -> float:
    summed = p.covs[:, None] + p.covs[None, :]
    delta = p.means[:, None, :] - p.means[None, :, :]
    d = p.means.shape[-1]
    total = 0.0
    for i in range(len(p.weights)):
        for j in range(len(p.weights)):
            quad = delta[i, j] @ np.linalg.solve(summed[i, j], delta[i, j])
            log_density = -0.5 * quad - 0.5 * np.linalg.slogdet(summed[i, j])[1] - 0.5 * d * math.log(2 * math.pi)
            total += p.weights[i] * p.weights[j] * math.exp(log_density)
    return total


def metrics(params: GMMParams, reference: GMMReference, weight_threshold=0.01, variance_threshold=1e-3) -> dict:
    """Per-generation metrics; components are reported largest weight first, so the
    vectors mean the same whatever the labels."""
    order = jnp.argsort(-params.weights)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(params.cov_cholesky, axis1=-2, axis2=-1)), axis=-1)
    dim = params.means.shape[-1]
    collapsed = (params.weights < weight_threshold) | (log_det / dim < math.log(variance_threshold))
    mean = params.weights @ params.means
    spread = jnp.sum(params.weights * (jnp.trace(params.covs, axis1=-2, axis2=-1)
                                       + jnp.sum((params.means - mean) ** 2, axis=-1)))
    return {
        "l2_distance": l2_distance(params, reference),
        "heldout_loglik": jnp.mean(mixture_log_density(params, reference.heldout)),
        "train_loglik": params.loglik,
        "loglik_change": params.loglik_change,
        "collapsed": jnp.sum(collapsed).astype(params.weights.dtype),
        "variance": spread,
        "weight": params.weights[order],
        "cov_logdet": log_det[order],
    }


METRIC_NAMES = ("l2_distance", "heldout_loglik", "train_loglik", "loglik_change", "collapsed", "variance",
                "weight", "cov_logdet")
