"""The GMM study and its ``gmm`` command (paper section 5.1, Figures 7 and 13).

p_0 is a Gaussian mixture (``two-blobs``: two separated 2-D Gaussians, the paper's
setting; ``blob``: one standard 2-D Gaussian, which a k > 1 mixture over-fits); every
generation fits a k-component GMM by a fixed number of EM iterations to D_n, built by any
data policy of the engine, and the next generation samples it.

Examples:
    >>> from jaxcollapse import simulate
    >>> study = gmm_study(samples=200, generations=3, iterations=5)
    >>> result = simulate(study.program(), num_chains=16, num_generations=3, seed=0)
    >>> round(float(result.summary("l2_distance")["mean"][0]), 8)  # generation 0 is p_0
    0.0
    >>> study, settings = COMMAND.build(COMMAND.values({"samples": 50, "generations": 2, "covariance": "diag"}))
    >>> study.covariance_type, settings.chains
    ('diag', 200)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax
import numpy as np

from .._validation import (
    ConfigError, nested_tuple, require_choice, require_covariance, require_finite, require_generations, require_int,
    require_positive, require_proportions, require_scale,
)
from ..engine import LANE_BLOCK, ChainProgram
from ..families.gmm import (
    COVARIANCE_TYPES, INITS, METRIC_NAMES, GMMParams, gmm, gmm_params, gmm_reference, metrics, sample,
)
from ..policies import DataPolicy, parse_policy
from ..programs import data_path_program
from ..schedules import Schedule, parse_schedule
from .base import ChainStudy, Option, StudyCommand, chain_options, floats, ints, run_options, run_settings

__all__ = ["GMMInitial", "GMMStudy", "gmm_study", "gmm_initial", "parse_gmm_initial", "COMMAND"]

# chains per chunk: EM's per-point temporaries of ~100 chains stay in cache (measured 2-3x
# faster than chunks of 1000 chains at M = 1000 on a 2-core CPU)
PREFERRED_CHUNK = 128


@dataclass(frozen=True)
class GMMInitial:
    """p_0 as a mixture: weights (k0,), means (k0, d), covariances (k0, d, d), as tuples."""

    name: str
    weights: tuple
    means: tuple
    covs: tuple

    def __post_init__(self):
        weights = require_proportions("p0 weights", self.weights)
        means = require_finite("p0 means", self.means)
        if means.ndim != 2 or means.shape[0] != weights.size:
            raise ConfigError(f"p0 means must have shape (components, dim) = ({weights.size}, d); got {means.shape}")
        covs = np.asarray(self.covs, np.float64)
        if covs.shape != (weights.size, means.shape[1], means.shape[1]):
            raise ConfigError(f"p0 covariances must have shape {(weights.size, means.shape[1], means.shape[1])}; got {covs.shape}")
        for index, cov in enumerate(covs):
            require_covariance(f"p0 covariance {index}", cov)

    @property
    def components(self) -> int:
        return len(self.weights)

    @property
    def dim(self) -> int:
        return len(self.means[0])

    def params(self) -> GMMParams:
        return gmm_params(np.asarray(self.weights), np.asarray(self.means), np.asarray(self.covs))

    def describe(self) -> str:
        return f"{self.name}: {self.components}-component mixture in {self.dim} dimensions"

    def to_json(self) -> dict:
        return {"name": self.name, "weights": list(self.weights), "means": [list(m) for m in self.means],
                "covs": [[list(row) for row in c] for c in self.covs]}

    @classmethod
    def from_json(cls, blob: dict) -> "GMMInitial":
        return cls(blob["name"], nested_tuple(blob["weights"]), nested_tuple(blob["means"]), nested_tuple(blob["covs"]))


def gmm_initial(weights, means, covs, name: str = "custom") -> GMMInitial:
    """p_0 from arrays (validated)."""
    return GMMInitial(name, nested_tuple(weights), nested_tuple(means), nested_tuple(covs))


def parse_gmm_initial(text: str, dim: int = 2) -> GMMInitial:
    """``two-blobs`` (means +-3 on the first axis, unit covariances), ``two-blobs:S`` (the
    means S apart) or ``blob`` (N(0, I)), in ``dim`` >= 1 dimensions."""
    dim = require_int("dim", dim, 1, 1024, "every chain fits and scores dim x dim covariances")
    if not isinstance(text, str):
        raise ConfigError(f"p0 must be two-blobs, two-blobs:S or blob; got {text!r}")
    kind, _, argument = text.partition(":")
    eye = np.eye(dim)
    if kind == "blob" and not argument:
        return gmm_initial([1.0], np.zeros((1, dim)), eye[None], "blob")
    if kind == "two-blobs":
        try:
            separation = float(argument) if argument else 6.0
        except ValueError as error:
            raise ConfigError(f"two-blobs:S needs a number S (the distance between the means); got {text!r}") from error
        separation = require_scale("two-blobs separation", separation)
        means = np.zeros((2, dim))
        means[:, 0] = (-separation / 2, separation / 2)
        return gmm_initial([0.5, 0.5], means, np.stack([eye, eye]), text)
    raise ConfigError(f"unknown GMM p0 {text!r}; choose two-blobs, two-blobs:S or blob")


@dataclass(frozen=True)
class GMMStudy(ChainStudy):
    """Everything that defines a GMM chain; chains, seed and chunking are run settings."""

    generations: int
    schedule: Schedule
    policy: DataPolicy = DataPolicy()
    components: int = 2
    covariance_type: str = "full"
    iterations: int = 20
    init: str = "previous"
    reg_covar: float = 1e-6
    kmeans_iterations: int = 10
    initial: GMMInitial = field(default_factory=lambda: parse_gmm_initial("two-blobs"))
    heldout: int = 1000
    heldout_seed: int = 12345
    weight_threshold: float = 0.01
    variance_threshold: float = 1e-3

    command: ClassVar[str] = "gmm"

    def __post_init__(self):
        object.__setattr__(self, "generations", require_generations(self.generations))
        require_int("components", self.components, 1)
        require_int("iterations (the last one's log-likelihood change needs two)", self.iterations, 2)
        require_int("kmeans_iterations", self.kmeans_iterations, 0)
        require_int("heldout", self.heldout, 1, 1_000_000, "every chain scores every held-out point each generation")
        require_int("heldout_seed", self.heldout_seed, 0)
        require_positive("reg_covar", self.reg_covar)
        require_positive("weight_threshold", self.weight_threshold)
        require_positive("variance_threshold", self.variance_threshold)
        require_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        require_choice("init", self.init, INITS)
        if self.components < self.initial.components:
            raise ConfigError(
                f"components must be >= the {self.initial.components} components of p0 (generation 0 is p0 itself); "
                f"got {self.components}. To fit fewer Gaussians than p0 has, use the gaussian command with --p0 mixture:S")
        sizes = self.sizes
        if len(sizes) and int(np.min(sizes)) < self.components:
            raise ConfigError(f"samples must be >= components = {self.components} (EM cannot fit more components than "
                              f"points); got M = {int(np.min(sizes))}")
        self.policy.check_sizes(sizes)

    @property
    def dim(self) -> int:
        return self.initial.dim

    def family(self):
        return gmm(self.components, self.dim, covariance_type=self.covariance_type, iterations=self.iterations,
                   init=self.init, reg_covar=self.reg_covar, kmeans_iterations=self.kmeans_iterations)

    def initial_params(self) -> GMMParams:
        """p_0, padded with zero-weight components up to k (generation 0 is p_0 itself)."""
        p0 = self.initial
        missing = self.components - p0.components
        weights = np.concatenate([p0.weights, np.zeros(missing)])
        means = np.concatenate([np.asarray(p0.means), np.zeros((missing, self.dim))])
        covs = np.concatenate([np.asarray(p0.covs), np.broadcast_to(np.eye(self.dim), (missing, self.dim, self.dim))])
        return gmm_params(weights, means, covs)

    def reference(self):
        heldout = sample(jax.random.key(self.heldout_seed), self.initial.params(), self.heldout)
        return gmm_reference(self.initial.params(), heldout)

    def program(self) -> ChainProgram:
        reference = self.reference()
        p0 = self.initial.params()
        thresholds = (self.weight_threshold, self.variance_threshold)
        return data_path_program(
            self.family(), self.policy, self.sizes, lambda key, n: sample(key, p0, n), self.initial_params(),
            metrics=lambda params: metrics(params, reference, *thresholds), metric_names=METRIC_NAMES,
            preferred_chunk=PREFERRED_CHUNK, num_generations=self.generations,
            # EM amplifies the last bits XLA:CPU rounds by batch size; blocks of 16 chains
            # make a chain's run independent of its chunk, at no measured cost
            chain_block=LANE_BLOCK,
        )

    def theory_curves(self) -> list:
        return []  # EM chains have no closed form; the Gaussian and discrete studies check theory

    def summary_metrics(self) -> tuple[str, ...]:
        return METRIC_NAMES

    def quantile_metrics(self) -> tuple[str, ...]:
        return ("l2_distance",)  # heavy-tailed: Figure 13 shows its median and bands

    def describe(self) -> list[str]:
        return [
            f"p0: {self.initial.describe()}",
            f"model: {self.components} components, {self.covariance_type} covariances, {self.iterations} EM iterations "
            f"per generation from init {self.init}, reg_covar {self.reg_covar:g}",
            f"regime: {self.policy.describe()}; schedule: {self.schedule.describe()}",
            f"collapsed component: weight < {self.weight_threshold:g} or det(cov)^(1/d) < {self.variance_threshold:g}",
        ]

    def write_figures(self, result, settings, folder) -> list[str]:
        from ..plots import write_study_figures

        return write_study_figures(self, settings, result, folder)

    def to_json(self) -> dict:
        return {
            "generations": self.generations, "schedule": self.schedule.to_json(), "regime": self.policy.to_json(),
            "components": self.components, "covariance_type": self.covariance_type, "iterations": self.iterations,
            "init": self.init, "reg_covar": self.reg_covar, "kmeans_iterations": self.kmeans_iterations,
            "initial": self.initial.to_json(), "heldout": self.heldout, "heldout_seed": self.heldout_seed,
            "weight_threshold": self.weight_threshold, "variance_threshold": self.variance_threshold,
        }

    @classmethod
    def from_json(cls, blob: dict) -> "GMMStudy":
        blob = dict(blob)
        return cls(
            generations=int(blob.pop("generations")), schedule=Schedule.from_json(blob.pop("schedule")),
            policy=DataPolicy.from_json(blob.pop("regime")), initial=GMMInitial.from_json(blob.pop("initial")),
            **blob,
        )


def gmm_study(
    samples: int = 1000,
    generations: int = 100,
    *,
    components: int = 2,
    covariance_type: str = "full",
    iterations: int = 20,
    init: str = "previous",
    reg_covar: float = 1e-6,
    kmeans_iterations: int = 10,
    p0: str | GMMInitial = "two-blobs",
    dim: int = 2,
    schedule: str | Schedule = "constant",
    regime: str | DataPolicy = "replace",
    heldout: int = 1000,
    weight_threshold: float = 0.01,
    variance_threshold: float = 1e-3,
) -> GMMStudy:
    """Build a :class:`GMMStudy` from plain values (validated on the host)."""
    samples = require_int("samples", samples, 1)
    if not isinstance(schedule, Schedule):
        schedule = parse_schedule(schedule, samples)
    if not isinstance(regime, DataPolicy):
        regime = parse_policy(regime)
    if not isinstance(p0, GMMInitial):
        p0 = parse_gmm_initial(p0, dim)
    return GMMStudy(
        generations=generations, schedule=schedule, policy=regime, components=components,
        covariance_type=covariance_type, iterations=iterations, init=init, reg_covar=reg_covar,
        kmeans_iterations=kmeans_iterations, initial=p0, heldout=heldout, weight_threshold=weight_threshold,
        variance_threshold=variance_threshold,
    )


# ----------------------------------------------------------------------------- the command

def _build(values: dict):
    study = gmm_study(
        samples=values["samples"], generations=values["generations"], components=values["components"],
        covariance_type=values["covariance"], iterations=values["iterations"], init=values["init"],
        reg_covar=values["reg_covar"], kmeans_iterations=values["kmeans_iterations"], p0=values["p0"],
        dim=values["dim"], schedule=values["schedule"], regime=values["regime"], heldout=values["heldout"],
        weight_threshold=values["weight_threshold"], variance_threshold=values["variance_threshold"],
    )
    return study, run_settings(values, quantiles=values["quantiles"], figure_samples=values["figure_samples"])


COMMAND = StudyCommand(
    name="gmm",
    help="Gaussian mixtures refitted by EM (paper section 5.1, Figures 7 and 13)",
    options=chain_options(chains=200, generations=200, samples=1000) + (
        Option("components", 2, "k, components of the fitted mixture (default 2)", int),
        Option("covariance", "full", "full | diag | spherical (default full)"),
        Option("iterations", 20, "EM iterations per generation (default 20)", int),
        Option("init", "previous", "previous (warm start) | kmeans++ | kmeans (default previous)"),
        Option("kmeans_iterations", 10, "Lloyd steps of the kmeans start (default 10)", int),
        Option("reg_covar", 1e-6, "covariance floor added to every diagonal (default 1e-6)", float),
        Option("p0", "two-blobs", "two-blobs | two-blobs:SEPARATION | blob (default two-blobs)"),
        Option("dim", 2, "dimension d (default 2)", int),
        Option("heldout", 1000, "held-out real points for the log-likelihood (default 1000)", int),
        Option("weight_threshold", 0.01, "a component lighter than this has collapsed", float),
        Option("variance_threshold", 1e-3, "a component with det(cov)^(1/d) below this has collapsed", float),
    ) + run_options("results/gmm") + (
        Option("quantiles", (0.05, 0.5, 0.95), "of the L2 distance", floats),
        Option("figure_samples", None, "extra M of Figure 13, 64 chains each (default 100,300)", ints),
    ),
    build=_build,
    from_json=GMMStudy.from_json,
    rank=2,
)
