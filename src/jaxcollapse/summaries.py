"""Streaming summaries across chains: mergeable central moments and quantile sketches.

Each chunk of chains reduces, per generation, every metric to (count, mean, M2, M3, M4)
(central sums, computed in two passes inside the chunk); chunks are merged on the host
in float64 with the pairwise update of Pebay (2008). Memory is O(generations), not
O(chains x generations).

Quantiles use a mergeable log-spaced histogram with 100 bins per decade over
[1e-15, 1e10]: a reported quantile lies within a factor 10**0.005 (about 1.2 %) of a
value between the neighbouring order statistics. Only non-negative metrics can be
sketched.

Examples:
    >>> import numpy as np
    >>> moments = merge_moments(np.array([2.0, 1.0, 0.5, 0.0, 0.0]), np.array([2.0, 3.0, 0.5, 0.0, 0.0]))
    >>> float(moments[1]), float(moments[2])
    (2.0, 5.0)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["chunk_moments", "merge_moments", "describe_moments", "sketch", "sketch_quantiles"]

SKETCH_LOW, SKETCH_HIGH, SKETCH_PER_DECADE = -15.0, 10.0, 100
SKETCH_BINS = int((SKETCH_HIGH - SKETCH_LOW) * SKETCH_PER_DECADE) + 2  # + underflow and overflow


def chunk_moments(values, valid):
    """(count, mean, M2, M3, M4) (last axis) of ``values`` over the chains (axis 0) where
    ``valid`` is 1; a vector metric of shape (chains, K) gives (K, 5)."""
    valid = valid.reshape(valid.shape + (1,) * (values.ndim - 1)) > 0
    count = jnp.broadcast_to(jnp.sum(valid, axis=0).astype(values.dtype), values.shape[1:])
    mean = jnp.sum(jnp.where(valid, values, 0.0), axis=0) / jnp.maximum(count, 1.0)
    centred = jnp.where(valid, values - mean, 0.0)
    squared = centred * centred
    moments = jnp.stack([count, mean, jnp.sum(squared, axis=0), jnp.sum(squared * centred, axis=0),
                         jnp.sum(squared * squared, axis=0)], axis=-1)
    # an infinite value (KL of a collapsed chain) makes the mean infinite and the spread
    # infinite, not NaN; a NaN value keeps NaN everywhere
    infinite = jnp.isinf(mean)[..., None]
    return jnp.where(infinite & (jnp.arange(5) >= 2), jnp.inf, moments)


def merge_moments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pool two (count, mean, M2, M3, M4) arrays (last axis) in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = a[..., 0], b[..., 0]
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(n > 0, n, 1.0)
        delta = np.where(nb > 0, b[..., 1] - a[..., 1], 0.0)
        delta = np.where(na > 0, delta, 0.0)
        mean = np.where(na > 0, a[..., 1], b[..., 1]) + delta * nb / safe
        m2 = a[..., 2] + b[..., 2] + delta**2 * na * nb / safe
        m3 = (a[..., 3] + b[..., 3] + delta**3 * na * nb * (na - nb) / safe**2
              + 3.0 * delta * (na * b[..., 2] - nb * a[..., 2]) / safe)
        m4 = (a[..., 4] + b[..., 4] + delta**4 * na * nb * (na * na - na * nb + nb * nb) / safe**3
              + 6.0 * delta**2 * (na * na * b[..., 2] + nb * nb * a[..., 2]) / safe**2
              + 4.0 * delta * (na * b[..., 3] - nb * a[..., 3]) / safe)
        infinite = np.isinf(a[..., 1]) | np.isinf(b[..., 1])
        mean = np.where(infinite, np.where(na > 0, a[..., 1], 0.0) + np.where(nb > 0, b[..., 1], 0.0), mean)
        m2, m3, m4 = (np.where(infinite & ~np.isnan(mean), np.inf, m) for m in (m2, m3, m4))
    return np.stack([n, mean, m2, m3, m4], axis=-1)


def describe_moments(moments: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, its standard error, the sample variance and its standard error.

    The standard error of the sample variance uses the fourth central moment:
    Var(s^2) ~ (m4 - m2^2 (n - 3) / (n - 1)) / n.
    """
    moments = np.asarray(moments, np.float64)
    n, mean, m2, m4 = moments[..., 0], moments[..., 1], moments[..., 2], moments[..., 4]
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(n > 1, m2 / np.where(n > 1, n - 1, 1.0), np.nan)  # one chain: no spread to estimate
        se = np.sqrt(variance / n)
        central2, central4 = m2 / n, m4 / n
        variance_se = np.sqrt(np.maximum(central4 - central2**2 * (n - 3) / (n - 1), 0.0) / n)
        variance_se = np.where(np.isinf(central4) & ~np.isnan(mean), np.inf, variance_se)
    return {"mean": mean, "se": se, "var": variance, "var_se": variance_se, "count": n}


def sketch(values, valid):
    """Histogram counts of ``values`` (non-negative) on the fixed log-spaced grid."""
    finite = jnp.isfinite(values)
    logs = jnp.log10(jnp.maximum(jnp.where(finite, values, 1.0), 10.0**SKETCH_LOW * 0.5))
    index = jnp.floor((logs - SKETCH_LOW) * SKETCH_PER_DECADE).astype(jnp.int32) + 1
    index = jnp.where(values <= 10.0**SKETCH_LOW, 0, jnp.clip(index, 1, SKETCH_BINS - 1))
    index = jnp.where(finite, index, SKETCH_BINS - 1)  # inf and NaN count as overflow
    return jnp.zeros(SKETCH_BINS, jnp.int32).at[index].add(valid.astype(jnp.int32))


def sketch_quantiles(counts: np.ndarray, quantiles) -> np.ndarray:
    """Quantiles (last axis) from histogram counts: the geometric centre of the bin."""
    counts = np.asarray(counts, np.float64)
    cumulative = np.cumsum(counts, axis=-1)
    total = cumulative[..., -1:]
    centres = np.concatenate([
        [0.0],
        10.0 ** (SKETCH_LOW + (np.arange(SKETCH_BINS - 2) + 0.5) / SKETCH_PER_DECADE),
        [np.inf],
    ])
    result = []
    for q in quantiles:
        index = np.argmax(cumulative >= np.maximum(q * total, 1e-300), axis=-1)
        result.append(np.where(total[..., 0] > 0, centres[index], np.nan))
    return np.stack(result, axis=-1)
