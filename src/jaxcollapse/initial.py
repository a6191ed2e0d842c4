"""The original distribution p_0.

The sufficient-statistics path needs a Gaussian p_0. The data path takes any numpyro
distribution, so the functional approximation error of fitting a Gaussian to, say,
heavy-tailed or bimodal data can be studied alongside the statistical error. Metrics are
then measured against the moment-matched Gaussian (what an infinite sample would fit,
F_theta(p_0)), and the tail mass against p_0's own 1 % and 99 % quantiles.

Examples:
    >>> p0 = student_t_initial(df=5.0)
    >>> round(float(p0.cov[0, 0]), 4)  # df / (df - 2)
    1.6667
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats

from ._validation import (
    ConfigError, require_covariance, require_finite, require_int, require_location, require_positive,
    require_memory, require_proportions, require_scale,
)

__all__ = [
    "InitialDistribution", "normal_initial", "student_t_initial", "laplace_initial",
    "mixture_initial", "numpyro_initial", "parse_initial",
]


@dataclass(frozen=True, eq=False)
class InitialDistribution:
    kind: str
    params: dict
    mean: np.ndarray
    cov: np.ndarray
    quantiles: tuple[float | None, float | None] = (None, None)
    distribution: Any = field(default=None, repr=False)  # a numpyro distribution (non-normal kinds)

    def __eq__(self, other):
        return isinstance(other, InitialDistribution) and self.to_json() == other.to_json()

    def __hash__(self):
        return hash(repr(self.to_json()))

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    @property
    def is_gaussian(self) -> bool:
        return self.kind == "normal"

    def sampler(self, dim: int):
        """``sample(key, n) -> (n, dim)`` draws from p_0."""
        if self.is_gaussian:
            mean = jnp.asarray(self.mean, jnp.result_type(float))
            chol = jnp.asarray(np.linalg.cholesky(self.cov), jnp.result_type(float))

            def sample(key, n):
                return mean + jax.random.normal(key, (n, dim), mean.dtype) @ chol.T

            return sample
        distribution = self.distribution

        def sample(key, n):
            return distribution.sample(key, (n,)).reshape(n, dim).astype(jnp.result_type(float))

        return sample

    def describe(self) -> str:
        if self.kind == "normal" and self.dim == 1:
            return f"N({self.mean[0]:g}, {self.cov[0, 0]:g})"
        if self.kind == "normal":
            return f"N(mean, cov) in {self.dim} dimensions"
        if self.kind == "numpyro":
            return f"numpyro {self.params.get('class', type(self.distribution).__name__)}"
        return f"{self.kind}({', '.join(f'{k}={v}' for k, v in self.params.items())})"

    def to_json(self) -> dict:
        if self.kind == "numpyro":  # rebuilt by from_json where the constructor's arguments were found
            return {"kind": "numpyro", **self.params}
        if self.kind == "normal":
            return {"kind": "normal", "mean": self.mean.tolist(), "cov": self.cov.tolist()}
        return {"kind": self.kind, **self.params}

    @classmethod
    def from_json(cls, blob: dict) -> "InitialDistribution":
        kind = blob["kind"]
        if kind == "normal":
            return normal_initial(np.asarray(blob["mean"]), np.asarray(blob["cov"]))
        if kind == "student-t":
            return student_t_initial(blob["df"], blob["loc"], blob["scale"])
        if kind == "laplace":
            return laplace_initial(blob["loc"], blob["scale"])
        if kind == "mixture":
            return mixture_initial(blob["weights"], blob["means"], blob["sds"])
        if kind == "numpyro":
            return _numpyro_from_json(blob)
        raise ConfigError(
            f"p0 of kind {kind!r} cannot be rebuilt from config.json; rerun such a study from Python"
        )


def normal_initial(mean, cov) -> InitialDistribution:
    mean = require_finite("p0 mean", mean).reshape(-1).astype(np.float64)
    cov = require_covariance("p0 covariance", cov, mean.size)
    return InitialDistribution("normal", {}, mean, cov)


def _one_dimensional(kind, params, distribution, frozen_scipy):
    variance = float(frozen_scipy.var())
    if not np.isfinite(variance):
        raise ConfigError(f"p0 {kind} has infinite variance; the Gaussian fit needs a finite one")
    return InitialDistribution(
        kind, params, np.array([float(frozen_scipy.mean())]), np.array([[variance]]),
        (float(frozen_scipy.ppf(0.01)), float(frozen_scipy.ppf(0.99))), distribution,
    )


def student_t_initial(df: float, loc: float = 0.0, scale: float = 1.0) -> InitialDistribution:
    """Student-t p_0 (1-D); needs df > 2 for a finite variance."""
    import numpyro.distributions as dist

    df = require_positive("p0 student-t df", df)
    if df <= 2:
        raise ConfigError(f"p0 student-t df must be > 2 (finite variance); got {df:g}")
    loc = float(require_finite("p0 loc", loc))
    scale = require_positive("p0 scale", scale)
    return _one_dimensional(
        "student-t", {"df": df, "loc": loc, "scale": scale},
        dist.StudentT(df, loc, scale), scipy_stats.t(df, loc, scale),
    )


def laplace_initial(loc: float = 0.0, scale: float = 1.0) -> InitialDistribution:
    import numpyro.distributions as dist

    loc = float(require_finite("p0 loc", loc))
    scale = require_positive("p0 scale", scale)
    return _one_dimensional("laplace", {"loc": loc, "scale": scale}, dist.Laplace(loc, scale),
                            scipy_stats.laplace(loc, scale))


class _ScipyMixture:
    """Mean, variance and quantiles of a 1-D Gaussian mixture."""

    def __init__(self, weights, means, sds):
        self.weights, self.means, self.sds = map(np.asarray, (weights, means, sds))

    def mean(self):
        return float(self.weights @ self.means)

    def var(self):
        return float(self.weights @ (self.sds**2 + self.means**2) - self.mean() ** 2)

    def ppf(self, q):
        from scipy.optimize import brentq

        cdf = lambda x: float(self.weights @ scipy_stats.norm.cdf(x, self.means, self.sds)) - q
        span = float(np.max(np.abs(self.means)) + 20 * np.max(self.sds))
        return brentq(cdf, -span, span, xtol=1e-12)


def mixture_initial(weights, means, sds) -> InitialDistribution:
    """A 1-D Gaussian mixture p_0, e.g. the paper's modes at -4 and 4 with unit variance."""
    import numpyro.distributions as dist

    means = require_finite("p0 mixture means", means).reshape(-1)
    sds = require_finite("p0 mixture sds", sds).reshape(-1)
    weights = require_proportions("p0 mixture weights", weights, means.size)
    if sds.size != means.size or np.any(sds <= 0):
        raise ConfigError("p0 mixture sds must be positive, one per component")
    distribution = dist.MixtureSameFamily(
        dist.Categorical(probs=jnp.asarray(weights)), dist.Normal(jnp.asarray(means), jnp.asarray(sds))
    )
    params = {"weights": weights.tolist(), "means": means.tolist(), "sds": sds.tolist()}
    return _one_dimensional("mixture", params, distribution, _ScipyMixture(weights, means, sds))


def numpyro_initial(distribution, quantile_draws: int = 1_000_000, seed: int = 0) -> InitialDistribution:
    """Any numpyro distribution with event shape () or (d,) and finite second moments.

    Mean and covariance come from the distribution where it knows them, else from
    ``quantile_draws`` draws, as do the 1-D tail quantiles when ``icdf`` is missing.
    """
    event_shape = tuple(distribution.event_shape)
    if len(event_shape) > 1 or tuple(distribution.batch_shape):
        raise ConfigError("p0 must have event shape () or (d,) and no batch shape")
    dim = event_shape[0] if event_shape else 1
    draws = np.asarray(distribution.sample(jax.random.key(seed), (quantile_draws,)), np.float64).reshape(-1, dim)
    try:
        mean = np.asarray(distribution.mean, np.float64).reshape(dim)
        cov = (np.asarray(distribution.covariance_matrix, np.float64) if dim > 1
               else np.asarray(distribution.variance, np.float64).reshape(1, 1))
    except (NotImplementedError, AttributeError, ImportError):
        mean, cov = draws.mean(0), np.atleast_2d(np.cov(draws.T))
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise ConfigError("p0 must have a finite mean and covariance for the Gaussian fit")
    cov = require_covariance("p0 covariance", cov, dim)
    quantiles = (None, None)
    if dim == 1:
        try:
            quantiles = tuple(float(distribution.icdf(jnp.asarray(q))) for q in (0.01, 0.99))
        # a missing icdf: numpyro raises NotImplementedError, or ImportError where it
        # would need tensorflow_probability (the Gamma's); the draws' quantiles then
        except (NotImplementedError, AttributeError, ImportError):
            quantiles = tuple(float(v) for v in np.quantile(draws[:, 0], [0.01, 0.99]))
    return InitialDistribution("numpyro", _numpyro_record(distribution, quantile_draws, seed), mean, cov, quantiles,
                               distribution)


# constructor arguments numpyro lists in arg_constraints that are other spellings of the
# same parameter: a distribution is built from one of each
_ALTERNATIVES = (("logits",), ("probs",), ("precision_matrix", "scale_tril"), ("covariance_matrix", "scale_tril"),
                 ("covariance_matrix", "precision_matrix"))


def _numpyro_record(distribution, quantile_draws: int, seed: int) -> dict:
    """What config.json keeps of a numpyro p_0: its class in numpyro.distributions and the
    constructor arguments that rebuild it (checked: the rebuilt one draws the same
    numbers), with the draws its moments came from; or why it cannot be rebuilt."""
    import numpyro.distributions as dist

    name = type(distribution).__name__
    record = {"class": name, "quantile_draws": int(quantile_draws), "seed": int(seed)}
    if getattr(dist, name, None) is not type(distribution):
        return {**record, "rebuild": f"{type(distribution).__module__}.{name} is not a numpyro.distributions class"}
    # each argument as the distribution holds it: a Python number stays one (a weakly typed
    # constant in the compiled chain: rebuilt as an array it would round differently), an
    # array is saved as a list with its dtype
    arguments = {}
    for key in getattr(distribution, "arg_constraints", {}):
        if hasattr(distribution, key):
            value = getattr(distribution, key)
            arguments[key] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else {
                "values": np.asarray(value).tolist(), "dtype": str(np.asarray(value).dtype)}
    probe = jax.random.key(0)
    expected = np.asarray(distribution.sample(probe, (8,)))
    for dropped in ((),) + _ALTERNATIVES:
        chosen = {key: value for key, value in arguments.items() if key not in dropped}
        try:
            rebuilt = type(distribution)(**_numpyro_arguments(chosen))
            if np.array_equal(np.asarray(rebuilt.sample(probe, (8,))), expected):
                return {**record, "arguments": chosen}
        except (TypeError, ValueError):
            continue
    return {**record, "rebuild": f"no set of {name}'s arg_constraints arguments rebuilds it"}


def _numpyro_from_json(blob: dict) -> InitialDistribution:
    import numpyro.distributions as dist

    if "arguments" not in blob:
        why = blob.get("rebuild", "it was saved by an older jaxcollapse, which kept only its repr")
        raise ConfigError(f"p0 {blob.get('class', blob.get('repr', 'numpyro distribution'))} cannot be rebuilt from "
                          f"config.json: {why}; rerun such a study from Python")
    build = getattr(dist, str(blob.get("class")), None)
    if not isinstance(build, type):
        raise ConfigError(f"p0: numpyro.distributions has no class {blob.get('class')!r}; rerun from Python")
    try:
        distribution = build(**_numpyro_arguments(blob["arguments"]))
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(f"p0 {blob.get('class')} cannot be rebuilt from config.json ({error}); rerun from Python") \
            from None
    return numpyro_initial(distribution, blob["quantile_draws"], blob["seed"])


def _numpyro_arguments(saved: dict) -> dict:
    """Constructor arguments as :func:`_numpyro_record` saved them: numbers as they were,
    arrays with their dtype."""
    return {key: jnp.asarray(value["values"], value["dtype"]) if isinstance(value, dict) else value
            for key, value in saved.items()}


def require_mean_vector(mean, dim: int) -> np.ndarray:
    """p_0's mean as a float64 vector of ``dim`` entries: a number (every coordinate) or
    ``dim`` numbers, each within float32's range (:func:`require_location`)."""
    location = require_location("mean", mean)
    if location.ndim > 1 or location.size not in (1, dim):
        raise ConfigError(f"mean must be a number or a vector of length dim = {dim}; got shape {location.shape}")
    return np.broadcast_to(location.reshape(-1), (dim,)).astype(np.float64)


def require_dim(dim) -> int:
    """The dimension d of a Gaussian p_0, refused before its d x d covariance is built when
    that (with its factor and the chains' copies) cannot fit in memory."""
    dim = require_int("dim", dim, 1)
    require_memory(f"a {dim}-dimensional Gaussian's covariance matrices", 8 * 8 * dim * dim, "lower --dim")
    return dim


def parse_initial(text: str, mean: float, sigma: float, dim: int) -> InitialDistribution:
    """CLI spelling: ``normal``, ``student-t:DF``, ``laplace``, ``mixture:SEPARATION``
    (equal-weight unit-variance modes at +-SEPARATION/2, the paper's Figure 3 uses 8)."""
    if not isinstance(text, str):
        raise ConfigError(f"p0 must be normal, student-t:DF, laplace or mixture:SEPARATION; got {text!r}")
    kind, _, argument = text.partition(":")
    dim = require_dim(dim)
    sigma = require_scale("sigma", sigma)  # sigma**2 below would hide a negative sigma
    mean = float(require_location("mean", mean))
    if kind != "normal" and dim != 1:
        raise ConfigError(f"p0 {kind!r} is one-dimensional; use --dim 1")
    try:
        if kind == "normal":
            return normal_initial(np.full(dim, mean), sigma**2 * np.eye(dim))
        if kind == "student-t":
            return student_t_initial(float(argument), mean, sigma)
        if kind == "laplace":
            return laplace_initial(mean, sigma)
        if kind == "mixture":
            half = float(argument or 8.0) / 2
            return mixture_initial([0.5, 0.5], [mean - half, mean + half], [sigma, sigma])
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"could not read the number in p0 {text!r}") from error
    raise ConfigError(f"unknown p0 {text!r}; choose normal, student-t:DF, laplace or mixture:SEPARATION")
