"""The Gaussian kernel density estimator family (issue 4).

``fit`` keeps the data buffer itself: the points, their normalised weights (0 for masked
rows) and the kernel covariance H. The bandwidth is a fixed h > 0 (H = h^2 I) or a rule of
``scipy.stats.gaussian_kde``, followed exactly: H = factor^2 C, with C the weighted sample
covariance of ``np.cov(x, aweights=w, bias=False)``, n_eff = (sum w)^2 / sum w^2 and

    scott:      factor = n_eff^(-1 / (d + 4))
    silverman:  factor = (n_eff (d + 2) / 4)^(-1 / (d + 4)).

``sample`` picks a point with probability equal to its weight and adds N(0, H) noise, so
the model's mean is the weighted mean of the points and its covariance the weighted
*biased* covariance of the points plus H.

Degenerate data. A rule's H vanishes when every point coincides (a resampling regime can
fix one point: ``mix:0,1,0``), and is singular when the points span fewer than d
dimensions. The rules therefore use H + eps I with eps = sqrt(smallest normal number)
(1.1e-19 in float32, a kernel width of 3.3e-10 whose squared whitened distances stay
finite up to distances of ~6e9) plus, in d > 1 dimensions, 64 machine epsilons x
trace(H) / d (8e-6 relative in float32, 1.4e-14 in float64), the margin a Cholesky factor
of a near-singular matrix needs to stay finite. Nothing becomes NaN. A fixed bandwidth
uses H = h^2 I exactly.

Generation 0 is p_0 itself, not a KDE: its parameters (``initial_params``) carry
``is_p0 = True`` and its metrics are p_0's own values, computed on the host
(``variance`` = trace Cov p_0, ``mean_error`` = 0, ``w2`` = 0, ``heldout_nll`` = the mean of
-log p_0 over the held-out set, ``bandwidth`` = 0: p_0 has no kernel). Their points hold a
one-point KDE at p_0's mean with H = Cov p_0 (p_0 exactly when it is Gaussian), which only
gives the unused branch finite numbers.

Metrics (``metric_names(dim)``): ``variance`` = trace of the model covariance;
``mean_error`` = ||model mean - p_0 mean||^2; ``heldout_nll`` = mean over a fixed held-out
set of p_0 draws of -log KDE(x) (a logsumexp, stable in float32); ``bandwidth`` =
sqrt(trace(H) / d); in one dimension ``w2``, the 2-Wasserstein distance to p_0, computed
numerically (see :func:`wasserstein2`).

Examples:
    >>> import jax, jax.numpy as jnp
    >>> family = kde(dim=1, bandwidth="scott")
    >>> data = jnp.array([[0.0], [1.0], [2.0], [9.0]])
    >>> fitted = family.fit(None, data, jnp.array([1.0, 1.0, 1.0, 0.0]))  # the last row is masked
    >>> round(float(fitted.chol[0, 0] ** 2), 4)  # 3^(-2/5) * var([0, 1, 2], ddof=1)
    0.6444
    >>> family.sample(jax.random.key(0), fitted, 5).shape
    (5, 1)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp, ndtr, ndtri
from scipy import special as scipy_special
from scipy import stats as scipy_stats

from .._counts import categorical
from .._validation import ConfigError, require_int
from .base import Family, float_row

__all__ = [
    "KDEParams", "KDEReference", "kde", "kde_reference", "initial_params", "wasserstein2", "probit_quantiles",
    "log_density", "p0_quantiles", "heldout_sample", "metric_names",
    "parse_bandwidth", "minimum_samples", "BANDWIDTH_RULES", "W2_GRID", "W2_LEVELS", "W2_STRETCH", "W2_PAD",
]

BANDWIDTH_RULES = ("scott", "silverman")
W2_GRID = 256  # points of the CDF grid (cost O(R x W2_GRID) per chain and generation)
W2_LEVELS = 2048  # quantile levels of the W2 quadrature (host constants; O(W2_LEVELS log W2_GRID))
W2_STRETCH = 2.0  # t_j = W2_STRETCH * Phi^-1(v_j): finer levels in the tails, u down to 1.5e-12
W2_PAD = 8.0  # the grid spans the points +- W2_PAD kernel widths: F(lo) < Phi(-8) < u_min
_FLOOR_EPS = 64.0  # H floor of the rules, in machine epsilons relative to trace(H) / d
_LOG_2PI = math.log(2.0 * math.pi)
_HELDOUT_TAG = 0x4B4445  # "KDE": the held-out stream is not that of a plain seed


class KDEParams(NamedTuple):
    points: jax.Array  # (R, d): the data buffer D_n
    weights: jax.Array  # (R,): normalised weights, 0 for masked rows
    chol: jax.Array  # (d, d): lower Cholesky factor L of the kernel covariance H = L L^T
    inv_chol: jax.Array  # (d, d): L^-1, for density evaluation
    log_det: jax.Array  # (): log det H
    is_p0: jax.Array  # () bool: generation 0, p_0 itself (its metrics come from the reference)


class KDEReference(NamedTuple):
    """p_0 in the forms the metrics need (built on the host by :func:`kde_reference`)."""

    mean: jax.Array  # (d,)
    variance: jax.Array  # (): trace Cov p_0
    heldout: jax.Array  # (T, d): a fixed held-out sample of p_0
    heldout_nll: jax.Array  # (): mean -log p_0 over the held-out sample (generation 0)
    w2_nodes: jax.Array  # (J,): probit levels t_j, u_j = Phi(t_j) (empty in d > 1)
    w2_weights: jax.Array  # (J,): quadrature weights in u, summing to 1
    w2_quantiles: jax.Array  # (J,): p_0's quantiles at u_j


# ----------------------------------------------------------------------------- settings


def parse_bandwidth(value) -> float | str:
    """A positive finite number or a rule name (a numeric string is read as a number).

    Examples:
        >>> parse_bandwidth("0.25"), parse_bandwidth("scott")
        (0.25, 'scott')
    """
    if isinstance(value, str):
        if value in BANDWIDTH_RULES:
            return value
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(
                f"unknown bandwidth rule {value!r}; bandwidth must be a number > 0 or one of "
                f"{', '.join(map(repr, BANDWIDTH_RULES))}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(
            f"bandwidth must be a finite number > 0 or one of {', '.join(map(repr, BANDWIDTH_RULES))}; got {value!r}"
        )
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(f"bandwidth must be a finite number > 0; got {value!r}")
    return float(value)


def minimum_samples(dim: int, bandwidth) -> int:
    """The smallest M a bandwidth accepts: 1 for a fixed h (a one-point KDE is N(x, h^2 I)),
    2 for a rule in one dimension (it needs the sample variance), d + 1 in d dimensions
    (fewer points give a singular sample covariance, which scipy rejects)."""
    if not isinstance(bandwidth, str):
        return 1
    return max(2, dim + 1)


def metric_names(dim: int) -> tuple[str, ...]:
    base = ("variance", "mean_error", "heldout_nll", "bandwidth")
    return base + ("w2",) if dim == 1 else base


# ----------------------------------------------------------------------------- fit and sample


def _kernel_factor(weights, rule: str, dim: int):
    """scipy's bandwidth factor from the normalised weights."""
    n_eff = 1.0 / jnp.sum(weights**2)
    if rule == "scott":
        return n_eff ** (-1.0 / (dim + 4))
    return (n_eff * (dim + 2) / 4.0) ** (-1.0 / (dim + 4))


def _rule_kernel(points, weights, rule: str):
    """(chol, inv_chol, log_det) of H = factor^2 C + eps I (see the module docstring)."""
    dim = points.shape[-1]
    dtype = points.dtype
    mean = weights @ points
    centred = points - mean
    scatter = (centred * weights[:, None]).T @ centred  # weights sum to 1: biased covariance
    # np.cov(aweights=w, bias=False) divides by sum w - sum w^2 / sum w = 1 - sum w^2
    denominator = 1.0 - jnp.sum(weights**2)
    cov = scatter / jnp.where(denominator > 0, denominator, 1.0)  # one point: C = 0, floored below
    kernel = _kernel_factor(weights, rule, dim) ** 2 * cov
    finfo = jnp.finfo(dtype)
    floor = jnp.sqrt(jnp.asarray(finfo.tiny, dtype))
    if dim == 1:  # a sum of squares: never negative, so no relative floor; no LAPACK call
        sd = jnp.sqrt(kernel + floor)
        return sd, 1.0 / sd, 2.0 * jnp.log(sd[0, 0])
    # Cholesky needs a margin above the rounding errors of a (near-)singular covariance
    floor = floor + _FLOOR_EPS * finfo.eps * jnp.trace(kernel) / dim
    kernel = kernel + floor * jnp.eye(dim, dtype=dtype)
    chol = jnp.linalg.cholesky(0.5 * (kernel + kernel.T))
    inv_chol = jax.scipy.linalg.solve_triangular(chol, jnp.eye(dim, dtype=dtype), lower=True)
    return chol, inv_chol, 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def _fixed_kernel(h: float, dim: int, dtype):
    eye = jnp.eye(dim, dtype=dtype)
    return h * eye, eye / h, jnp.asarray(2.0 * dim * math.log(h), dtype)


def _sample(key, params, n):
    pick_key, noise_key = jax.random.split(key)
    index = categorical(pick_key, params.weights, n)
    noise = jax.random.normal(noise_key, (n, params.points.shape[-1]), params.points.dtype)
    return params.points[index] + noise @ params.chol.T


# ----------------------------------------------------------------------------- metrics


def _moments(params):
    """Model mean (d,) and trace of the model covariance."""
    mean = params.weights @ params.points
    centred = params.points - mean
    spread = jnp.sum(params.weights * jnp.sum(centred * centred, axis=-1))
    return mean, spread + jnp.sum(params.chol * params.chol)


def log_density(params, x):
    """log KDE(x) at the rows of ``x`` (shape (T, d)); a logsumexp over the points."""
    dim = params.points.shape[-1]
    # differences first, then whitened: |a|^2 + |b|^2 - 2 a.b would cancel catastrophically
    # in float32, and whitening before subtracting loses digits far from the origin
    difference = x[:, None, :] - params.points[None, :, :]
    whitened = difference * params.inv_chol[0, 0] if dim == 1 else difference @ params.inv_chol.T
    exponent = -0.5 * jnp.sum(whitened * whitened, axis=-1)
    return logsumexp(exponent, b=params.weights, axis=-1) - 0.5 * (params.log_det + dim * _LOG_2PI)


def wasserstein2(params, reference):
    """W2 between a 1-D KDE and p_0, W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du, numerically.

    1. The KDE's CDF F and survival S on ``W2_GRID`` points spanning the points +-
       ``W2_PAD`` kernel widths s (O(R x grid), one ``ndtr`` per pair); z = Phi^-1(F) where
       F < 1/2, -Phi^-1(S) elsewhere, so both tails keep full relative precision in
       float32; a running maximum makes z monotone.
    2. The KDE's quantile at u_j = Phi(t_j) by linear interpolation of the grid against z
       (outside the grid: slope s, the asymptotic slope of a Gaussian tail).
    3. W2^2 = sum_j w_j (quantile_j - p_0 quantile_j)^2: the midpoint rule in v for
       u = Phi(c Phi^-1(v)) with c = ``W2_STRETCH``, ``W2_LEVELS`` levels (1/1024 in u at
       the centre, u down to 1.5e-12 in the tails); p_0's quantiles are host constants.

    Cost per chain and generation: O(R x ``W2_GRID``) for the grid plus ``W2_LEVELS``
    binary searches in it (about 75 us per chain at R = 20 on a 2-core CPU).

    Accuracy against brentq quantiles integrated by ``scipy.integrate.quad`` (float64), 40
    points: 0.0 % to 0.1 % relative where the kernel is wider than the grid spacing
    (N(0, 1) p_0 with h = 0.3 or 0.01, a collapsed KDE, Student-t(3) p_0, a bimodal p_0
    with Scott's rule, Laplace p_0 with h = 0.05); up to about 1 % where p_0 and the KDE
    both have near-empty gaps narrower than the levels resolve (modes at +-4, h = 0.1:
    -0.2 % to -0.6 %). With a kernel much narrower than the grid spacing the interpolated
    quantiles can be off by up to a grid spacing. tests/test_kde.py asserts 0.5 % on four
    such cases.
    """
    gap = probit_quantiles(params, reference.w2_nodes) - reference.w2_quantiles
    return jnp.sqrt(jnp.sum(reference.w2_weights * gap * gap))


def probit_quantiles(params, t):
    """Quantiles of a 1-D KDE at the levels u = Phi(t) (steps 1 and 2 of
    :func:`wasserstein2`); ``t`` sorted.

    Examples:
        >>> import jax.numpy as jnp
        >>> one_point = kde(1, 0.5).fit(None, jnp.array([[1.0]]), jnp.ones(1))
        >>> [round(float(q), 3) for q in probit_quantiles(one_point, jnp.array([-1.0, 0.0, 6.0]))]  # 1 + 0.5 t
        [0.5, 1.0, 4.0]
    """
    x = params.points[:, 0]
    weights = params.weights
    s = params.chol[0, 0]
    valid = weights > 0
    lo = jnp.min(jnp.where(valid, x, jnp.inf)) - W2_PAD * s
    hi = jnp.max(jnp.where(valid, x, -jnp.inf)) + W2_PAD * s
    grid = lo + (hi - lo) * jnp.linspace(0.0, 1.0, W2_GRID, dtype=x.dtype)
    a = (grid[:, None] - x[None, :]) / s
    tail = ndtr(-jnp.abs(a))  # the smaller of Phi(a), Phi(-a), accurate in either tail
    # F and S each from the small side: 1 - (1 - tail) would lose the upper tail
    cdf = jnp.where(a < 0, tail, 1.0 - tail) @ weights
    survival = jnp.where(a < 0, 1.0 - tail, tail) @ weights
    smallest = jnp.asarray(1e-30, x.dtype)
    z = jnp.where(cdf < 0.5, ndtri(jnp.maximum(cdf, smallest)), -ndtri(jnp.maximum(survival, smallest)))
    z = jax.lax.cummax(z)
    quantile = jnp.interp(t, z, grid)
    # beyond the grid (never with the W2 levels: z(lo) < -8 < t_min) extend with slope s
    quantile = jnp.where(t < z[0], grid[0] + (t - z[0]) * s, quantile)
    return jnp.where(t > z[-1], grid[-1] + (t - z[-1]) * s, quantile)


def _metrics(params, reference):
    dim = params.points.shape[-1]
    mean, variance = _moments(params)
    delta = mean - reference.mean
    nll = -jnp.mean(log_density(params, reference.heldout))
    values = {
        "variance": variance,
        "mean_error": jnp.sum(delta * delta),
        "heldout_nll": nll,
        "bandwidth": jnp.sqrt(jnp.sum(params.chol * params.chol) / dim),
    }
    p0_values = {
        "variance": reference.variance,
        "mean_error": jnp.zeros((), variance.dtype),
        "heldout_nll": reference.heldout_nll,
        "bandwidth": jnp.zeros((), variance.dtype),
    }
    if dim == 1:
        values["w2"] = wasserstein2(params, reference)
        p0_values["w2"] = jnp.zeros((), variance.dtype)
    return {name: jnp.where(params.is_p0, p0_values[name], value).astype(variance.dtype)
            for name, value in values.items()}


# ----------------------------------------------------------------------------- the family


def kde(dim: int = 1, bandwidth: float | str = "scott") -> Family:
    """The Gaussian KDE family in ``dim`` dimensions; ``bandwidth`` is a fixed h > 0
    (H = h^2 I) or ``"scott"`` / ``"silverman"`` (scipy.stats.gaussian_kde's rules)."""
    dim = require_int("dim", dim, 1)
    bandwidth = parse_bandwidth(bandwidth)

    def fit(key, data, weights):
        del key  # the fit is deterministic
        if data.shape[-1] != dim:
            raise ConfigError(f"data must have {dim} columns (dim); got shape {data.shape}")
        weights = weights.astype(data.dtype)
        normalised = weights / jnp.sum(weights)
        if isinstance(bandwidth, str):
            chol, inv_chol, log_det = _rule_kernel(data, normalised, bandwidth)
        else:
            chol, inv_chol, log_det = _fixed_kernel(bandwidth, dim, data.dtype)
        return KDEParams(data, normalised, chol, inv_chol, log_det, jnp.zeros((), bool))

    return Family(name="kde", row=float_row(dim), fit=fit, sample=_sample, metrics=_metrics)


# ----------------------------------------------------------------------------- p_0 on the host


def _quadrature_levels(levels: int = W2_LEVELS, stretch: float = W2_STRETCH):
    """Nodes t_j and weights w_j of the midpoint rule in v for u = Phi(c Phi^-1(v)):
    du = c phi(t) / phi(t / c) dv; the weights are renormalised to sum exactly to 1."""
    v = (np.arange(levels) + 0.5) / levels
    nodes = stretch * scipy_special.ndtri(v)
    weights = stretch * np.exp(-0.5 * nodes**2 * (1.0 - 1.0 / stretch**2)) / levels
    return nodes, weights / weights.sum()


def _mixture_quantiles(weights, means, sds, nodes):
    """Quantiles of a 1-D normal mixture at u = Phi(t): bisection on log F (t < 0) or
    log S (t >= 0), so the extreme levels keep full precision."""
    weights, means, sds = (np.asarray(v, np.float64) for v in (weights, means, sds))
    lower = np.full(nodes.shape, float(np.min(means - 60.0 * sds)))
    upper = np.full(nodes.shape, float(np.max(means + 60.0 * sds)))
    low_half = nodes < 0
    target = np.where(low_half, scipy_special.log_ndtr(nodes), scipy_special.log_ndtr(-nodes))
    for _ in range(80):  # 80 halvings take any bracket narrower than 1e10 below 1e-13
        middle = 0.5 * (lower + upper)
        a = (middle[:, None] - means) / sds
        log_cdf = scipy_special.logsumexp(scipy_special.log_ndtr(a), b=weights, axis=-1)
        log_sf = scipy_special.logsumexp(scipy_special.log_ndtr(-a), b=weights, axis=-1)
        too_low = np.where(low_half, log_cdf < target, log_sf > target)
        lower = np.where(too_low, middle, lower)
        upper = np.where(too_low, upper, middle)
    return 0.5 * (lower + upper)


def p0_quantiles(initial, nodes) -> np.ndarray:
    """p_0's quantiles at u = Phi(t) for each node t (1-D p_0), in float64: exact for a
    normal, scipy's ppf / isf (the upper half through the survival function) for Student-t
    and Laplace, bisection for a normal mixture; a generic numpyro p_0 uses its ``icdf`` in
    float64 where it has one, else the empirical quantiles of 10^6 draws (approximate)."""
    nodes = np.asarray(nodes, np.float64)
    kind, params = initial.kind, initial.params
    if kind == "normal":
        return float(initial.mean[0]) + math.sqrt(float(initial.cov[0, 0])) * nodes
    if kind in ("student-t", "laplace"):
        frozen = (scipy_stats.t(params["df"], params["loc"], params["scale"]) if kind == "student-t"
                  else scipy_stats.laplace(params["loc"], params["scale"]))
        low = nodes < 0
        return np.where(low, frozen.ppf(scipy_special.ndtr(np.where(low, nodes, 0.0))),
                        frozen.isf(scipy_special.ndtr(-np.where(low, 0.0, nodes))))
    if kind == "mixture":
        return _mixture_quantiles(params["weights"], params["means"], params["sds"], nodes)
    distribution = initial.distribution
    levels = scipy_special.ndtr(nodes)
    try:
        with jax.enable_x64(True):  # float32 would round the upper levels (1 - 1e-12) to 1
            quantiles = np.asarray(distribution.icdf(jnp.asarray(levels, jnp.float64)), np.float64).reshape(-1)
    except (NotImplementedError, AttributeError):
        quantiles = np.full(nodes.shape, np.nan)
    missing = ~np.isfinite(quantiles)
    if np.any(missing):
        draws = np.asarray(distribution.sample(jax.random.key(0), (1_000_000,)), np.float64).reshape(-1)
        quantiles[missing] = np.quantile(draws, levels[missing])
    return quantiles


def _p0_log_density(initial, x: np.ndarray) -> np.ndarray:
    """log p_0 at the rows of ``x``, in float64 (scipy) for the named kinds."""
    kind, params = initial.kind, initial.params
    if kind == "normal":
        return scipy_stats.multivariate_normal(initial.mean, initial.cov).logpdf(x).reshape(-1)
    values = x.reshape(-1)
    if kind == "student-t":
        return scipy_stats.t(params["df"], params["loc"], params["scale"]).logpdf(values)
    if kind == "laplace":
        return scipy_stats.laplace(params["loc"], params["scale"]).logpdf(values)
    if kind == "mixture":
        components = scipy_stats.norm(np.asarray(params["means"]), np.asarray(params["sds"])).logpdf(values[:, None])
        return scipy_special.logsumexp(components, b=np.asarray(params["weights"]), axis=-1)
    log_prob = initial.distribution.log_prob(jnp.asarray(values if initial.dim == 1 else x))
    return np.asarray(log_prob, np.float64).reshape(-1)


def heldout_sample(initial, heldout: int, seed: int) -> np.ndarray:
    """The fixed held-out sample of p_0: ``heldout`` draws under ``seed``, shape (T, d),
    drawn on the host in float64 by numpy (a generic numpyro p_0 by its own sampler)."""
    rng = np.random.default_rng([seed, _HELDOUT_TAG])
    kind, params = initial.kind, initial.params
    if kind == "normal":
        return initial.mean + rng.standard_normal((heldout, initial.dim)) @ np.linalg.cholesky(initial.cov).T
    if kind == "student-t":
        draws = params["loc"] + params["scale"] * rng.standard_t(params["df"], heldout)
    elif kind == "laplace":
        draws = rng.laplace(params["loc"], params["scale"], heldout)
    elif kind == "mixture":
        component = rng.choice(len(params["weights"]), size=heldout, p=np.asarray(params["weights"]))
        draws = np.asarray(params["means"])[component] + np.asarray(params["sds"])[component] * rng.standard_normal(heldout)
    else:
        key = jax.random.fold_in(jax.random.key(seed), _HELDOUT_TAG)
        return np.asarray(initial.sampler(initial.dim)(key, heldout), np.float64)
    return draws.reshape(heldout, 1)


def kde_reference(initial, heldout: int = 256, heldout_seed: int = 0) -> KDEReference:
    """Precompute p_0's constants on the host: mean, trace of the covariance, the held-out
    sample and p_0's own mean negative log density on it, and (1-D) p_0's quantiles at the
    W2 quadrature levels."""
    heldout = require_int("heldout", heldout, 1)
    heldout_seed = require_int("heldout_seed", heldout_seed, 0)
    points = heldout_sample(initial, heldout, heldout_seed)
    nll = -float(np.mean(_p0_log_density(initial, points)))
    if initial.dim == 1:
        nodes, weights = _quadrature_levels()
        quantiles = p0_quantiles(initial, nodes)
    else:
        nodes = weights = quantiles = np.zeros(0)
    as_array = lambda value: jnp.asarray(value, dtype=jnp.result_type(float))
    return KDEReference(
        as_array(initial.mean), as_array(np.trace(initial.cov)), as_array(points), as_array(nll),
        as_array(nodes), as_array(weights), as_array(quantiles),
    )


def initial_params(initial, rows: int) -> KDEParams:
    """Generation 0's parameters for a fit buffer of ``rows`` rows: ``is_p0`` set, one point
    at p_0's mean with H = Cov p_0 (see the module docstring)."""
    rows = require_int("rows", rows, 1)
    dim = initial.dim
    dtype = jnp.result_type(float)
    points = np.zeros((rows, dim))
    points[0] = initial.mean
    weights = np.zeros(rows)
    weights[0] = 1.0
    chol = np.linalg.cholesky(initial.cov)
    inv_chol = np.linalg.inv(chol)
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol)))
    as_array = lambda value: jnp.asarray(value, dtype)
    return KDEParams(as_array(points), as_array(weights), as_array(chol), as_array(inv_chol),
                     as_array(log_det), jnp.ones((), bool))


def check_sample_sizes(sizes, dim: int, bandwidth, what: str = "samples") -> None:
    least = minimum_samples(dim, bandwidth)
    smallest = int(np.min(sizes)) if len(sizes) else least
    if smallest < least:
        if dim == 1:
            reason = f"the {bandwidth} rule needs the sample variance of at least 2 points"
        else:
            reason = f"the {bandwidth} rule needs a non-singular {dim}-dimensional sample covariance (d + 1 points)"
        raise ConfigError(f"{what} must be >= {least} ({reason}); got M = {smallest}")

