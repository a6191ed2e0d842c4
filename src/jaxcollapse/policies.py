"""Data policies: how the data set D_n is built from model samples, old data and real data.

Generation 0 is p_0; D_0 holds M_0 real samples; generation n + 1 is fitted to D_n.
For n >= 1 a policy builds D_n from fresh samples of generation n (``model``), from
earlier data and from p_0 (``real``):

=====================  ===================================================================
``replace``            D_n = M_n model samples (the paper's main setting, Figure 4)
``accumulate``         D_n = D_0 + all model samples so far (Figure 6)
``accumulate-subsample`` M_n draws, with replacement, from that pool (Figure 5)
``real-fraction:F``    round(F M_n) points of the original D_0, drawn without replacement
                       each generation, plus model samples for the rest
``fresh-real:F``       round(F M_n) fresh draws from p_0, plus model samples for the rest
``mix:A,B,G``          each of the M_n points comes from the model with probability A,
                       is resampled from D_{n-1} with probability B, or is a fresh p_0 draw
                       with probability G: exact sampling from the paper's
                       p_n = A p_theta_n + B p_{n-1} + G p_0 (section 4)
=====================  ===================================================================

Shapes are static: every D_n lives in a buffer of max_n M_n rows (the pool of the
accumulate policies has sum_n M_n rows) and a 0/1 float weight masks the unused rows.
A row may have any shape and dtype (a float vector, a block of int32 tokens, an image):
the buffers take the shape and dtype of D_0's rows (``Family.row`` on the data path).

Examples:
    >>> parse_policy("mix:0.8,0.1,0.1").kind
    'mix'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._validation import ConfigError, require_fraction, require_proportions

__all__ = ["DataPolicy", "parse_policy", "REGIMES", "STATS_REGIMES"]

REGIMES = ("replace", "accumulate", "accumulate-subsample", "real-fraction", "fresh-real", "mix")
STATS_REGIMES = ("replace", "accumulate", "fresh-real")


@dataclass(frozen=True)
class DataPolicy:
    """A data policy; ``fraction`` is F for real-fraction and fresh-real, ``mixing`` is
    (alpha, beta, gamma) for mix."""

    kind: str = "replace"
    fraction: float = 0.0
    mixing: tuple[float, float, float] = (1.0, 0.0, 0.0)

    def __post_init__(self):
        if self.kind not in REGIMES:
            raise ConfigError(f"unknown regime {self.kind!r}; choose one of {', '.join(REGIMES)}")
        if self.kind in ("real-fraction", "fresh-real"):
            require_fraction(f"{self.kind} fraction", self.fraction)
        if self.kind == "mix":
            require_proportions("mixing proportions (alpha, beta, gamma)", self.mixing, 3)

    def describe(self) -> str:
        if self.kind in ("real-fraction", "fresh-real"):
            return f"{self.kind}:{self.fraction:g}"
        if self.kind == "mix":
            return "mix:" + ",".join(f"{v:g}" for v in self.mixing)
        return self.kind

    def to_json(self) -> dict:
        return {"kind": self.kind, "fraction": self.fraction, "mixing": list(self.mixing)}

    @classmethod
    def from_json(cls, blob) -> "DataPolicy":
        if isinstance(blob, str):  # the CLI spelling
            return parse_policy(blob)
        return cls(blob["kind"], float(blob["fraction"]), tuple(float(v) for v in blob["mixing"]))

    def pool_rows(self, sizes: np.ndarray) -> int:
        """Rows of the buffer that holds the data a fit sees."""
        if self.kind in ("accumulate", "accumulate-subsample"):
            return int(np.sum(sizes)) + int(np.max(sizes))
        return int(np.max(sizes))

    def check_sizes(self, sizes: np.ndarray) -> None:
        if self.kind == "real-fraction" and len(sizes):
            needed = int(np.max(np.rint(self.fraction * sizes[1:]))) if len(sizes) > 1 else 0
            if needed > sizes[0]:
                raise ConfigError(
                    f"real-fraction {self.fraction:g} needs {needed} distinct real points but D_0 holds "
                    f"only M_0 = {sizes[0]}; lower the fraction or raise samples"
                )


def parse_policy(text: str) -> DataPolicy:
    """Parse the CLI spelling of a regime (see the module docstring)."""
    if not isinstance(text, str):
        raise ConfigError(f"regime must be a DataPolicy or its spelling (replace, accumulate, accumulate-subsample, "
                          f"real-fraction:F, fresh-real:F, mix:A,B,G); got {text!r}")
    kind, _, argument = text.partition(":")
    if kind not in REGIMES:
        raise ConfigError(f"unknown regime {text!r}; choose one of {', '.join(REGIMES)} (real-fraction:F, fresh-real:F, mix:A,B,G)")
    try:
        if kind in ("real-fraction", "fresh-real"):
            if not argument:
                raise ConfigError(f"regime {kind} needs a fraction, e.g. {kind}:0.1")
            return DataPolicy(kind, fraction=float(argument))
        if kind == "mix":
            values = tuple(float(v) for v in argument.split(","))
            if len(values) != 3:
                raise ConfigError("regime mix needs three proportions, e.g. mix:0.8,0.1,0.1")
            return DataPolicy(kind, mixing=values)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"could not read the numbers in regime {text!r}") from error
    if argument:
        raise ConfigError(f"regime {kind} takes no argument; got {text!r}")
    return DataPolicy(kind)


class PolicyProgram(NamedTuple):
    """Per-chain functions: ``init(key, real, m0) -> (data, weights, state)`` and
    ``step(key, state, model, m_n, draw_real) -> (data, weights, state)``."""

    init: Callable[..., Any]
    step: Callable[..., Any]


def _mask(rows: int, count):
    return (jnp.arange(rows) < count).astype(jnp.result_type(float))


def _real_count(fraction, m):
    return jnp.round(fraction * m).astype(jnp.int32)


def _per_row(choice, data):
    """A (rows,) choice shaped to broadcast over ``data``'s rows, whatever their shape."""
    return choice.reshape(choice.shape + (1,) * (data.ndim - 1))


def data_program(policy: DataPolicy, sizes: np.ndarray) -> PolicyProgram:
    """Build the per-chain data-path functions of ``policy`` for the schedule ``sizes``.

    ``real``, ``model`` and ``draw_real(key, n)`` hold rows of one shape and dtype
    (``(n, *row.shape)``); the data returned have the same."""
    rows = int(np.max(sizes)) if len(sizes) else 1
    pool_rows = policy.pool_rows(sizes) if len(sizes) else rows
    kind = policy.kind

    if kind == "replace":
        def init(key, real, m0):
            return real, _mask(rows, m0), ()

        def step(key, state, model, m, draw_real):
            return model, _mask(rows, m), state

    elif kind in ("accumulate", "accumulate-subsample"):
        def init(key, real, m0):
            pool = jnp.zeros((pool_rows, *real.shape[1:]), real.dtype).at[:rows].set(real)
            state = (pool, jnp.asarray(m0, jnp.int32))
            if kind == "accumulate":  # the fit always sees the whole pool buffer
                return pool, _mask(pool_rows, m0), state
            return real, _mask(rows, m0), state

        def step(key, state, model, m, draw_real):
            pool, filled = state
            pool = jax.lax.dynamic_update_slice(pool, model, (filled,) + (0,) * (model.ndim - 1))
            filled = filled + m
            if kind == "accumulate":
                return pool, _mask(pool_rows, filled), (pool, filled)
            picks = jnp.floor(jax.random.uniform(key, (rows,)) * filled).astype(jnp.int32)
            return pool[jnp.minimum(picks, filled - 1)], _mask(rows, m), (pool, filled)

    elif kind == "real-fraction":
        fraction = policy.fraction

        def init(key, real, m0):
            return real, _mask(rows, m0), (real, jnp.asarray(m0, jnp.int32))

        def step(key, state, model, m, draw_real):
            real, m0 = state
            # a uniformly random ordering of D_0's valid rows: distinct points each generation
            scores = jnp.where(jnp.arange(rows) < m0, jax.random.uniform(key, (rows,)), 2.0)
            order = jnp.argsort(scores)
            take_real = _per_row(jnp.arange(rows) < _real_count(fraction, m), model)
            return jnp.where(take_real, real[order], model), _mask(rows, m), state

    elif kind == "fresh-real":
        fraction = policy.fraction

        def init(key, real, m0):
            return real, _mask(rows, m0), ()

        def step(key, state, model, m, draw_real):
            take_real = _per_row(jnp.arange(rows) < _real_count(fraction, m), model)
            return jnp.where(take_real, draw_real(key, rows), model), _mask(rows, m), state

    else:  # mix
        log_weights = jnp.log(jnp.asarray(policy.mixing, dtype=jnp.result_type(float)))

        def init(key, real, m0):
            return real, _mask(rows, m0), (real, jnp.asarray(m0, jnp.int32))

        def step(key, state, model, m, draw_real):
            previous, previous_count = state
            source_key, resample_key, real_key = jax.random.split(key, 3)
            source = _per_row(jax.random.categorical(source_key, log_weights, shape=(rows,)), model)
            picks = jnp.floor(jax.random.uniform(resample_key, (rows,)) * previous_count).astype(jnp.int32)
            resampled = previous[jnp.minimum(picks, previous_count - 1)]
            data = jnp.where(source == 0, model, jnp.where(source == 1, resampled, draw_real(real_key, rows)))
            return data, _mask(rows, m), (data, m)

    return PolicyProgram(init, step)


def stats_program(policy: DataPolicy, sufficient, p0_params) -> PolicyProgram:
    """Per-chain sufficient-statistics functions of ``policy``:
    ``init(words, m0) -> (stats, state)``, ``step(words, state, params, m) -> (stats, state)``
    where ``words`` holds ``stats_words(policy, sufficient)`` random uint32 words."""
    if policy.kind not in STATS_REGIMES:
        raise ConfigError(
            f"the sufficient-statistics path supports the regimes {', '.join(STATS_REGIMES)}; "
            f"regime {policy.describe()!r} needs path='data'"
        )
    draw, merge, width = sufficient.draw, sufficient.merge, sufficient.words_per_draw

    def init(words, m0):
        stats = draw(words[:width], p0_params, m0)
        return stats, (stats if policy.kind == "accumulate" else ())

    if policy.kind == "replace":
        def step(words, state, params, m):
            return draw(words[:width], params, m), state
    elif policy.kind == "accumulate":
        def step(words, state, params, m):
            pooled = merge(state, draw(words[:width], params, m))
            return pooled, pooled
    else:
        fraction = policy.fraction

        def step(words, state, params, m):
            real = _real_count(fraction, m)
            model_stats = draw(words[:width], params, m - real)
            return merge(model_stats, draw(words[width:2 * width], p0_params, real)), state

    return PolicyProgram(init, step)


def stats_words(policy: DataPolicy, sufficient) -> int:
    """Random words one generation of the sufficient-statistics path consumes."""
    return (2 if policy.kind == "fresh-real" else 1) * sufficient.words_per_draw
