"""Input checks that run on the host, before anything is traced.

Every check raises :class:`ConfigError` (a ``ValueError``) whose message names the
parameter and the accepted range, so that users never see a traceback from JAX internals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A parameter is outside its accepted range."""


def require_int(name: str, value, minimum: int, maximum: int | None = None, why: str = "") -> int:
    """``value`` as an int in [minimum, maximum] (a float with an integer value passes);
    otherwise a ConfigError naming the parameter, the range and the value (``why``: what
    the upper limit protects, appended to the message)."""
    expected = f"an integer >= {minimum}" + ("" if maximum is None else f" and <= {maximum}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{name} must be {expected}; got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{name} must be {expected}; got {value}" + (f" ({why})" if why else ""))
    return int(value)


def require_finite(name: str, value) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a number (or an array of numbers); got {value!r}") from None
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{name} must be finite (no NaN or inf); got {value!r}")
    return array


def require_number(name: str, value) -> float:
    """One finite number (not an array, a string or None)."""
    array = require_finite(name, value)
    if array.ndim:
        raise ConfigError(f"{name} must be one number; got {value!r}")
    return float(array)


def require_positive(name: str, value) -> float:
    number = require_number(name, value)
    if number <= 0:
        raise ConfigError(f"{name} must be > 0; got {value!r}")
    return number


def require_fraction(name: str, value, *, open_low=False, open_high=False) -> float:
    number = float(require_finite(name, value))
    low_ok = number > 0 if open_low else number >= 0
    high_ok = number < 1 if open_high else number <= 1
    if not (low_ok and high_ok):
        low = "(0" if open_low else "[0"
        high = "1)" if open_high else "1]"
        raise ConfigError(f"{name} must lie in {low}, {high}; got {value!r}")
    return number


def require_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def require_covariance(name: str, value, dim: int | None = None) -> np.ndarray:
    """A symmetric positive-definite matrix (a positive number in one dimension)."""
    cov = require_finite(name, value)
    if cov.ndim == 0:
        cov = cov.reshape(1, 1)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ConfigError(f"{name} must be a square matrix; got shape {cov.shape}")
    if dim is not None and cov.shape[0] != dim:
        raise ConfigError(f"{name} must be {dim}x{dim} to match the mean; got {cov.shape}")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(cov).max())):
        raise ConfigError(f"{name} must be symmetric")
    eigenvalues = np.linalg.eigvalsh(cov)
    if eigenvalues.min() <= 0:
        raise ConfigError(
            f"{name} must be positive definite; its smallest eigenvalue is {eigenvalues.min():.3g}"
        )
    return cov


def require_proportions(name: str, values, count: int | None = None, tol: float = 1e-6) -> np.ndarray:
    props = require_finite(name, values).reshape(-1)
    if count is not None and props.size != count:
        raise ConfigError(f"{name} must have {count} entries; got {props.size}")
    if np.any(props < 0):
        raise ConfigError(f"{name} must be non-negative; got {values!r}")
    if abs(props.sum() - 1.0) > tol:
        raise ConfigError(f"{name} must sum to 1 (within {tol:g}); they sum to {props.sum():.12g}")
    return props


def nested_tuple(value):
    """An array as (nested) tuples of floats: a frozen study stays hashable and its JSON
    plain."""
    array = np.asarray(value, np.float64)
    return tuple(float(v) for v in array) if array.ndim <= 1 else tuple(nested_tuple(row) for row in array)


def physical_memory_bytes() -> int:
    """This machine's physical memory (a large number where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 1 << 50


def require_memory(what: str, needed: int, knobs: str) -> None:
    """Refuse, before any allocation, work whose estimated memory ``needed`` (bytes) exceeds
    this machine's physical memory, with the figure and the settings that lower it."""
    available = physical_memory_bytes()
    if needed > available:
        gib = float(min(needed, 10**300)) / 2**30  # an absurd request is still a number to print
        raise ConfigError(f"{what} needs about {gib:.3g} GiB of memory, more than this machine's "
                          f"{available / 2**30:.3g} GiB; {knobs}")


# Locations and scales of p_0 that float32 arithmetic carries: moments square them (the
# W2 risk, variances), and 1e15 squared is 1e30, well inside float32's 3.4e38; beyond
# these a run would write inf or garbage rather than numbers
MAX_LOCATION, SCALE_RANGE = 1e15, (1e-15, 1e15)


def require_location(name: str, value) -> np.ndarray:
    """A finite location (number or array) with every |entry| <= :data:`MAX_LOCATION`."""
    array = require_finite(name, value)
    if array.size and np.max(np.abs(array)) > MAX_LOCATION:
        raise ConfigError(f"{name} must lie in [-{MAX_LOCATION:g}, {MAX_LOCATION:g}] (float32 squares it); got {value!r}")
    return array


def require_scale(name: str, value) -> float:
    """A positive scale in :data:`SCALE_RANGE` (float32 squares it)."""
    number = require_positive(name, value)
    low, high = SCALE_RANGE
    if not low <= number <= high:
        raise ConfigError(f"{name} must lie in [{low:g}, {high:g}] (float32 squares it); got {value!r}")
    return number


MAX_GENERATIONS = 10_000_000  # every generation is a step of every chain and a row of the records


def require_generations(value) -> int:
    """G, the number of fitted generations: an integer in [0, :data:`MAX_GENERATIONS`]."""
    return require_int("generations", value, 0, MAX_GENERATIONS, "every generation is a step of every chain and a "
                       "row of the records")
