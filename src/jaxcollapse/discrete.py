"""Discrete recursion chains: histograms (categorical over K states), Bernoulli, Poisson.

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
carries the generation at which that happened.

Example:
    >>> import jaxcollapse as jc
    >>> study = discrete_study(samples=20, generations=30, states=5, init="uniform")
    >>> result = jc.simulate(study.program(), num_chains=256, num_generations=30, seed=0)
    >>> result.summary("heterozygosity")["mean"].shape
    (31,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ._counts import categorical
from ._counts import multinomial as _multinomial
from ._random import key_from_words
from ._validation import ConfigError, require_choice, require_finite, require_int, require_positive
from .engine import ChainProgram
from .policies import DataPolicy, data_program, parse_policy
from .schedules import Schedule, parse_schedule

__all__ = [
    "DiscreteInitial", "DiscreteStudy", "DiscreteParams", "discrete_study", "parse_discrete_initial",
    "probability_vector", "zipf_probabilities", "mixture_probabilities", "KINDS", "DISCRETE_PATHS",
    "PER_STATE_METRICS", "FINAL_METRICS", "PROBABILITY_TOLERANCE",
]

KINDS = ("categorical", "bernoulli", "poisson")
DISCRETE_PATHS = ("auto", "data", "counts")
COUNTS_REGIMES = {
    "categorical": ("replace", "accumulate", "accumulate-subsample", "fresh-real", "mix"),
    "bernoulli": ("replace", "accumulate", "accumulate-subsample", "fresh-real", "mix"),
    "poisson": ("replace", "accumulate", "fresh-real"),
}
PER_STATE_METRICS = ("state_p", "state_alive", "state_absorbed")
FINAL_METRICS = ("absorption_generation", "absorbed_state")
PROBABILITY_TOLERANCE = 1e-6
MAX_COUNT = 2**24  # counts are floats: exact integers below 2**24 in float32


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

    Example:
        >>> parse_discrete_initial("zipf:1.1", states=4).states
        4
    """
    require_choice("family", kind, KINDS)
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


class DiscreteParams(NamedTuple):
    """One chain's generation: ``probs`` (K,) (the rate, shape (1,), of a Poisson chain)
    and the generation at which it was absorbed (-1: not yet)."""

    probs: jax.Array
    absorbed_at: jax.Array


def _absorbed(kind: str, probs):
    if kind == "poisson":
        return probs[0] == 0
    return jnp.sum(probs > 0) == 1


def _categorical_metrics(probs, reference, per_state: bool):
    p0, tail, spacing = reference
    alive = probs > 0
    gone = ~alive & (p0 > 0)
    logs = jnp.log(jnp.where(alive, probs, 1.0))
    log_p0 = jnp.log(jnp.where(p0 > 0, p0, 1.0))
    absorbed = jnp.sum(alive) == 1
    values = {
        "support": jnp.sum(alive).astype(probs.dtype),
        "lost_mass": jnp.sum(jnp.where(gone, p0, 0.0)),
        "tail_lost": jnp.sum(jnp.where(gone & tail, p0, 0.0)),
        "entropy": -jnp.sum(jnp.where(alive, probs * logs, 0.0)),
        "heterozygosity": 1.0 - jnp.sum(probs * probs),
        "tv": 0.5 * jnp.sum(jnp.abs(probs - p0)),
        "kl": jnp.sum(jnp.where(alive, probs * (logs - log_p0), 0.0)),
        "w1": jnp.sum(jnp.abs(jnp.cumsum(probs - p0))[:-1] * spacing),
        "absorbed": absorbed.astype(probs.dtype),
    }
    if per_state:
        values["state_p"] = probs
        values["state_alive"] = alive.astype(probs.dtype)
        values["state_absorbed"] = (absorbed & alive).astype(probs.dtype)
    return values


CATEGORICAL_METRICS = ("support", "lost_mass", "tail_lost", "entropy", "heterozygosity", "tv", "kl", "w1", "absorbed")
POISSON_METRICS = ("rate", "rate_error", "extinct")


def _poisson_metrics(probs, rate0):
    rate = probs[0]
    return {"rate": rate, "rate_error": (rate - rate0) ** 2, "extinct": (rate == 0).astype(probs.dtype)}


@dataclass(frozen=True)
class DiscreteStudy:
    """Everything that defines a discrete chain (chains and seed are run settings)."""

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
        require_int("generations", self.generations, 0)
        require_choice("family", self.kind, KINDS)
        require_choice("path", self.path, DISCRETE_PATHS)
        if self.kind == "poisson":
            if self.initial.rate <= 0:
                raise ConfigError("a Poisson chain needs init poisson:LAMBDA with LAMBDA > 0")
        else:
            if self.initial.rate or not self.initial.probs:
                raise ConfigError(f"a {self.kind} chain needs a probability vector p0, not {self.initial.describe()}")
            if self.kind == "bernoulli" and self.initial.states != 2:
                raise ConfigError("a Bernoulli chain has K = 2 states")
        smoothing = float(require_finite("smoothing", self.smoothing))
        if smoothing < 0 or (smoothing and self.kind == "poisson"):
            raise ConfigError(f"smoothing must be >= 0 (categorical and Bernoulli chains only); got {self.smoothing!r}")
        if self.tail_threshold is not None and not 0 < float(self.tail_threshold) <= 1:
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
    def sizes(self) -> np.ndarray:
        return self.schedule.sizes(self.generations)

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
            grid = np.asarray(self.initial.grid, np.float64)
            spacing = jnp.asarray(np.diff(grid) if states > 1 else np.zeros(1), dtype)
            tail = jnp.asarray(self.p0 < self.threshold)
            reference = (p0, tail, spacing)

            def chain_metrics(probs):
                return _categorical_metrics(probs, reference, per_state)

        def fit_counts(counts):
            if kind == "poisson":
                total, size = counts
                return jnp.reshape(total / jnp.maximum(size, 1.0), (1,))
            return (counts + smoothing) / (jnp.sum(counts) + states * smoothing)

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
        )

    def _counts_program(self, p0):
        """(generation, initial policy state): ``generation(key, n, state, probs, m)``
        draws D_n's counts directly (n = 0: from p_0)."""
        kind, policy = self.kind, self.policy
        regime = policy.kind

        if kind == "poisson":
            def draw(key, rate, m):
                return jax.random.poisson(key, m * rate).astype(p0.dtype)

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
            return _multinomial(key, n, weights, max_count=bound)

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

        def sample(key, probs, count):
            if kind == "poisson":
                return jax.random.poisson(key, probs[0], (count, 1)).astype(p0.dtype)
            return categorical(key, probs, count).astype(p0.dtype)[:, None]

        def histogram(data, weights):
            if kind == "poisson":
                return jnp.sum(data[:, 0] * weights), jnp.sum(weights)
            return jnp.zeros(states, p0.dtype).at[data[:, 0].astype(jnp.int32)].add(weights)

        def sample_real(key, count):
            return sample(key, p0, count)

        def first(keys, state, probs, m):
            sample_key, policy_key = keys
            data, weights, state = policy.init(policy_key, sample_real(sample_key, rows), m.astype(jnp.int32))
            return histogram(data, weights), state

        def later(keys, state, probs, m):
            sample_key, policy_key = keys
            model = sample(sample_key, probs, rows)
            data, weights, state = policy.step(policy_key, state, model, m.astype(jnp.int32), sample_real)
            return histogram(data, weights), state

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
