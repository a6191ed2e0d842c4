"""The discrete study and its ``discrete`` command: recursion chains of histograms
(categorical over K states), Bernoulli, Poisson.

Paper section 4.1: with exact functional approximation (fit = empirical frequencies) the
chain is the Wright-Fisher model of population genetics. Generation 0 is p_0; D_0 holds
M_0 draws from p_0; generation n + 1 is fitted to D_n, built by the data policy.

Two exact paths give the same distribution of every generation:

* ``data``: M_n categorical (Poisson) draws, then a weighted histogram (mean): every data
  policy of :mod:`jaxcollapse.policies` applies;
* ``counts``: the K counts drawn directly (a multinomial on a splitting tree,
  :mod:`jaxcollapse._counts`; the sum of a Poisson sample is one Poisson draw), O(K) work
  and memory independent of M. Categorical chains take every regime but real-fraction
  here (resampling a pool or the previous data set, and the alpha/beta/gamma mix, are
  multinomials of a mixture of histograms); Poisson chains take replace, accumulate and
  fresh-real.

A chain is *absorbed* when p_n is a delta (a Poisson chain when lambda_n = 0); the engine
carries the generation at which that happened. The families themselves (fit, sample,
metrics, the counts samplers) are :mod:`jaxcollapse.families.discrete`; ``COMMAND`` is
the ``discrete`` study command.

Examples:
    >>> import jaxcollapse as jc
    >>> study = discrete_study(samples=20, generations=30, states=5, init="uniform")
    >>> result = jc.simulate(study.program(), num_chains=256, num_generations=30, seed=0)
    >>> result.summary("heterozygosity")["mean"].shape
    (31,)
    >>> study, settings = COMMAND.build(COMMAND.values({"family": "poisson", "samples": 10, "generations": 2}))
    >>> study.kind, study.initial.describe()
    ('poisson', 'Poisson(1)')
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from .._files import atomic_text
from .._random import key_from_words
from .._validation import (
    ConfigError, require_choice, require_finite, require_generations, require_int, require_memory, require_number,
    require_positive,
)
from ..check import Curve, TheoryRow, theory_table
from ..engine import ChainProgram
from ..families.discrete import (
    CATEGORICAL_METRICS, KINDS, MAX_COUNT, PER_STATE_METRICS, POISSON_METRICS, DiscreteParams, count_fit,
    discrete_reference, draw_counts, histogram, poisson_total, sample,
)
from ..families.discrete import absorbed as _absorbed
from ..families.discrete import categorical_metrics as _categorical_metrics
from ..families.discrete import poisson_metrics as _poisson_metrics
from ..policies import DataPolicy, data_program, parse_policy
from ..schedules import Schedule, parse_schedule
from ..tables import csv_text, generation_columns, metric_columns, number, table
from ..theory import discrete as theory
from .base import ChainStudy, Option, StudyCommand, chain_options, run_options, run_settings

__all__ = [
    "DiscreteInitial", "DiscreteStudy", "DiscreteParams", "discrete_study", "parse_discrete_initial",
    "probability_vector", "zipf_probabilities", "mixture_probabilities", "KINDS", "DISCRETE_PATHS",
    "PER_STATE_METRICS", "FINAL_METRICS", "PROBABILITY_TOLERANCE", "COMMAND",
]

DISCRETE_PATHS = ("auto", "data", "counts")
COUNTS_REGIMES = {
    "categorical": ("replace", "accumulate", "accumulate-subsample", "fresh-real", "mix"),
    "bernoulli": ("replace", "accumulate", "accumulate-subsample", "fresh-real", "mix"),
    "poisson": ("replace", "accumulate", "fresh-real"),
}
FINAL_METRICS = ("absorption_generation", "absorbed_state")
PROBABILITY_TOLERANCE = 1e-6
DISCRETE_REQUIRED_COLUMNS = (
    "generation", "samples", "support_mean", "support_se", "heterozygosity_mean", "heterozygosity_se",
    "heterozygosity_exact", "absorbed_fraction",
)


# ----------------------------------------------------------------------------- p_0


def probability_vector(name: str, values, tol: float = PROBABILITY_TOLERANCE) -> np.ndarray:
    """A validated probability vector: finite, non-negative, summing to 1 within ``tol``."""
    probs = np.asarray(values, dtype=np.float64).reshape(-1)
    if probs.size < 1:
        raise ConfigError(f"{name} needs K >= 1 states; got an empty vector")
    if not np.all(np.isfinite(probs)):
        raise ConfigError(f"{name} must be finite (no NaN or inf); got {values!r}")
    if np.any(probs < 0):
        raise ConfigError(f"{name} must be non-negative; state {int(np.argmin(probs))} has {probs.min():g}")
    if abs(probs.sum() - 1.0) > tol:
        raise ConfigError(f"{name} must sum to 1 (within {tol:g}); it sums to {probs.sum():.12g}")
    return probs / probs.sum()


def zipf_probabilities(states: int, exponent: float) -> np.ndarray:
    """p_i proportional to (i + 1)^-s over K states."""
    ranks = np.arange(1, states + 1, dtype=np.float64)
    weights = ranks ** -float(exponent)
    return weights / weights.sum()


def mixture_probabilities(states: int, fat_tailed: bool = False, low: float = -10.0, high: float = 10.0):
    """The paper's Figure 3 histogram: 1/2 N(-4, 1) + 1/2 N(4, 1) binned on K equal bins of
    [low, high] (the fat-tailed variant uses Student-t components with 3 degrees of
    freedom), renormalised to the window. Returns (probabilities, bin centres)."""
    edges = np.linspace(low, high, states + 1)
    component = stats.t(df=3) if fat_tailed else stats.norm()
    cdf = 0.5 * component.cdf(edges + 4.0) + 0.5 * component.cdf(edges - 4.0)
    mass = np.diff(cdf)
    return mass / mass.sum(), 0.5 * (edges[1:] + edges[:-1])


@dataclass(frozen=True)
class DiscreteInitial:
    """p_0 of a discrete chain: ``probs`` over K states (a Bernoulli p is (1 - p, p)) with
    ordinal positions ``grid`` (for W1), or the rate ``rate`` of a Poisson chain."""

    spec: str
    probs: tuple[float, ...] = ()
    grid: tuple[float, ...] = ()
    rate: float = 0.0

    @property
    def states(self) -> int:
        return len(self.probs)

    def describe(self) -> str:
        if self.rate:
            return f"Poisson({self.rate:g})"
        return f"{self.spec} over {self.states} states"

    def to_json(self) -> dict:
        return {"spec": self.spec, "probs": list(self.probs), "grid": list(self.grid), "rate": self.rate}

    @classmethod
    def from_json(cls, blob: dict) -> "DiscreteInitial":
        return cls(blob["spec"], tuple(blob["probs"]), tuple(blob["grid"]), float(blob["rate"]))


def parse_discrete_initial(text: str, states: int = 20, kind: str = "categorical") -> DiscreteInitial:
    """p_0 from its CLI spelling.

    Categorical: ``uniform``, ``zipf:S``, ``mixture`` (the paper's Figure 3),
    ``fat-mixture``, ``probs:P1,P2,...``; Bernoulli: ``bernoulli:P`` (or ``P``);
    Poisson: ``poisson:LAMBDA`` (or ``LAMBDA``).

    Examples:
        >>> parse_discrete_initial("zipf:1.1", states=4).states
        4
    """
    require_choice("family", kind, KINDS)
    if not isinstance(text, str):
        raise ConfigError(f"init must be a string: uniform, zipf:S, mixture, fat-mixture, probs:P1,P2,..., "
                          f"bernoulli:P or poisson:LAMBDA; got {text!r}")
    name, _, argument = text.partition(":")

    def number(label):
        try:
            return float(argument if argument else name)
        except ValueError as error:
            raise ConfigError(f"could not read {label} in init {text!r}") from error

    if kind == "poisson":
        if name not in ("poisson",) and argument:
            raise ConfigError(f"a Poisson chain takes init poisson:LAMBDA; got {text!r}")
        rate = require_positive("Poisson rate lambda_0", number("the rate"))
        return DiscreteInitial(f"poisson:{rate:g}", rate=rate)
    if kind == "bernoulli":
        if name not in ("bernoulli",) and argument:
            raise ConfigError(f"a Bernoulli chain takes init bernoulli:P; got {text!r}")
        p = number("the probability")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"Bernoulli probability must lie in [0, 1]; got {p!r}")
        return DiscreteInitial(f"bernoulli:{p:g}", (1.0 - p, p), (0.0, 1.0))
    states = require_int("states K", states, 1)
    # p_0 and every chain's histogram hold K numbers (as tuples here, ~100 bytes a state)
    require_memory(f"a distribution over {states} states", 128 * states, "lower --states")
    grid = tuple(float(i) for i in range(states))
    if name == "uniform" and not argument:
        return DiscreteInitial("uniform", tuple(np.full(states, 1.0 / states)), grid)
    if name == "zipf":
        exponent = require_positive("Zipf exponent s", number("the exponent"))
        return DiscreteInitial(f"zipf:{exponent:g}", tuple(zipf_probabilities(states, exponent)), grid)
    if name in ("mixture", "fat-mixture") and not argument:
        probs, centres = mixture_probabilities(states, fat_tailed=name == "fat-mixture")
        return DiscreteInitial(name, tuple(probs), tuple(centres))
    if name == "probs":
        try:
            values = [float(v) for v in argument.split(",") if v.strip()]
        except ValueError as error:
            raise ConfigError(f"could not read the probabilities in init {text!r}") from error
        probs = probability_vector("init probabilities", values)
        return DiscreteInitial("probs", tuple(probs), tuple(float(i) for i in range(len(probs))))
    raise ConfigError(
        f"unknown init {text!r}; choose uniform, zipf:S, mixture, fat-mixture or probs:P1,P2,... "
        "(bernoulli:P and poisson:LAMBDA with --family)"
    )


def initial_from_probs(probs, grid=None) -> DiscreteInitial:
    """A categorical p_0 from an explicit probability vector."""
    probs = probability_vector("p0", probs)
    grid = tuple(float(v) for v in (range(len(probs)) if grid is None else require_finite("grid", grid)))
    if len(grid) != len(probs):
        raise ConfigError(f"grid must have one position per state ({len(probs)}); got {len(grid)}")
    return DiscreteInitial("probs", tuple(probs), grid)


# ----------------------------------------------------------------------------- chains


MAX_POISSON_TOTAL = 2.0**31 / 64


@dataclass(frozen=True)
class DiscreteStudy(ChainStudy):
    """Everything that defines a discrete chain (chains and seed are run settings)."""

    command: ClassVar[str] = "discrete"
    per_state_check: ClassVar[bool] = True

    generations: int
    schedule: Schedule
    initial: DiscreteInitial
    kind: str = "categorical"
    policy: DataPolicy = DataPolicy()
    smoothing: float = 0.0
    tail_threshold: float | None = None  # default 1 / M_0
    path: str = "auto"
    per_state: bool | None = None  # default: K <= 64

    def __post_init__(self):
        object.__setattr__(self, "generations", require_generations(self.generations))
        require_choice("family", self.kind, KINDS)
        require_choice("path", self.path, DISCRETE_PATHS)
        if self.kind == "poisson":
            if self.initial.rate <= 0:
                raise ConfigError("a Poisson chain needs init poisson:LAMBDA with LAMBDA > 0")
            largest = int(np.max(self.sizes)) if self.generations else 0
            if self.initial.rate * max(largest, 1) > MAX_POISSON_TOTAL:
                raise ConfigError(
                    f"a Poisson chain's counts are int32: LAMBDA x M must stay below {MAX_POISSON_TOTAL:.3g} (room for "
                    f"a chain's rate to grow 64-fold before a total reaches 2^31 - 1); got {self.initial.rate:g} x "
                    f"{largest} = {self.initial.rate * largest:.3g}")
        else:
            if self.initial.rate or not self.initial.probs:
                raise ConfigError(f"a {self.kind} chain needs a probability vector p0, not {self.initial.describe()}")
            if self.kind == "bernoulli" and self.initial.states != 2:
                raise ConfigError("a Bernoulli chain has K = 2 states")
        smoothing = require_number("smoothing", self.smoothing)
        if smoothing < 0 or (smoothing and self.kind == "poisson"):
            raise ConfigError(f"smoothing must be >= 0 (categorical and Bernoulli chains only); got {self.smoothing!r}")
        if self.tail_threshold is not None and not 0 < require_number("tail_threshold", self.tail_threshold) <= 1:
            raise ConfigError(f"tail threshold must lie in (0, 1]; got {self.tail_threshold!r}")
        sizes = self.sizes
        if len(sizes) and int(np.max(sizes)) >= MAX_COUNT:
            raise ConfigError(f"samples must be < 2**24 = {MAX_COUNT} (counts are exact float32 integers); got {int(np.max(sizes))}")
        self.policy.check_sizes(sizes)
        if self.path == "counts" and self.policy.kind not in COUNTS_REGIMES[self.kind]:
            raise ConfigError(
                f"the counts path of a {self.kind} chain supports the regimes {', '.join(COUNTS_REGIMES[self.kind])}; "
                f"regime {self.policy.describe()!r} needs path='data'"
            )

    @property
    def states(self) -> int:
        return 1 if self.kind == "poisson" else self.initial.states

    @property
    def resolved_path(self) -> str:
        if self.path != "auto":
            return self.path
        return "counts" if self.policy.kind in COUNTS_REGIMES[self.kind] else "data"

    @property
    def records_per_state(self) -> bool:
        if self.kind == "poisson":
            return False
        return self.states <= 64 if self.per_state is None else bool(self.per_state)

    @property
    def threshold(self) -> float:
        sizes = self.sizes
        return float(self.tail_threshold) if self.tail_threshold is not None else 1.0 / float(sizes[0] if len(sizes) else 1)

    @property
    def p0(self) -> np.ndarray:
        return np.array([self.initial.rate]) if self.kind == "poisson" else np.asarray(self.initial.probs)

    def metric_names(self) -> tuple[str, ...]:
        if self.kind == "poisson":
            return POISSON_METRICS + ("absorption_generation",)
        names = CATEGORICAL_METRICS + (("state_p", "state_alive", "state_absorbed") if self.records_per_state else ())
        return names + FINAL_METRICS

    def summary_metrics(self) -> tuple[str, ...]:
        """The metrics whose across-chain moments make sense (not the per-chain labels)."""
        return tuple(name for name in self.metric_names() if name not in FINAL_METRICS)

    def final_metrics(self) -> tuple[str, ...]:
        return tuple(name for name in self.metric_names() if name in FINAL_METRICS)

    # -- the run folder (the Study protocol; formulas in docs/discrete.md) -----------------

    def theory_curves(self) -> list[Curve]:
        """Formulas for a discrete chain (see docs/discrete.md); per-state formulas only
        where the chain records its per-state metrics (K <= 64 by default)."""
        recorded = set(self.metric_names())
        return [curve for curve in _theory_curves(self) if curve.quantity[2:-1] in recorded]

    def absorption_time_rows(self, absorption_generation: np.ndarray) -> list[TheoryRow]:
        """E[T] of the chains against the exact fundamental-matrix mean and Kimura's diffusion
        approximation (replace, constant M, no smoothing); only when every chain has absorbed
        by the last generation (otherwise T is censored and its mean is not estimable)."""
        return _absorption_time_rows(self, absorption_generation)

    def check_rows(self, result) -> list[TheoryRow]:
        return theory_table(self, result) + self.absorption_time_rows(result.final["absorption_generation"])

    def summary_table(self, result, quantiles=()) -> tuple[list[str], list[list[str]]]:
        """summary.csv of a discrete run: per generation, every scalar metric's mean and
        standard error and every scalar formula."""
        generations = result.num_generations
        columns = generation_columns(self.sizes, generations) | metric_columns(
            result, [m for m in result.metric_names if not m.startswith("state_")])
        if "absorbed_mean" in columns:
            columns["absorbed_fraction"] = columns["absorbed_mean"]
        elif "extinct_mean" in columns:
            columns["absorbed_fraction"] = columns["extinct_mean"]
        for curve in self.theory_curves():
            if curve.values.ndim == 1 and curve.column not in columns:
                columns[curve.column] = curve.values
        if self.kind != "poisson":
            for name in DISCRETE_REQUIRED_COLUMNS:
                columns.setdefault(name, [None] * (generations + 1))
        return table(columns, generations)

    def states_table(self, result) -> tuple[list[str], list[list[str]]]:
        """states.csv: per generation and state, p0, every per-state metric's mean and
        standard error and every per-state formula."""
        metrics = [m for m in result.metric_names if m.startswith("state_")]
        curves = [c for c in self.theory_curves() if c.values.ndim == 2]
        header = ["generation", "state", "p0"] + [f"{m}_{s}" for m in metrics for s in ("mean", "se")]
        header += [c.column for c in curves]
        summaries = {m: result.summary(m) for m in metrics}
        rows = []
        for g in range(result.num_generations + 1):
            for state in range(self.states):
                row = [str(g), str(state), number(self.p0[state])]
                for m in metrics:
                    row += [number(summaries[m]["mean"][g, state]), number(summaries[m]["se"][g, state])]
                row += [number(c.values[g, state]) for c in curves]
                rows.append(row)
        return header, rows

    def write_outputs(self, result, folder: Path) -> dict[str, Path]:
        """chains.csv (each chain's absorption generation and state) and, with per-state
        records, states.csv."""
        paths = {"chains": Path(folder) / "chains.csv"}
        final_names = list(result.final)
        atomic_text(paths["chains"], csv_text(
            ["chain"] + final_names,
            [[str(i)] + [str(int(result.final[name][i])) for name in final_names] for i in range(result.num_chains)],
        ))
        if self.records_per_state:
            paths["states"] = Path(folder) / "states.csv"
            atomic_text(paths["states"], csv_text(*self.states_table(result)))
        return paths

    def write_figures(self, result, settings, folder: Path) -> list[str]:
        from ..plots import write_discrete_figures

        return write_discrete_figures(self, settings, result, folder)

    def report_title(self) -> str:
        return f"jaxcollapse discrete study ({self.kind})"

    def report_facts(self, result, settings) -> list[str]:
        absorbed = float(np.mean(result.final["absorption_generation"] >= 0))
        return [
            f"p0: {self.initial.describe()}",
            f"regime: {self.policy.describe()}; schedule: {self.schedule.describe()}; smoothing: {self.smoothing:g}",
            f"{settings.chains} chains, {self.generations} generations, seed {settings.seed}, path {self.resolved_path}",
            f"absorbed by generation {self.generations}: {absorbed:.4f} of the chains",
        ]

    # -- the chain -------------------------------------------------------------------

    def program(self) -> ChainProgram:
        kind, states = self.kind, self.states
        dtype = jnp.result_type(float)
        p0 = jnp.asarray(self.p0, dtype)
        sizes_np = self.sizes if self.generations else np.array([1], np.int64)
        sizes = jnp.asarray(sizes_np, dtype)
        smoothing = float(self.smoothing)
        per_state = self.records_per_state
        if kind == "poisson":
            rate0 = float(self.initial.rate)

            def chain_metrics(probs):
                return _poisson_metrics(probs, rate0)
        else:
            reference = discrete_reference(self.p0, self.initial.grid, self.threshold, dtype)

            def chain_metrics(probs):
                return _categorical_metrics(probs, reference, per_state)

        fit_counts = count_fit(kind, states, smoothing)

        if self.resolved_path == "counts":
            generation, initial = self._counts_program(p0)
            initial_state = lambda: initial  # noqa: E731
        else:
            build_first, build_later, initial_state = self._data_program(p0, sizes_np)

            def generation(keys, n, state, probs, m):
                return jax.lax.cond(n == 0, build_first, build_later, keys, state, probs, m)

        def step(words, carry, n):
            params, state = carry
            # two keys straight from the engine's words: per-chain key splitting under vmap
            # costs more on CPU than the flat hash that made the words
            keys = (key_from_words(words[:2]), key_from_words(words[2:4]))
            counts, state = generation(keys, n, state, params.probs, sizes[n])
            probs = fit_counts(counts)
            newly = (params.absorbed_at < 0) & _absorbed(kind, probs)
            return DiscreteParams(probs, jnp.where(newly, n + 1, params.absorbed_at).astype(jnp.int32)), state

        def metrics(params):
            values = chain_metrics(params.probs)
            values["absorption_generation"] = params.absorbed_at.astype(dtype)
            if kind != "poisson":
                absorbed = params.absorbed_at >= 0
                values["absorbed_state"] = jnp.where(absorbed, jnp.argmax(params.probs), -1).astype(dtype)
            return values

        start_absorbed = bool(np.sum(self.p0 > 0) == 1) if kind != "poisson" else False
        initial_params = DiscreteParams(p0, jnp.int32(0 if start_absorbed else -1))
        rows = int(np.max(sizes_np))
        if self.resolved_path == "counts":
            bytes_per_chain = 4 * 12 * max(states, 2) * 2
        else:
            bytes_per_chain = 4 * (8 * rows + 2 * self.policy.pool_rows(sizes_np)) + 4 * 12 * states
        return ChainProgram(
            initial_params=initial_params, initial_state=initial_state, step=step, metrics=metrics,
            bytes_per_chain=int(bytes_per_chain), metric_names=self.metric_names(), words_per_step=4,
            num_generations=self.generations,
        )

    def _counts_program(self, p0):
        """(generation, initial policy state): ``generation(key, n, state, probs, m)``
        draws D_n's counts directly (n = 0: from p_0)."""
        kind, policy = self.kind, self.policy
        regime = policy.kind

        if kind == "poisson":
            def draw(key, rate, m):
                return poisson_total(key, rate, m, p0.dtype)

            def generation(keys, n, state, rate, m):
                key, real_key = keys
                first = n == 0
                rate = jnp.where(first, p0[0], rate[0])
                if regime == "replace":
                    return (draw(key, rate, m), m), state
                if regime == "accumulate":
                    total = draw(key, rate, m)
                    pooled = (jnp.where(first, 0.0, state[0]) + total, jnp.where(first, 0.0, state[1]) + m)
                    return pooled, pooled
                real = jnp.where(first, m, jnp.round(policy.fraction * m))
                return (draw(key, rate, m - real) + draw(real_key, p0[0], real), m), state

            zero = jnp.zeros((), p0.dtype)
            return generation, ((zero, zero) if regime == "accumulate" else ())

        alpha, beta, gamma = policy.mixing
        bound = int(np.max(self.sizes)) if self.generations else 1

        def multinomial(key, n, weights):  # n <= max M_n: small samples draw point by point
            return draw_counts(key, n, weights, bound)

        keeps_counts = regime in ("accumulate", "accumulate-subsample", "mix")
        # At most two multinomials per generation, outside any branch: each one is a tree of
        # rejection loops that costs about a second of compile time per level.

        def generation(keys, n, state, probs, m):
            first = n == 0
            model_key, second_key = keys
            model_size = m
            if regime == "fresh-real":
                model_size = jnp.where(first, m, m - jnp.round(policy.fraction * m))
            weights = jnp.where(first, p0, probs)
            if regime == "mix":
                previous = state / jnp.maximum(jnp.sum(state), 1.0)
                weights = jnp.where(first, p0, alpha * probs + beta * previous + gamma * p0)
            counts = multinomial(model_key, model_size, weights)
            if regime in ("replace", "mix"):
                return counts, (counts if keeps_counts else state)
            if regime == "fresh-real":
                return counts + multinomial(second_key, m - model_size, p0), state
            pool = jnp.where(first, counts, state + counts)
            if regime == "accumulate":
                return pool, pool
            # accumulate-subsample: D_n is M_n draws with replacement from the pool
            resampled = multinomial(second_key, jnp.where(first, 0.0, m), pool)
            return jnp.where(first, counts, resampled), pool

        initial = jnp.zeros_like(p0) if keeps_counts else ()
        return generation, initial

    def _data_program(self, p0, sizes_np):
        """(first, later, initial_state) on the data path: draws, then a weighted histogram."""
        kind, states = self.kind, self.states
        policy = data_program(self.policy, sizes_np)
        rows = int(np.max(sizes_np))

        def sample_real(key, count):
            return sample(kind, key, p0, count, p0.dtype)

        def first(keys, state, probs, m):
            sample_key, policy_key = keys
            data, weights, state = policy.init(policy_key, sample_real(sample_key, rows), m.astype(jnp.int32))
            return histogram(kind, states, data, weights, p0.dtype), state

        def later(keys, state, probs, m):
            sample_key, policy_key = keys
            model = sample(kind, sample_key, probs, rows, p0.dtype)
            data, weights, state = policy.step(policy_key, state, model, m.astype(jnp.int32), sample_real)
            return histogram(kind, states, data, weights, p0.dtype), state

        def initial_state():
            shapes = jax.eval_shape(
                lambda k: policy.init(k, jnp.zeros((rows, 1), p0.dtype), jnp.int32(1))[2], jax.random.key(0)
            )
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        return first, later, initial_state

    def to_json(self) -> dict:
        return {
            "generations": self.generations, "schedule": self.schedule.to_json(), "initial": self.initial.to_json(),
            "family": self.kind, "regime": self.policy.to_json(), "smoothing": self.smoothing,
            "tail_threshold": self.tail_threshold, "path": self.path, "per_state": self.per_state,
        }

    @classmethod
    def from_json(cls, blob: dict) -> "DiscreteStudy":
        return cls(
            generations=int(blob["generations"]), schedule=Schedule.from_json(blob["schedule"]),
            initial=DiscreteInitial.from_json(blob["initial"]), kind=blob["family"],
            policy=DataPolicy.from_json(blob["regime"]), smoothing=float(blob["smoothing"]),
            tail_threshold=blob["tail_threshold"], path=blob["path"], per_state=blob["per_state"],
        )


def discrete_study(
    samples: int = 100,
    generations: int = 100,
    *,
    family: str = "categorical",
    states: int = 20,
    init: str | DiscreteInitial = "uniform",
    probs=None,
    schedule: str | Schedule = "constant",
    regime: str | DataPolicy = "replace",
    smoothing: float = 0.0,
    tail_threshold: float | None = None,
    path: str = "auto",
    per_state: bool | None = None,
) -> DiscreteStudy:
    """Build a :class:`DiscreteStudy` from plain values (validated on the host).

    ``init`` is a :class:`DiscreteInitial` or its CLI spelling (see
    :func:`parse_discrete_initial`); ``probs`` (an explicit probability vector) overrides it.
    """
    samples = require_int("samples M", samples, 1)
    require_choice("family", family, KINDS)
    if probs is not None:
        initial = initial_from_probs(probs)
    elif isinstance(init, DiscreteInitial):
        initial = init
    else:
        initial = parse_discrete_initial(init, states, family)
    if not isinstance(schedule, Schedule):
        schedule = parse_schedule(schedule, samples)
    if not isinstance(regime, DataPolicy):
        regime = parse_policy(regime)
    return DiscreteStudy(
        generations=generations, schedule=schedule, initial=initial, kind=family, policy=regime,
        smoothing=smoothing, tail_threshold=tail_threshold, path=path, per_state=per_state,
    )


def state_index(study: DiscreteStudy, state) -> int:
    """A validated state index of ``study`` (0 <= state < K)."""
    state = require_int("state", state, 0)
    if state >= study.states:
        raise ConfigError(f"state must be an index in [0, {study.states}) (K = {study.states}); got {state}")
    return state


# ----------------------------------------------------------------------------- formulas

INDICATOR_METRICS = ("absorbed", "extinct", "state_alive", "state_absorbed")
EXACT_SOLVER_STATES = 20_000  # count vectors the exact forward propagation may carry


@functools.lru_cache(maxsize=8)  # a run asks for them four times; the exact solver can take a second
def _theory_curves(study: DiscreteStudy) -> tuple[Curve, ...]:
    sizes = study.sizes
    generations = study.generations
    if not generations:
        return ()
    curves = []
    constant = bool(np.all(sizes == sizes[0]))

    def add(quantity, formula, kind, column, values, variance=None, variance_bound=None):
        values = np.asarray(values, np.float64)
        if quantity[2:-1] in INDICATOR_METRICS:
            # the mean of a 0/1 metric is a binomial proportion: the formula's value gives its
            # exact standard error, which stays meaningful when no chain (or every chain) hit
            variance = np.clip(values, 0.0, 1.0) * (1.0 - np.clip(values, 0.0, 1.0))
        curves.append(Curve(quantity, formula, kind, column, values, variance=variance, variance_bound=variance_bound))

    def at_first_generation(value):
        values = np.full((generations + 1,) + np.shape(value), np.nan)
        values[1] = value
        return values

    regime = study.policy.kind
    if study.kind == "poisson":
        rate = study.initial.rate
        add("E[rate]", "exact (martingale)", "exact", "rate_exact", np.full(generations + 1, rate))
        if regime == "replace":
            add("E[extinct]", "exact (Galton-Watson)", "exact", "extinct_exact",
                theory.poisson_extinction_exact(rate, sizes))
            if constant:
                g = np.arange(generations + 1, dtype=float)
                with np.errstate(divide="ignore"):
                    bound = np.exp(-sizes[0] * rate / g)
                add("E[extinct]", "Suresh et al. form", "upper bound", "extinct_suresh_bound", bound)
        return tuple(curves)
    if study.smoothing:
        return tuple(curves)  # smoothing is a deliberate approximation error: no closed form here
    p0 = study.p0
    live = p0[p0 > 0]
    # p in [0, 1] bounds Var p_n[i] by p0 (1 - p0) in every regime; replace has it exactly:
    # Var p_n[i] = p0 (1 - p0) (1 - prod_{j<n} (1 - 1/M_j)), from the heterozygosity recursion
    spread = np.broadcast_to(p0 * (1.0 - p0), (generations + 1, len(p0)))
    exact_spread = None
    if regime == "replace":
        exact_spread = (1.0 - np.concatenate([[1.0], np.cumprod(1.0 - 1.0 / sizes)]))[:, None] * spread
    add("E[state_p]", "exact (martingale)", "exact", "p_exact", np.broadcast_to(p0, (generations + 1, len(p0))),
        variance=exact_spread, variance_bound=spread)
    alive_first = 1.0 - theory.loss_probability_first_generation(p0, int(sizes[0]))
    add("E[state_alive]", "1 - (1 - p0)^M", "exact", "alive_first_exact", at_first_generation(alive_first))
    add("E[support]", "sum 1 - (1 - p0)^M", "exact", "support_first_exact",
        at_first_generation(theory.expected_support_first_generation(p0, int(sizes[0]))))
    if regime != "replace":
        return tuple(curves)
    add("E[heterozygosity]", "exact (1 - 1/M)^n", "exact", "heterozygosity_exact",
        theory.heterozygosity_exact(sizes, p0))
    compositions = math.comb(int(np.max(sizes)) + len(live) - 1, len(live) - 1)
    if compositions <= EXACT_SOLVER_STATES:
        exact = theory.categorical_chain_exact(p0, sizes)
        add("E[support]", "exact Markov chain", "exact", "support_exact", exact["support"])
        add("E[absorbed]", "exact Markov chain", "exact", "absorbed_exact", exact["absorbed"])
        add("E[state_absorbed]", "exact Markov chain", "exact", "absorbed_in_exact", exact["absorbed_in"])
        add("E[state_alive]", "exact Markov chain", "exact", "alive_exact", exact["alive"])
    add("E[state_absorbed]", "p0 (its limit)", "upper bound", "absorbed_in_limit",
        np.broadcast_to(p0, (generations + 1, len(p0))))
    if constant:
        add("E[state_alive]", "Suresh et al. 1 - exp(-M p0 / n)", "lower bound", "alive_suresh_bound",
            theory.suresh_unigram_survival_bound(p0, int(sizes[0]), generations))
    return tuple(curves)


def _absorption_time_rows(study: DiscreteStudy, absorption_generation: np.ndarray) -> list[TheoryRow]:
    """E[T] of the chains against the exact fundamental-matrix mean and Kimura's diffusion
    approximation (replace, constant M, no smoothing); only when every chain has absorbed
    by the last generation (otherwise T is censored and its mean is not estimable)."""
    sizes = study.sizes
    times = np.asarray(absorption_generation, np.float64)
    if (study.kind == "poisson" or study.smoothing or study.policy.kind != "replace" or not len(sizes)
            or not np.all(sizes == sizes[0]) or times.size < 2 or np.any(times < 0)):
        return []
    m = int(sizes[0])
    estimate = float(times.mean())
    error = float(times.std(ddof=1) / np.sqrt(times.size))
    p0 = study.p0
    formulas = []
    live = int(np.sum(p0 > 0))
    if math.comb(m + live - 1, live - 1) <= 5_000:
        formulas.append(("fundamental matrix", "exact", theory.absorption_time_exact(p0, m)["mean"]))
    formulas.append(("Kimura diffusion", "expansion", theory.kimura_mean_absorption_time(p0, m)))
    rows = []
    for formula, kind, value in formulas:
        z = (estimate - value) / error if error > 0 else float("nan")
        rows.append(TheoryRow(study.generations, "E[absorption time]", formula, kind, estimate, error, float(value), z))
    return rows


# ----------------------------------------------------------------------------- the command

DEFAULT_INIT = {"bernoulli": "bernoulli:0.3", "poisson": "poisson:1"}  # for --init mixture (a histogram's)


def _build(values: dict):
    init = values["init"]
    if values["family"] != "categorical" and init == "mixture":
        init = DEFAULT_INIT.get(values["family"], init)
    study = discrete_study(
        samples=values["samples"], generations=values["generations"], family=values["family"],
        states=values["states"], init=init, schedule=values["schedule"], regime=values["regime"],
        smoothing=values["smoothing"], tail_threshold=values["tail_threshold"], path=values["path"],
        per_state=values["per_state"],
    )
    return study, run_settings(values)


COMMAND = StudyCommand(
    name="discrete",
    help="discrete chains: histograms, Bernoulli, Poisson (paper section 4.1)",
    options=chain_options() + (
        Option("family", "categorical", "categorical | bernoulli | poisson"),
        Option("states", 20, "K, states of the histogram (default 20)", int),
        Option("init", "mixture",
               "uniform | zipf:S | mixture | fat-mixture | probs:P1,P2,... | bernoulli:P | poisson:LAMBDA"),
        Option("smoothing", 0.0, "additive smoothing alpha of the fit (default 0)", float),
        Option("tail_threshold", None, "states with p0 below it form the tail (default 1/M)", float),
        Option("path", "auto", "auto | data | counts (default auto)"),
        Option("per_state", None, "record per-state means (default when K <= 64)", None, negation="no_per_state"),
    ) + run_options("results/discrete"),
    build=_build,
    from_json=DiscreteStudy.from_json,
    rank=1,
)
