"""The Gaussian study and its ``gaussian`` command (paper section 4.2): a frozen,
JSON-serialisable description of one setting.

It maps one to one onto the CLI flags and is saved with every run (``config.json``), so
any run can be repeated exactly.

Examples:
    >>> from jaxcollapse import gaussian_study, simulate
    >>> study = gaussian_study(samples=50, generations=10, regime="accumulate")
    >>> result = simulate(study.program(), num_chains=32, num_generations=10, seed=1)
    >>> float(result.summary("w2_risk")["mean"][0])
    0.0
    >>> study, settings = COMMAND.build(COMMAND.values({"samples": 20, "generations": 2, "regime": "accumulate"}))
    >>> study.policy.kind, settings.quantiles
    ('accumulate', (0.05, 0.5, 0.95))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import (
    ConfigError, require_choice, require_covariance, require_generations, require_int, require_scale,
)
from ..check import Curve
from ..engine import ChainProgram
from .._random import key_from_words
from ..families.gaussian import (
    ESTIMATORS, GaussianParams, check_sample_sizes, gaussian, gaussian_reference, metric_names, minimum_samples,
    stats_of_samples,
)
from ..initial import InitialDistribution, normal_initial, parse_initial, require_dim, require_mean_vector
from ..policies import STATS_REGIMES, DataPolicy, parse_policy, stats_program, stats_words
from ..programs import data_path_program
from ..schedules import Schedule, parse_schedule
from ..tables import generation_columns, table
from ..theory import gaussian as theory
from .base import ChainStudy, Option, StudyCommand, chain_options, floats, ints, run_options, run_settings

__all__ = ["GaussianStudy", "gaussian_study", "PATHS", "COMMAND"]

PATHS = ("auto", "data", "sufficient")
GAUSSIAN_FIGURE_SAMPLES = (100, 500, 1000, 10_000)  # M of the single-chain trajectory figure
REQUIRED_COLUMNS = (
    "generation", "samples", "w2_risk_mean", "w2_risk_se", "w2_risk_exact", "w2_risk_paper",
    "w2_risk_lower_bound", "var_x_mean", "var_x_se", "var_x_exact", "sigma2_mean", "sigma2_se", "sigma2_exact",
)


def _sufficient_program(family, policy_spec, dim: int, generations: int, reference, sample_d0,
                        arguments) -> ChainProgram:
    """The sufficient-statistics chain of a Gaussian study, reading its sample sizes
    (``arguments["sizes"]``) from an array that may be traced. ``sample_d0``: None for a
    Gaussian p_0 (D_0's statistics drawn exactly), else ``(sampler, M_0)``: D_0 drawn from
    p_0 and its statistics computed, every later generation's drawn exactly."""
    sizes = arguments["sizes"]
    theta0 = GaussianParams(reference.mean, reference.cov)
    policy = stats_program(policy_spec, family.sufficient, theta0)
    fit_stats = family.sufficient.fit
    words_per_step = stats_words(policy_spec, family.sufficient)

    def first(words, state, params, m):
        if sample_d0 is None:
            return policy.init(words, m)
        sampler, rows = sample_d0
        stats = stats_of_samples(sampler(key_from_words(words[:2]), rows))
        return stats, (stats if policy_spec.kind == "accumulate" else ())

    def later(words, state, params, m):
        return policy.step(words, state, params, m)

    def step(words, carry, n):
        params, state = carry
        stats, state = jax.lax.cond(n == 0, first, later, words, state, params, sizes[n])
        return fit_stats(stats), state

    def initial_state():
        shapes = jax.eval_shape(lambda w: policy.init(w, sizes[0])[1], jnp.zeros(words_per_step, jnp.uint32))
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    return ChainProgram(
        initial_params=theta0,
        initial_state=initial_state,
        step=step,
        metrics=lambda params: family.metrics(params, reference),
        bytes_per_chain=int(64 * (dim * dim + dim + 4)),
        metric_names=metric_names(dim),
        words_per_step=words_per_step,
        num_generations=generations,
    )


# regimes whose data after D_0 all come from the fitted Gaussians: the sufficient path
# runs them whatever p_0 (fresh-real keeps drawing from p_0, hence the data path there)
D0_SAMPLED_REGIMES = ("replace", "accumulate")


@dataclass(frozen=True)
class GaussianStudy(ChainStudy):
    """Everything that defines the chain; chains, seed and chunking are run settings."""

    command: ClassVar[str] = "gaussian"

    generations: int
    schedule: Schedule
    policy: DataPolicy = DataPolicy()
    estimator: str = "unbiased"
    initial: InitialDistribution = field(default_factory=lambda: normal_initial(0.0, 1.0))
    path: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "generations", require_generations(self.generations))
        require_choice("estimator", self.estimator, tuple(ESTIMATORS))
        require_choice("path", self.path, PATHS)
        sizes = self.sizes
        check_sample_sizes(sizes, self.dim, self.estimator)
        self.policy.check_sizes(sizes)
        if self.path == "sufficient":
            if not self.initial.is_gaussian and self.policy.kind not in D0_SAMPLED_REGIMES:
                raise ConfigError(f"path='sufficient' with a non-Gaussian p0 runs the regimes "
                                  f"{', '.join(D0_SAMPLED_REGIMES)} (only D_0 is drawn from p0); regime "
                                  f"{self.policy.describe()!r} needs path='data'")
            stats_program(self.policy, gaussian(self.dim, self.estimator).sufficient, None)

    @property
    def dim(self) -> int:
        return self.initial.dim

    @property
    def resolved_path(self) -> str:
        """``auto`` takes the sufficient-statistics path wherever it is exact."""
        if self.path != "auto":
            return self.path
        if self.policy.kind in D0_SAMPLED_REGIMES or (self.initial.is_gaussian and self.policy.kind in STATS_REGIMES):
            return "sufficient"
        return "data"

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
                num_generations=self.generations,  # sizes_np is a placeholder when G = 0
            )

        # the sufficient path's sample sizes are a traced argument: studies that differ only
        # in them (a sweep over M, the trajectory figure's sample sizes) share one
        # compilation in a process (ChainProgram.cache_key). p_0 stays a constant of the
        # program: traced, the metrics' arithmetic on it rounds differently by segment
        # length, and a run's numbers would depend on its checkpoint interval
        arguments = {"sizes": sizes}
        # D_0 from a non-Gaussian p_0: drawn and its statistics computed; later
        # generations sample Gaussians, whose statistics are drawn exactly
        sample_d0 = None if self.initial.is_gaussian else (self.initial.sampler(dim), int(sizes_np[0]))
        bind = functools.partial(_sufficient_program, family, self.policy, dim, self.generations, reference,
                                 sample_d0)
        cache_key = None if sample_d0 is not None else (
            "gaussian-sufficient", dim, self.estimator, self.policy, self.generations,
            tuple(np.asarray(leaf).tobytes() for leaf in jax.tree.leaves(reference)))
        return bind(arguments)._replace(arguments=arguments, bind=bind, cache_key=cache_key)

    # -- the run folder (the Study protocol) -------------------------------------------

    def quantile_metrics(self) -> tuple[str, ...]:
        return ("w2_risk",)

    def theory_curves(self) -> list[Curve]:
        """The exact finite-M laws and the paper's formulas that apply (see docs/theory.md)."""
        if not self.initial.is_gaussian:
            return []  # every formula here assumes a Gaussian p_0
        sizes = self.sizes
        ddof = ESTIMATORS[self.estimator]
        trace = float(np.trace(self.initial.cov))
        one_d = self.dim == 1
        kind = self.policy.kind
        curves = []

        def add(quantity, formula, kind_, column, values, central4=None):
            curves.append(Curve(quantity, formula, kind_, column, np.asarray(values, np.float64), central4))

        if kind == "replace":
            if one_d:
                sigma = float(np.sqrt(self.initial.cov[0, 0]))
                exact = theory.replace_exact(sizes, sigma, ddof)
                for metric in ("w2_risk", "mean_error", "sigma", "sigma2", "var_x"):
                    add(f"E[{metric}]", "exact", "exact", f"{metric}_exact", exact[metric])
                add("Var[w2_risk]", "exact", "exact", "w2_risk_var_exact", exact["w2_risk_var"], exact["w2_risk_central4"])
                add("E[w2_risk]", "paper eq. (4)", "expansion", "w2_risk_paper", theory.paper_w2_risk(sizes, sigma))
                add("Var[w2_risk]", "paper eq. (5)", "expansion", "w2_risk_var_paper", theory.paper_w2_risk_var(sizes, sigma))
                add("E[var_x]", "paper sec. 4.2", "expansion", "var_x_paper", theory.paper_var_x(sizes, sigma))
                if self.estimator == "unbiased":
                    add("E[w2_risk]", "first order (3/2M)", "expansion", "w2_risk_first_order",
                        theory.w2_first_order(sizes, sigma))
                    add("Var[w2_risk]", "first order (5/2 S^2)", "expansion", "w2_risk_var_first_order",
                        theory.w2_var_first_order(sizes, sigma))
            else:
                exact = theory.replace_exact_nd(sizes, trace, ddof)
                for metric in ("mean_error", "cov_trace", "var_x"):
                    add(f"E[{metric}]", "exact", "exact", f"{metric}_exact", exact[metric])
            add("E[w2_risk]", "paper eq. (15) bound", "lower bound", "w2_risk_lower_bound",
                theory.w2_lower_bound(sizes, trace))
        elif kind == "accumulate":
            exact = theory.accumulate_exact(sizes, trace, ddof)
            spread = "sigma2" if one_d else "cov_trace"
            add("E[mean_error]", "exact", "exact", "mean_error_exact", exact["mean_error"])
            add(f"E[{spread}]", "exact", "exact", f"{spread}_exact", exact["cov_trace"])
            add("E[var_x]", "exact", "exact", "var_x_exact", exact["var_x"])
            add("E[mean_error]", "fixed-variance sum", "expansion", "mean_error_fixed_variance",
                theory.accumulate_mean_error_published(sizes, trace))
        return curves

    def summary_table(self, result, quantiles=()) -> tuple[list[str], list[list[str]]]:
        """The per-generation table of summary.csv: header and rows of text."""
        generations = result.num_generations
        columns = generation_columns(self.sizes, generations)
        for metric in result.metric_names:
            summary = result.summary(metric)
            columns[f"{metric}_mean"] = summary["mean"]
            columns[f"{metric}_se"] = summary["se"]
            if metric == "w2_risk":
                columns["w2_risk_var"] = summary["var"]
                columns["w2_risk_var_se"] = summary["var_se"]
        if quantiles:
            band = result.quantiles("w2_risk", quantiles)
            for index, q in enumerate(quantiles):
                columns[f"w2_risk_q{q:g}"] = band[:, index]
        for curve in self.theory_curves():
            columns[curve.column] = curve.values
        for name in REQUIRED_COLUMNS:
            columns.setdefault(name, [None] * (generations + 1))
        return table(columns, generations)

    def write_figures(self, result, settings, folder: Path) -> list[str]:
        """risk.png and, for the chosen sample sizes, single-chain trajectories (Figures 4-6)."""
        import matplotlib.pyplot as plt

        from ..plots import plot_risk, plot_trajectories, trajectory_runs

        names = []
        quantiles = (min(settings.quantiles, default=0.05), max(settings.quantiles, default=0.95))
        figure = plot_risk(self, result, quantiles=quantiles)
        figure.savefig(Path(folder) / "risk.png", dpi=120)
        plt.close(figure)
        names.append("risk.png")
        figure_sizes = settings.figure_sizes(GAUSSIAN_FIGURE_SAMPLES)
        if self.generations and figure_sizes:
            sizes = [m for m in figure_sizes if m >= minimum_samples(self.dim, self.estimator)]
            if sizes:
                figure = plot_trajectories(self, trajectory_runs(self, sizes, seed=settings.seed))
                figure.savefig(Path(folder) / "trajectories.png", dpi=120)
                plt.close(figure)
                names.append("trajectories.png")
        return names

    def report_title(self) -> str:
        return "jaxcollapse Gaussian study"

    def report_facts(self, result, settings) -> list[str]:
        return [
            f"p0: {self.initial.describe()}, dimension {self.dim}",
            f"regime: {self.policy.describe()}; schedule: {self.schedule.describe()}; estimator: {self.estimator}",
            f"{settings.chains} chains, {self.generations} generations, seed {settings.seed}, path {self.resolved_path}",
        ]

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
    generations = require_generations(generations)
    if not isinstance(schedule, Schedule):
        schedule = parse_schedule(schedule, samples)
    if not isinstance(regime, DataPolicy):
        regime = parse_policy(regime)
    if initial is None:
        dim = require_dim(dim)
        mean_vector = require_mean_vector(mean, dim)
        if cov is None:
            sigma = require_scale("sigma", sigma)
            cov_matrix = sigma**2 * np.eye(dim)
        else:
            cov_matrix = require_covariance("cov", cov, dim)
        initial = normal_initial(mean_vector, cov_matrix)
    return GaussianStudy(
        generations=generations, schedule=schedule, policy=regime, estimator=estimator, initial=initial, path=path
    )


# ----------------------------------------------------------------------------- the command

def _build(values: dict):
    study = gaussian_study(
        samples=values["samples"], generations=values["generations"], schedule=values["schedule"],
        regime=values["regime"], estimator=values["estimator"],
        initial=parse_initial(values["p0"], values["mean"], values["sigma"], values["dim"]), path=values["path"],
    )
    return study, run_settings(values, quantiles=values["quantiles"], figure_samples=values["figure_samples"])


COMMAND = StudyCommand(
    name="gaussian",
    help="Gaussian recursion chains (paper section 4.2)",
    options=chain_options() + (
        Option("estimator", "unbiased", "unbiased (ddof=1, paper eq. 1) | mle (ddof=0)"),
        Option("dim", 1, "dimension d (default 1)", int),
        Option("mean", 0.0, "mean of p0 (every coordinate)", float),
        Option("sigma", 1.0, "standard deviation (scale) of p0", float),
        Option("p0", "normal", "normal | student-t:DF | laplace | mixture:SEPARATION"),
        Option("path", "auto", "auto | data | sufficient (default auto)"),
    ) + run_options("results/gaussian") + (
        Option("quantiles", (0.05, 0.5, 0.95), "of the W2 risk", floats),
        Option("figure_samples", (100, 500, 1000, 10_000), "M of the single-chain trajectory figure", ints),
    ),
    build=_build,
    from_json=GaussianStudy.from_json,
    rank=0,
)
