"""Sample-size schedules M_0, M_1, ..., M_{G-1}.

``M_n`` is the size of the data set D_n that generation n+1 is fitted to. The paper
(section 4.2) argues that the risk stays bounded only when M_n grows superlinearly.

Examples:
    >>> from jaxcollapse.schedules import power
    >>> power(100, 2.0).sizes(4).tolist()
    [100, 400, 900, 1600]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import ConfigError, require_finite, require_int, require_positive

__all__ = ["Schedule", "constant", "linear", "power", "geometric", "explicit", "parse_schedule"]

_KINDS = ("constant", "linear", "power", "geometric", "list")


@dataclass(frozen=True)
class Schedule:
    """A rule giving the sample size of every generation.

    ``kind`` is one of constant, linear (M_0 + slope * n), power (M_0 * (n + 1)**p),
    geometric (M_0 * ratio**n) or list (explicit sizes); sizes are rounded to integers.
    """

    kind: str
    base: int
    rate: float = 0.0
    values: tuple[int, ...] = ()

    def sizes(self, generations: int) -> np.ndarray:
        """The integer sizes M_0..M_{generations-1} as an int64 array."""
        n = np.arange(generations, dtype=np.float64)
        if self.kind == "constant":
            sizes = np.full(generations, self.base, dtype=np.float64)
        elif self.kind == "linear":
            sizes = self.base + self.rate * n
        elif self.kind == "power":
            sizes = self.base * (n + 1.0) ** self.rate
        elif self.kind == "geometric":
            with np.errstate(over="ignore"):
                sizes = self.base * self.rate**n
        elif self.kind == "list":
            if len(self.values) < generations:
                raise ConfigError(
                    f"schedule list has {len(self.values)} sizes but {generations} generations need "
                    f"{generations} (one per fitted generation)"
                )
            sizes = np.asarray(self.values[:generations], dtype=np.float64)
        else:  # pragma: no cover - guarded in the constructors
            raise ConfigError(f"unknown schedule kind {self.kind!r}")
        if np.any(~np.isfinite(sizes)) or np.any(sizes > 2**31 - 1):
            raise ConfigError(f"schedule {self.describe()} exceeds 2**31 - 1 samples within {generations} generations")
        return np.rint(sizes).astype(np.int64)

    def describe(self) -> str:
        if self.kind == "constant":
            return f"constant M={self.base}"
        if self.kind == "list":
            return "list " + ",".join(map(str, self.values))
        return f"{self.kind}(M0={self.base}, rate={self.rate:g})"

    def to_json(self) -> dict:
        return {"kind": self.kind, "base": self.base, "rate": self.rate, "values": list(self.values)}

    @classmethod
    def from_json(cls, blob: dict) -> "Schedule":
        return cls(blob["kind"], int(blob["base"]), float(blob["rate"]), tuple(int(v) for v in blob["values"]))


def constant(samples: int) -> Schedule:
    return Schedule("constant", require_int("samples", samples, 1))


def linear(samples: int, slope: float) -> Schedule:
    slope = float(require_finite("schedule slope", slope))
    if slope < 0:
        raise ConfigError(f"schedule slope must be >= 0; got {slope}")
    return Schedule("linear", require_int("samples", samples, 1), slope)


def power(samples: int, exponent: float) -> Schedule:
    exponent = float(require_finite("schedule exponent", exponent))
    if exponent < 0:
        raise ConfigError(f"schedule exponent must be >= 0; got {exponent}")
    return Schedule("power", require_int("samples", samples, 1), exponent)


def geometric(samples: int, ratio: float) -> Schedule:
    ratio = require_positive("schedule ratio", ratio)
    if ratio < 1:
        raise ConfigError(f"schedule ratio must be >= 1; got {ratio}")
    return Schedule("geometric", require_int("samples", samples, 1), ratio)


def explicit(values) -> Schedule:
    values = tuple(require_int("schedule list entry", v, 1) for v in values)
    if not values:
        raise ConfigError("schedule list must hold at least one size")
    return Schedule("list", values[0], 0.0, values)


def parse_schedule(text: str, samples: int) -> Schedule:
    """Parse the CLI spelling: ``constant``, ``linear:SLOPE``, ``power:P``,
    ``geometric:RATIO`` or ``list:M0,M1,...``; ``samples`` is M_0. A list or tuple of
    sizes is the explicit schedule M_0, M_1, ...

    >>> parse_schedule([10, 20, 30], 10).sizes(3).tolist()
    [10, 20, 30]
    """
    if isinstance(text, (list, tuple, np.ndarray)):
        return explicit(list(text))
    if not isinstance(text, str):
        raise ConfigError(f"schedule must be a Schedule, its spelling (constant, linear:SLOPE, power:P, "
                          f"geometric:RATIO, list:M0,M1,...) or a list of sample sizes; got {text!r}")
    kind, _, argument = text.partition(":")
    if kind not in _KINDS:
        raise ConfigError(f"unknown schedule {text!r}; choose constant, linear:SLOPE, power:P, geometric:RATIO or list:M0,M1,...")
    if kind == "constant":
        if argument:
            raise ConfigError(f"schedule constant takes no argument (M is --samples); got {text!r}")
        return constant(samples)
    if kind == "list":
        try:
            values = [int(v) for v in argument.split(",") if v.strip()]
        except ValueError as error:
            raise ConfigError(f"schedule list must be comma-separated integers; got {argument!r}") from error
        return explicit(values)
    try:
        rate = float(argument)
    except ValueError as error:
        raise ConfigError(f"schedule {kind} needs a number after ':'; got {argument!r}") from error
    return {"linear": linear, "power": power, "geometric": geometric}[kind](samples, rate)
