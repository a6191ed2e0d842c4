"""The kernel density estimator study and its ``kde`` command (issue 4): frozen and
JSON-serialisable.

Generation n + 1 is the Gaussian KDE (:mod:`jaxcollapse.families.kde`) of D_n, built by
any data policy from M_n samples of generation n; the chain is
:func:`jaxcollapse.programs.data_path_program`. p_0 is any :class:`InitialDistribution`
(default N(0, 1); a d-dimensional normal in d > 1). With a fixed bandwidth h in the
replace regime the expected model variance obeys E[V_{n+1}] = (1 - 1/M_n) E[V_n] + d h^2
(:mod:`jaxcollapse.theory.kde`): not "+ h^2 per generation", which the check reports as
disagreeing once a run has enough chains.

Examples:
    >>> from jaxcollapse import simulate
    >>> study = kde_study(samples=20, generations=3, bandwidth=0.5)
    >>> result = simulate(study.program(), num_chains=32, num_generations=3, seed=0, metrics=("variance",))
    >>> float(result.summary("variance")["mean"][0])  # generation 0 is p_0 = N(0, 1)
    1.0
    >>> [curve.column for curve in study.theory_curves()]
    ['variance_exact', 'variance_naive', 'mean_error_exact']
    >>> study, _ = COMMAND.build(COMMAND.values({"samples": 20, "generations": 2, "bandwidth": "scott"}))
    >>> study.bandwidth
    'scott'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import (
    ConfigError, require_covariance, require_generations, require_int, require_scale,
)
from ..check import Curve
from ..engine import ChainProgram
from ..families.kde import (
    W2_GRID, W2_LEVELS, check_sample_sizes, initial_params, kde, kde_reference, metric_names, parse_bandwidth,
)
from ..initial import InitialDistribution, normal_initial, parse_initial, require_mean_vector
from ..policies import DataPolicy, data_program, parse_policy
from ..programs import data_path_program
from ..schedules import Schedule, parse_schedule
from ..theory import kde as theory
from .base import ChainStudy, Option, StudyCommand, chain_options, run_options, run_settings

__all__ = ["KDEStudy", "kde_study", "HELDOUT_SEED", "COMMAND"]

HELDOUT_SEED = 0


@dataclass(frozen=True)
class KDEStudy(ChainStudy):
    """Everything that defines a KDE chain; chains, seed and chunking are run settings.

    ``bandwidth`` is a fixed h > 0 or ``"scott"`` / ``"silverman"``; ``heldout`` points of
    p_0, drawn once under ``heldout_seed``, give ``heldout_nll``.
    """

    command: ClassVar[str] = "kde"

    generations: int
    schedule: Schedule
    policy: DataPolicy = DataPolicy()
    initial: InitialDistribution = field(default_factory=lambda: normal_initial(0.0, 1.0))
    bandwidth: float | str = 0.1
    heldout: int = 256
    heldout_seed: int = HELDOUT_SEED

    def __post_init__(self):
        object.__setattr__(self, "generations", require_generations(self.generations))
        if not isinstance(self.initial, InitialDistribution):
            raise ConfigError(f"initial must be an InitialDistribution; got {type(self.initial).__name__}")
        if not isinstance(self.policy, DataPolicy):
            raise ConfigError(f"policy must be a DataPolicy; got {type(self.policy).__name__}")
        object.__setattr__(self, "bandwidth", parse_bandwidth(self.bandwidth))
        require_int("heldout", self.heldout, 1, 1_000_000, "every chain scores every held-out point each generation")
        seed = require_int("heldout_seed", self.heldout_seed, 0)
        if seed >= 2**32:
            raise ConfigError(f"heldout_seed must be an integer in [0, 2**32); got {seed}")
        sizes = self.sizes
        check_sample_sizes(sizes, self.dim, self.bandwidth)
        self.policy.check_sizes(sizes)

    @property
    def dim(self) -> int:
        return self.initial.dim

    @property
    def fixed_bandwidth(self) -> bool:
        return not isinstance(self.bandwidth, str)

    def family(self):
        return kde(self.dim, self.bandwidth)

    def reference(self):
        """p_0's constants (held-out sample, quantiles), built on the host."""
        return kde_reference(self.initial, self.heldout, self.heldout_seed)

    def metric_names(self) -> tuple[str, ...]:
        return metric_names(self.dim)

    def summary_metrics(self) -> tuple[str, ...]:
        """Every metric is a per-chain scalar whose across-chain moments make sense."""
        return self.metric_names()

    def final_metrics(self) -> tuple[str, ...]:
        return ()

    def program(self) -> ChainProgram:
        """The chain: :func:`data_path_program` with the KDE family; generation 0's
        parameters are p_0 (``is_p0``) shaped like the buffer the fit sees."""
        family = self.family()
        reference = self.reference()
        dim = self.dim
        sizes = self.sizes if self.generations else np.array([max(2, dim + 1)], np.int64)
        rows = int(np.max(sizes))
        # the rows of the buffer the fit sees (the whole pool for accumulate)
        fit_rows = jax.eval_shape(
            lambda key: data_program(self.policy, sizes).init(key, jnp.zeros((rows, *family.row.shape)), rows)[0],
            jax.random.key(0),
        ).shape[0]

        def metrics(params):
            return family.metrics(params, reference)

        heldout = int(reference.heldout.shape[0])
        metric_bytes = 4 * fit_rows * (heldout * (dim + 2) + (6 * W2_GRID if dim == 1 else 0)) + 8 * W2_LEVELS
        return data_path_program(
            family, self.policy, sizes, self.initial.sampler(dim), initial_params(self.initial, fit_rows),
            metrics=metrics, metric_names=self.metric_names(),
            bytes_per_chain=4 * dim * (8 * rows + 2 * self.policy.pool_rows(sizes)) + 8 * fit_rows * (dim + 1)
            + metric_bytes,
            num_generations=self.generations,  # sizes is a placeholder when G = 0
        )

    def theory_curves(self) -> list:
        """Exact E[variance] and E[mean_error] of the replace regime (any p_0 with a finite
        variance; a fixed bandwidth or a rule) and, for a fixed h, the naive V_0 + n d h^2
        as an expansion (:mod:`jaxcollapse.theory.kde`)."""
        if self.policy.kind != "replace" or not self.generations:
            return []
        arguments = (self.sizes, float(np.trace(self.initial.cov)), self.dim, self.bandwidth)
        if self.fixed_bandwidth:
            curves = [
                Curve("E[variance]", "exact (1 - 1/M) V + d h^2", "exact", "variance_exact",
                      theory.variance_exact(*arguments)),
                Curve("E[variance]", "adds d h^2 per generation", "expansion", "variance_naive",
                      theory.variance_expansion(*arguments)),
            ]
        else:
            curves = [Curve("E[variance]", f"exact (1 - 1/M + f^2) V, {self.bandwidth}", "exact", "variance_exact",
                            theory.variance_exact(*arguments))]
        curves.append(Curve("E[mean_error]", "exact (martingale)", "exact", "mean_error_exact",
                            theory.mean_error_exact(*arguments)))
        return curves

    def describe(self) -> list[str]:
        """One-line facts for a report."""
        if self.fixed_bandwidth:
            kernel = f"fixed bandwidth h = {self.bandwidth:g} (H = h^2 I)"
        else:
            kernel = f"bandwidth rule {self.bandwidth} (scipy.stats.gaussian_kde convention)"
        lines = [
            f"family: Gaussian KDE, {kernel}",
            f"p0: {self.initial.describe()}, dimension {self.dim}",
            f"regime: {self.policy.describe()}; schedule: {self.schedule.describe()}",
            f"heldout_nll: {self.heldout} held-out points of p0 (seed {self.heldout_seed})",
        ]
        if self.dim == 1:
            lines.append(f"w2: numerical ({W2_GRID}-point CDF grid, {W2_LEVELS} quantile levels; about 0.1 % "
                         "relative, up to 1 % with narrow kernels between separated modes)")
        sizes = self.sizes
        if self.policy.kind == "replace" and len(sizes) and np.all(sizes == sizes[0]):
            if self.fixed_bandwidth:
                limit = theory.variance_limit(int(sizes[0]), self.dim, self.bandwidth)
                lines.append(f"E[variance] -> M d h^2 = {limit:g} as generations grow (exact recursion)")
            else:
                growth = 1.0 - 1.0 / sizes[0] + float(theory.rule_factor_squared(sizes[0], self.dim, self.bandwidth))
                lines.append(f"E[variance] grows by a factor 1 - 1/M + f^2 = {growth:.4g} per generation (exact)")
        return lines

    def write_figures(self, result, settings, folder) -> list[str]:
        from ..plots import write_study_figures

        return write_study_figures(self, settings, result, folder)

    def to_json(self) -> dict:
        return {
            "generations": self.generations,
            "schedule": self.schedule.to_json(),
            "regime": self.policy.to_json(),
            "initial": self.initial.to_json(),
            "bandwidth": self.bandwidth,
            "heldout": self.heldout,
            "heldout_seed": self.heldout_seed,
        }

    @classmethod
    def from_json(cls, blob: dict) -> "KDEStudy":
        return cls(
            generations=int(blob["generations"]),
            schedule=Schedule.from_json(blob["schedule"]),
            policy=DataPolicy.from_json(blob["regime"]),
            initial=InitialDistribution.from_json(blob["initial"]),
            bandwidth=blob["bandwidth"],
            heldout=int(blob["heldout"]),
            heldout_seed=int(blob["heldout_seed"]),
        )


def kde_study(
    samples: int = 100,
    generations: int = 20,
    *,
    bandwidth: float | str = 0.1,
    schedule: str | Schedule = "constant",
    regime: str | DataPolicy = "replace",
    dim: int = 1,
    initial: InitialDistribution | None = None,
    mean=0.0,
    sigma: float = 1.0,
    heldout: int = 256,
    heldout_seed: int = HELDOUT_SEED,
) -> KDEStudy:
    """Build a :class:`KDEStudy` from plain values (validated on the host).

    ``samples`` is M_0 (the constant M for the constant schedule); ``schedule`` and
    ``regime`` take a :class:`Schedule` / :class:`DataPolicy` or their CLI spellings; p_0 is
    N(mean, sigma^2 I_dim) or ``initial`` (whose dimension must then equal ``dim``).
    """
    samples = require_int("samples", samples, 1)
    dim = require_int("dim", dim, 1, 1024, "every chain fits and scores dim x dim covariances")
    bandwidth = parse_bandwidth(bandwidth)
    if not isinstance(schedule, Schedule):
        schedule = parse_schedule(schedule, samples)
    if not isinstance(regime, DataPolicy):
        regime = parse_policy(regime)
    if initial is None:
        mean_vector = require_mean_vector(mean, dim)
        sigma = require_scale("sigma", sigma)
        initial = normal_initial(mean_vector, require_covariance("p0 covariance", sigma**2 * np.eye(dim), dim))
    elif not isinstance(initial, InitialDistribution):
        raise ConfigError(f"initial must be an InitialDistribution; got {type(initial).__name__}")
    elif initial.dim != dim:
        raise ConfigError(f"dim must match p0's dimension: dim = {dim} but p0 is {initial.dim}-dimensional")
    return KDEStudy(
        generations=generations, schedule=schedule, policy=regime, initial=initial, bandwidth=bandwidth,
        heldout=heldout, heldout_seed=heldout_seed,
    )


# ----------------------------------------------------------------------------- the command

def _build(values: dict):
    study = kde_study(
        samples=values["samples"], generations=values["generations"], bandwidth=values["bandwidth"],
        schedule=values["schedule"], regime=values["regime"], dim=values["dim"],
        initial=parse_initial(values["p0"], values["mean"], values["sigma"], values["dim"]), heldout=values["heldout"],
    )
    return study, run_settings(values)


COMMAND = StudyCommand(
    name="kde",
    help="Gaussian kernel density estimators refitted on their own samples",
    options=chain_options(chains=1000, generations=100, samples=100) + (
        Option("bandwidth", "0.1", "h > 0 (kernel sd) | scott | silverman (default 0.1)"),
        Option("dim", 1, "dimension d (default 1)", int),
        Option("mean", 0.0, "mean of p0 (every coordinate)", float),
        Option("sigma", 1.0, "standard deviation (scale) of p0", float),
        Option("p0", "normal", "normal | student-t:DF | laplace | mixture:SEPARATION"),
        Option("heldout", 256, "held-out real points for the NLL (default 256)", int),
    ) + run_options("results/kde"),
    build=_build,
    from_json=KDEStudy.from_json,
    rank=3,
)
