"""The linear-regression study and its ``regression`` command: collapse chains of a model
refitted on its own labels (Gerstgrasser et al. 2024; Dohmatob et al. 2024).

A design X (T rows, d features) stays fixed along a chain. Generation 0 is the true
weight vector w*; generation n + 1 is the ordinary least-squares fit to the labels
y_n = X w_n + sigma eps_n (eps_n ~ N(0, I_T)). Regimes: ``replace`` fits the newest T
labels only; ``accumulate`` fits every labelled block so far. All blocks share X, so the
stacked fit is (X^T X)^{-1} X^T (y_0 + ... + y_n) / (n + 1): a chain carries the running
mean of X^T y_k, O(T d) per generation however long the chain.

Designs: ``per-chain`` (default) draws X with i.i.d. N(0, 1) entries once per chain, at
generation 0, from the chain's random words, and caches the Cholesky factor L of
X^T X = L L^T in the chain's parameters (never refactorised); ``shared`` uses one design
for every chain, drawn on the host from ``design_seed`` or given by the user.

Paths: ``data`` materialises the T labels and solves the least squares with L (two
triangular solves); ``sufficient`` (``auto``) draws the OLS noise directly,
w_{n+1} - w_n = sigma L^{-T} z / b_n with z ~ N(0, I_d) and b_n = 1 (replace) or n + 1
(accumulate): L^{-T} z ~ N(0, (X^T X)^{-1}), the exact law of (X^T X)^{-1} X^T eps, so both
paths give the same distribution (tested). Metrics: ``test_error`` = ||w_n - w*||^2 (the
excess error at a test point x ~ N(0, I_d)), ``weight_norm`` = ||w_n||^2 and
``train_error`` = ||X (w_n - w*)||^2 / T. Closed forms: :mod:`jaxcollapse.theory.regression`;
the family's pieces (labels, fit, noise, metrics): :mod:`jaxcollapse.families.regression`.

Examples:
    >>> from jaxcollapse import simulate
    >>> study = regression_study(samples=40, dim=4, generations=3, regime="accumulate")
    >>> result = simulate(study.program(), num_chains=32, num_generations=3, seed=0)
    >>> result.summary("test_error")["mean"].shape
    (4,)
    >>> [round(float(v), 4) for v in study.theory_curves()[0].values]  # c_n sigma^2 d / (T - d - 1)
    [0.0, 0.1143, 0.1429, 0.1556]
    >>> study, _ = COMMAND.build(COMMAND.values({"samples": 30, "dim": 3, "generations": 2}))
    >>> study.samples, study.dim
    (30, 3)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._random import key_from_words, normals_from_words
from .._validation import (
    ConfigError, nested_tuple, require_choice, require_generations, require_int, require_scale,
)
from ..check import Curve
from ..engine import ChainProgram
from ..families.regression import (
    METRICS, RegressionParams, gaussian_design, least_squares, metrics, ols_noise, sample_labels,
)
from ..families.regression import condition as _condition
from ..policies import DataPolicy, parse_policy
from ..theory import regression as theory
from .base import ChainStudy, Option, StudyCommand, run_options, run_settings

__all__ = [
    "RegressionParams", "RegressionStudy", "regression_study", "REGRESSION_REGIMES", "DESIGNS", "PATHS",
    "METRICS", "COMMAND",
]

REGRESSION_REGIMES = ("replace", "accumulate")
DESIGNS = ("per-chain", "shared")
PATHS = ("auto", "data", "sufficient")
# cond(X^T X) above which a shared design is refused: its least-squares fit is not
# determined to any useful accuracy even in float64 (eps ~ 1e-16)
CONDITION_LIMIT = 1e10
# in float32 (eps ~ 6e-8) a Cholesky solve loses cond(X^T X) * eps of relative accuracy
FLOAT32_CONDITION_LIMIT = 1e6
_DESIGN_WORDS = 2  # the key of a per-chain design


class _LabelState(NamedTuple):
    """Data path: the chain's own design X (per-chain mode, else None) and, for
    accumulate, the running mean of X^T y_k over the blocks so far (else None)."""

    design: Any = None
    moment: Any = None


def _as_matrix(name: str, value) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} must be a numeric array; got {value!r}") from error
    return array


@dataclass(frozen=True)
class RegressionStudy(ChainStudy):
    """Everything that defines a regression chain; chains and seed are run settings.

    ``design_matrix`` (a user's shared design) and ``true_weights`` are stored as
    (nested) tuples of floats, so the study stays hashable and JSON-serialisable; arrays
    and lists are converted on construction.
    """

    generations: int
    samples: int = 100
    dim: int = 10
    noise: float = 1.0
    policy: DataPolicy = DataPolicy()
    design: str = "per-chain"
    design_seed: int = 0
    design_matrix: tuple | None = None
    true_weights: tuple | None = None
    path: str = "auto"

    command: ClassVar[str] = "regression"

    def __post_init__(self):
        # plain Python numbers, so that to_json never meets a numpy scalar
        object.__setattr__(self, "generations", require_generations(self.generations))
        dim = require_int("dim d", self.dim, 1, 4096, "every chain solves a d x d least-squares system")
        samples = require_int("samples T", self.samples, 1)
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "samples", samples)
        if samples < dim:
            raise ConfigError(
                f"samples T must be >= dim d = {dim} (with fewer rows than features the least-squares fit "
                f"is not unique); got T = {samples}"
            )
        object.__setattr__(self, "noise", require_scale("noise sigma", self.noise))
        if isinstance(self.policy, str) and self.policy.partition(":")[0] in REGRESSION_REGIMES:
            object.__setattr__(self, "policy", parse_policy(self.policy))
        if not isinstance(self.policy, DataPolicy) or self.policy.kind not in REGRESSION_REGIMES:
            shown = self.policy.describe() if isinstance(self.policy, DataPolicy) else self.policy
            raise ConfigError(
                f"regression chains support the regimes {', '.join(map(repr, REGRESSION_REGIMES))}; got {shown!r}"
            )
        require_choice("design", self.design, DESIGNS)
        object.__setattr__(self, "design_seed", require_int("design_seed", self.design_seed, 0))
        require_choice("path", self.path, PATHS)
        if self.true_weights is not None:
            weights = _as_matrix("true_weights", self.true_weights)
            if weights.shape != (dim,):
                raise ConfigError(f"true_weights must be a vector of d = {dim} numbers; got shape {weights.shape}")
            if not np.all(np.isfinite(weights)):
                raise ConfigError("true_weights must be finite (no NaN or inf)")
            object.__setattr__(self, "true_weights", nested_tuple(weights))
        if self.design_matrix is not None:
            if self.design != "shared":
                raise ConfigError("a design matrix is a shared design: pass design='shared' with it")
            matrix = _as_matrix("design", self.design_matrix)
            if matrix.shape != (samples, dim):
                raise ConfigError(
                    f"design must have shape (samples T, dim d) = ({samples}, {dim}); got shape {matrix.shape} "
                    f"(pass samples and dim to match it)"
                )
            if not np.all(np.isfinite(matrix)):
                raise ConfigError("design must be finite (no NaN or inf)")
            object.__setattr__(self, "design_matrix", nested_tuple(matrix))
        if self.design == "per-chain" and samples <= dim + 1:
            raise ConfigError(
                f"a per-chain Gaussian design needs samples T > dim + 1 = {dim + 1}: E tr (X^T X)^{{-1}} = "
                f"d / (T - d - 1), and with it the published E[test_error], is infinite otherwise; got T = {samples} "
                f"(use design='shared' for a fixed design with T >= d)"
            )
        if self.design == "shared":
            condition = self.design_condition
            if not condition <= CONDITION_LIMIT:
                rank = int(np.linalg.matrix_rank(self.design_array()))
                raise ConfigError(
                    f"the shared design is singular or ill-conditioned: cond(X^T X) = {condition:.3g} > "
                    f"{CONDITION_LIMIT:g} in float64 (numerical rank {rank} of d = {dim}); the least-squares fit "
                    f"needs d linearly independent, well-scaled columns"
                )

    # -- the design ------------------------------------------------------------------

    @property
    def sizes(self) -> np.ndarray:
        """T labels fit every generation."""
        return np.full(self.generations, self.samples, dtype=np.int64)

    @property
    def resolved_path(self) -> str:
        """``auto`` takes the exact sufficient-statistics path (every regime has one)."""
        return "sufficient" if self.path == "auto" else self.path

    @property
    def weights_star(self) -> np.ndarray:
        """w* (float64): ``true_weights`` or ones(d) / sqrt(d)."""
        if self.true_weights is None:
            return np.ones(self.dim) / np.sqrt(self.dim)
        return np.asarray(self.true_weights, np.float64)

    def design_array(self) -> np.ndarray | None:
        """The shared design X (T, d) in float64 (read-only), or None for per-chain designs."""
        return _shared_design(self.design, self.design_seed, self.design_matrix, self.samples, self.dim)

    @property
    def design_condition(self) -> float:
        """cond(X^T X) of the shared design (float64); NaN for per-chain designs."""
        design = self.design_array()
        if design is None:
            return float("nan")
        return _condition(design)

    # -- the chain -------------------------------------------------------------------

    def program(self) -> ChainProgram:
        dtype = jnp.result_type(float)
        if self.design == "shared" and dtype == jnp.float32 and self.design_condition > FLOAT32_CONDITION_LIMIT:
            raise ConfigError(
                f"the shared design has cond(X^T X) = {self.design_condition:.3g} > {FLOAT32_CONDITION_LIMIT:g}: "
                f"in float32 its least-squares solves lose most of their digits; enable float64 "
                f"(jax_enable_x64, the CLI's --x64) or use a better-conditioned design"
            )
        samples, dim, noise = self.samples, self.dim, float(self.noise)
        weights_star = jnp.asarray(self.weights_star, dtype)
        per_chain = self.design == "per-chain"
        accumulate = self.policy.kind == "accumulate"
        data_path = self.resolved_path == "data"
        if per_chain:
            shared_design = shared_cholesky = shared_noise_factor = None
        else:
            design = self.design_array()
            shared_design = jnp.asarray(design, dtype)
            # factorised once on the host in float64, then rounded: more accurate than a
            # float32 factorisation of a rounded X^T X
            factor = np.linalg.cholesky(design.T @ design)
            shared_cholesky = jnp.asarray(factor, dtype)
            # L^{-T} itself: one matrix product per chain instead of a triangular solve
            # against a factor every chain shares (which batches poorly on CPU)
            shared_noise_factor = jnp.asarray(np.linalg.inv(factor).T, dtype)
        noise_words = _DESIGN_WORDS if per_chain else 0

        def draw_design(words):
            """Generation 0 of a per-chain design: X with N(0, 1) entries and its factor."""
            return gaussian_design(key_from_words(words[:_DESIGN_WORDS]), samples, dim, dtype)

        def chain_design(words, params, state, n):
            """(X or None, L): drawn at n = 0, afterwards the cached copies."""
            if not per_chain:
                return shared_design, shared_cholesky
            if data_path:
                return jax.lax.cond(n == 0, lambda: draw_design(words), lambda: (state.design, params.gram_cholesky))
            # the sufficient path never needs X again: only its factor is kept
            return None, jax.lax.cond(n == 0, lambda: draw_design(words)[1], lambda: params.gram_cholesky)

        def fit_labels(words, design, cholesky, weights, state, n):
            """OLS on materialised labels; accumulate averages X^T y over the blocks."""
            key = key_from_words(words[noise_words:noise_words + 2])
            labels = sample_labels(key, design, weights, noise, dtype)
            moment = design.T @ labels
            if accumulate:
                # the running mean, not the sum: it stays O(1) in float32 however long the chain
                moment = jnp.where(n == 0, moment, state.moment + (moment - state.moment) / (n + 1).astype(dtype))
            state = _LabelState(design if per_chain else None, moment if accumulate else None)
            return least_squares(cholesky, moment), state

        def draw_fit_noise(words, cholesky, weights, n):
            """w_n + sigma L^{-T} z / b_n: the OLS noise drawn directly, exact."""
            z = normals_from_words(words[noise_words:noise_words + dim], dtype)
            if per_chain:
                step = noise * ols_noise(cholesky, z)
            else:
                step = noise * (shared_noise_factor @ z)
            if accumulate:
                step = step / (n + 1).astype(dtype)
            return weights + step

        def step(words, carry, n):
            params, state = carry
            design, cholesky = chain_design(words, params, state, n)
            if data_path:
                weights, state = fit_labels(words, design, cholesky, params.weights, state, n)
            else:
                weights = draw_fit_noise(words, cholesky, params.weights, n)
            return RegressionParams(weights, cholesky if per_chain else None), state

        def chain_metrics(params):
            cholesky = params.gram_cholesky if per_chain else shared_cholesky
            return metrics(params.weights, cholesky, weights_star, samples)

        def initial_state():
            if not data_path:
                return ()
            return _LabelState(
                jnp.zeros((samples, dim), dtype) if per_chain else None,
                jnp.zeros(dim, dtype) if accumulate else None,
            )

        initial = RegressionParams(weights_star, jnp.zeros((dim, dim), dtype) if per_chain else None)
        # floats in the working set: labels, X and its temporaries on the data path
        # (X is drawn at generation 0 on either path), factors and triangular solves
        floats = 3 * dim * dim + 8 * dim
        if data_path:
            floats += 4 * samples + (3 * samples * dim if per_chain else 0)
        elif per_chain:
            floats += 2 * samples * dim
        words_per_step = noise_words + (2 if data_path else dim)
        return ChainProgram(
            initial_params=initial,
            initial_state=initial_state,
            step=step,
            metrics=chain_metrics,
            bytes_per_chain=int(jnp.dtype(dtype).itemsize * floats + 4 * words_per_step),
            metric_names=METRICS,
            words_per_step=words_per_step,
            num_generations=self.generations,
        )

    # -- theory and reports ----------------------------------------------------------

    def exact_moments(self) -> dict[str, np.ndarray]:
        """Exact moments of the metrics over generations 0..G (see
        :mod:`jaxcollapse.theory.regression`): fixed-design formulas for a shared design,
        averages over Gaussian designs for per-chain designs."""
        regime = self.policy.kind
        if self.design == "shared":
            return theory.fixed_design_exact(self.design_array(), self.noise, self.generations, regime, self.weights_star)
        return theory.random_design_exact(self.samples, self.dim, self.noise, self.generations, regime, self.weights_star)

    def theory_curves(self) -> list:
        """Every formula that applies, as :class:`jaxcollapse.check.Curve` over 0..G.

        Exact means of the three metrics (each with its exact variance across chains,
        where finite, for an exact standard error), exact variances of ``test_error`` and
        ``train_error`` (with their fourth central moments where finite). A per-chain
        accumulate chain also gets the published bound sigma^2 d / (T - d - 1) pi^2 / 6.

        A shared design also gets the published E[test_error] = c_n sigma^2 d / (T - d - 1)
        (kind "expansion", column ``test_error_published``). That formula is the average
        over random Gaussian designs; for the one fixed design every chain shares, the
        truth is c_n sigma^2 tr (X^T X)^{-1}, off by the factor tr (X^T X)^{-1} /
        (d / (T - d - 1)), whose spread over designs is sqrt(2 (T-1) / (d (T-d) (T-d-3)))
        (5 % at T = 100, d = 10; design_seed 0 there gives +7.9 %, z ~ 17 with 10^4 chains).
        With enough chains the check therefore reports the published formula as
        DISAGREEING: an honest finding about what the formula describes (an average over
        designs), not a bug in the simulation.
        """
        exact = self.exact_moments()
        shared = self.design == "shared"
        formula = "exact (fixed design)" if shared else "exact (random design)"

        def finite(values):
            return values if np.all(np.isfinite(values)) else None

        curves = [
            Curve(f"E[{metric}]", formula, "exact", f"{metric}_exact", exact[metric],
                  variance=finite(exact[f"{metric}_var"]))
            for metric in METRICS
        ]
        for metric in ("test_error", "train_error"):
            if finite(exact[f"{metric}_var"]) is not None:
                curves.append(Curve(f"Var[{metric}]", formula, "exact", f"{metric}_var_exact", exact[f"{metric}_var"],
                                    central4=finite(exact[f"{metric}_central4"])))
        fits_published = self.samples > self.dim + 1
        if shared and fits_published:
            published = theory.published_test_error(self.samples, self.dim, self.noise, self.generations,
                                                    self.policy.kind)
            curves.append(Curve("E[test_error]", "published (random design)", "expansion", "test_error_published",
                                published, variance=finite(exact["test_error_var"])))
        if not shared and self.policy.kind == "accumulate":
            limit = theory.accumulate_limit(self.samples, self.dim, self.noise)
            curves.append(Curve("E[test_error]", "published limit (pi^2/6)", "upper bound", "test_error_limit",
                                np.full(self.generations + 1, limit)))
        return curves

    def describe(self) -> list[str]:
        """One-line facts for a report."""
        if self.design == "per-chain":
            design = "per-chain Gaussian design (i.i.d. N(0, 1) entries, drawn once per chain)"
        else:
            source = "given by the user" if self.design_matrix is not None else f"drawn from design_seed {self.design_seed}"
            design = f"shared design {source}, cond(X^T X) = {self.design_condition:.3g}"
        weights = "ones(d) / sqrt(d)" if self.true_weights is None else "given"
        path = self.resolved_path + (" (auto)" if self.path == "auto" else "")
        return [
            f"linear regression: T = {self.samples} samples, d = {self.dim} features, noise sigma = {self.noise:g}",
            f"design: {design}",
            f"true weights w*: {weights}, ||w*||^2 = {float(self.weights_star @ self.weights_star):.6g}",
            f"regime: {self.policy.describe()}; path: {path}; generations: {self.generations}",
        ]

    def summary_metrics(self) -> tuple[str, ...]:
        return METRICS

    def write_figures(self, result, settings, folder) -> list[str]:
        from ..plots import write_study_figures

        return write_study_figures(self, settings, result, folder)

    def to_json(self) -> dict:
        return {
            "generations": self.generations, "samples": self.samples, "dim": self.dim, "noise": self.noise,
            "regime": self.policy.to_json(), "design": self.design, "design_seed": self.design_seed,
            "design_matrix": None if self.design_matrix is None else [list(row) for row in self.design_matrix],
            "true_weights": None if self.true_weights is None else list(self.true_weights), "path": self.path,
        }

    @classmethod
    def from_json(cls, blob: dict) -> "RegressionStudy":
        return cls(
            generations=int(blob["generations"]), samples=int(blob["samples"]), dim=int(blob["dim"]),
            noise=float(blob["noise"]), policy=DataPolicy.from_json(blob["regime"]), design=blob["design"],
            design_seed=int(blob["design_seed"]), design_matrix=blob.get("design_matrix"),
            true_weights=blob.get("true_weights"), path=blob["path"],
        )


@functools.lru_cache(maxsize=8)  # validation, program and theory all ask for it
def _shared_design(design: str, seed: int, matrix: tuple | None, samples: int, dim: int) -> np.ndarray | None:
    if design != "shared":
        return None
    if matrix is not None:
        array = np.array(matrix, dtype=np.float64)
    else:
        array = np.random.default_rng(seed).standard_normal((samples, dim))
    array.flags.writeable = False
    return array


def regression_study(
    samples: int = 100,
    dim: int = 10,
    generations: int = 20,
    *,
    noise: float = 1.0,
    regime: str | DataPolicy = "replace",
    design: str | np.ndarray = "per-chain",
    design_seed: int = 0,
    true_weights=None,
    path: str = "auto",
) -> RegressionStudy:
    """Build a :class:`RegressionStudy` from plain values (validated on the host).

    ``samples`` is T, ``dim`` d, ``noise`` sigma; ``regime`` is "replace", "accumulate" or
    a :class:`DataPolicy` of either kind; ``design`` is "per-chain", "shared" (drawn from
    ``design_seed``) or a (T, d) array (a shared design of your own); ``true_weights``
    defaults to ones(d) / sqrt(d).

    Examples:
        >>> regression_study(samples=50, dim=5, regime="accumulate").policy.kind
        'accumulate'
    """
    if isinstance(regime, str):
        kind = regime.partition(":")[0]
        if kind not in REGRESSION_REGIMES:
            raise ConfigError(f"regression chains support the regimes {', '.join(map(repr, REGRESSION_REGIMES))}; "
                              f"got {regime!r}")
        regime = parse_policy(regime)
    design_matrix = None
    if not isinstance(design, str):
        design_matrix = _as_matrix("design", design)
        if design_matrix.ndim != 2:
            raise ConfigError(f"design must be a (samples T, dim d) matrix; got shape {design_matrix.shape}")
        design = "shared"
    return RegressionStudy(
        generations=generations, samples=samples, dim=dim, noise=noise, policy=regime, design=design,
        design_seed=design_seed, design_matrix=design_matrix, true_weights=true_weights, path=path,
    )


# ----------------------------------------------------------------------------- the command

def _build(values: dict):
    design, samples, dim = values["design"], values["samples"], values["dim"]
    if values["design_file"] is not None:
        try:
            design = np.loadtxt(values["design_file"], delimiter=",", ndmin=2)
        except (OSError, ValueError) as error:
            raise ConfigError(f"could not read --design-file {values['design_file']!r} as CSV numbers: "
                              f"{error}") from error
        samples, dim = design.shape
    study = regression_study(
        samples=samples, dim=dim, generations=values["generations"], noise=values["noise"],
        regime=values["regime"], design=design, design_seed=values["design_seed"], path=values["path"],
    )
    return study, run_settings(values)


COMMAND = StudyCommand(
    name="regression",
    help="linear regression refitted on its own labels (Gerstgrasser et al. 2024)",
    options=(
        Option("chains", 10_000, "independent chains (default 10000)", int),
        Option("generations", 50, "fitted generations G (default 50)", int),
        Option("samples", 100, "T, rows of the fixed design (default 100)", int),
        Option("dim", 10, "d, features (default 10)", int),
        Option("noise", 1.0, "sigma, label noise (default 1)", float),
        Option("regime", "replace", "replace | accumulate (default replace)"),
        Option("design", "per-chain", "per-chain (a Gaussian design per chain) | shared (one for all chains)"),
        Option("design_seed", 0, "seed of the shared design (default 0)", int),
        Option("design_file", None, "CSV of a shared design, T rows of d numbers (overrides --design and --samples)"),
        Option("path", "auto", "auto | data | sufficient (default auto)"),
    ) + run_options("results/regression"),
    build=_build,
    from_json=RegressionStudy.from_json,
    rank=4,
)
