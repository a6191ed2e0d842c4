"""A Gaussian collapse study: a frozen, JSON-serialisable description of one setting.

It maps one to one onto the CLI flags and is saved with every run (``config.json``), so
any run can be repeated exactly.

Example:
    >>> from jaxcollapse import gaussian_study, simulate
    >>> study = gaussian_study(samples=50, generations=10, regime="accumulate")
    >>> result = simulate(study.program(), num_chains=32, num_generations=10, seed=1)
    >>> float(result.summary("w2_risk")["mean"][0])
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import ConfigError, require_choice, require_covariance, require_finite, require_int, require_positive
from .engine import ChainProgram
from .families.gaussian import (
    ESTIMATORS, GaussianParams, check_sample_sizes, gaussian, gaussian_reference, metric_names,
)
from .initial import InitialDistribution, normal_initial
from .policies import STATS_REGIMES, DataPolicy, parse_policy, stats_program, stats_words
from .programs import data_path_program
from .schedules import Schedule, parse_schedule

__all__ = ["GaussianStudy", "gaussian_study", "PATHS"]

PATHS = ("auto", "data", "sufficient")


@dataclass(frozen=True)
class GaussianStudy:
    """Everything that defines the chain; chains, seed and chunking are run settings."""

    generations: int
    schedule: Schedule
    policy: DataPolicy = DataPolicy()
    estimator: str = "unbiased"
    initial: InitialDistribution = field(default_factory=lambda: normal_initial(0.0, 1.0))
    path: str = "auto"

    def __post_init__(self):
        require_int("generations", self.generations, 0)
        require_choice("estimator", self.estimator, tuple(ESTIMATORS))
        require_choice("path", self.path, PATHS)
        sizes = self.sizes
        check_sample_sizes(sizes, self.dim, self.estimator)
        self.policy.check_sizes(sizes)
        if self.path == "sufficient":
            if not self.initial.is_gaussian:
                raise ConfigError("path='sufficient' needs a Gaussian p0; a non-Gaussian p0 needs path='data'")
            stats_program(self.policy, gaussian(self.dim, self.estimator).sufficient, None)

    @property
    def dim(self) -> int:
        return self.initial.dim

    @property
    def sizes(self) -> np.ndarray:
        return self.schedule.sizes(self.generations)

    @property
    def resolved_path(self) -> str:
        """``auto`` takes the sufficient-statistics path wherever it is exact."""
        if self.path != "auto":
            return self.path
        return "sufficient" if self.initial.is_gaussian and self.policy.kind in STATS_REGIMES else "data"

    def family(self):
        return gaussian(self.dim, self.estimator)

    def reference(self):
        return gaussian_reference(self.initial.mean, self.initial.cov, *self.initial.quantiles)

    def program(self) -> ChainProgram:
        family = self.family()
        reference = self.reference()
        theta0 = GaussianParams(reference.mean, reference.cov)
        sizes_np = self.sizes if self.generations else np.array([2], np.int64)
        sizes = jnp.asarray(sizes_np, jnp.int32)
        dim = self.dim

        def metrics(params):
            return family.metrics(params, reference)

        if self.resolved_path == "data":
            rows = int(np.max(sizes_np))
            return data_path_program(
                family, self.policy, sizes_np, self.initial.sampler(dim), theta0, metrics=metrics,
                metric_names=metric_names(dim),
                bytes_per_chain=4 * dim * (8 * rows + 2 * self.policy.pool_rows(sizes_np)) + 64 * dim * dim,
            )

        policy = stats_program(self.policy, family.sufficient, theta0)
        fit_stats = family.sufficient.fit

        def first(words, state, params, m):
            return policy.init(words, m)

        def later(words, state, params, m):
            return policy.step(words, state, params, m)

        def step(words, carry, n):
            params, state = carry
            stats, state = jax.lax.cond(n == 0, first, later, words, state, params, sizes[n])
            return fit_stats(stats), state

        def initial_state():
            shapes = jax.eval_shape(lambda w: policy.init(w, sizes[0])[1], jnp.zeros(words_per_step, jnp.uint32))
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        words_per_step = stats_words(self.policy, family.sufficient)
        bytes_per_chain = 64 * (dim * dim + dim + 4)

        return ChainProgram(
            initial_params=theta0,
            initial_state=initial_state,
            step=step,
            metrics=metrics,
            bytes_per_chain=int(bytes_per_chain),
            metric_names=metric_names(dim),
            words_per_step=words_per_step,
        )

    def to_json(self) -> dict:
        return {
            "generations": self.generations,
            "schedule": self.schedule.to_json(),
            "regime": self.policy.to_json(),
            "estimator": self.estimator,
            "initial": self.initial.to_json(),
            "path": self.path,
        }

    @classmethod
    def from_json(cls, blob: dict) -> "GaussianStudy":
        return cls(
            generations=int(blob["generations"]),
            schedule=Schedule.from_json(blob["schedule"]),
            policy=DataPolicy.from_json(blob["regime"]),
            estimator=blob["estimator"],
            initial=InitialDistribution.from_json(blob["initial"]),
            path=blob["path"],
        )


def gaussian_study(
    samples: int = 100,
    generations: int = 100,
    *,
    schedule: str | Schedule = "constant",
    regime: str | DataPolicy = "replace",
    estimator: str = "unbiased",
    dim: int = 1,
    mean=0.0,
    sigma: float = 1.0,
    cov=None,
    initial: InitialDistribution | None = None,
    path: str = "auto",
) -> GaussianStudy:
    """Build a :class:`GaussianStudy` from plain values (validated on the host).

    ``samples`` is M_0 (the constant M for the constant schedule); ``schedule`` a
    :class:`Schedule` or its CLI spelling; ``regime`` a :class:`DataPolicy` or its CLI
    spelling; p_0 is N(mean, sigma^2 I_dim), N(mean, cov), or ``initial``.
    """
    samples = require_int("samples", samples, 1)
    if not isinstance(schedule, Schedule):
        schedule = parse_schedule(schedule, samples)
    if not isinstance(regime, DataPolicy):
        regime = parse_policy(regime)
    if initial is None:
        dim = require_int("dim", dim, 1)
        mean_vector = np.broadcast_to(require_finite("mean", mean), (dim,)).astype(np.float64)
        if cov is None:
            sigma = require_positive("sigma", sigma)
            cov_matrix = sigma**2 * np.eye(dim)
        else:
            cov_matrix = require_covariance("cov", cov, dim)
        initial = normal_initial(mean_vector, cov_matrix)
    return GaussianStudy(
        generations=generations, schedule=schedule, policy=regime, estimator=estimator, initial=initial, path=path
    )
