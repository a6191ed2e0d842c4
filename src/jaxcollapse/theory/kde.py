"""Exact moments of a fixed-bandwidth Gaussian KDE chain in the replace regime.

Notation (docs/design.md): generation 0 is p_0, with mean mu and V_0 = trace Cov p_0 (any
p_0 with a finite variance, any dimension d); generation n >= 1 is the KDE, with kernel
H = h^2 I, of the M_{n-1} points of D_{n-1}; D_0 holds M_0 draws of p_0 and, in the
replace regime, D_n (n >= 1) holds M_n draws of generation n. ``sizes`` = (M_0, ...,
M_{G-1}); every function returns an array over generations g = 0..G.

Model variance. A KDE with points x_i, weights 1/M and kernel H has mean m = x-bar and
covariance S + H, S the *biased* sample covariance of its points, so its variance (the
trace) is V = tr S + d h^2. D_n holds M_n i.i.d. draws of generation n (of p_0 for
n = 0), whose covariance has trace V_n, and E[tr S | generation n] = (1 - 1/M_n) V_n
(the biased sample covariance of M i.i.d. points). Hence, for every n >= 0,

    E[V_{n+1}] = (1 - 1/M_n) E[V_n] + d h^2,

    E[V_g] = V_0 prod_{j<g} (1 - 1/M_j) + d h^2 sum_{k<g} prod_{k<j<g} (1 - 1/M_j),

and for a constant M, with r = 1 - 1/M: E[V_g] = V_0 r^g + M d h^2 (1 - r^g), which tends
to M d h^2 (not to infinity: resampling shrinks the spread by 1/M of itself per
generation while the kernel adds d h^2). The naive "each generation adds h^2" (per
dimension), V_0 + g d h^2, drops the (1 - 1/M) shrink; it is the first-order expansion
for g << M and grows without bound.

Mean. The model mean m_n is a martingale: m_{n+1} is the mean of M_n i.i.d. draws of
generation n, E[m_{n+1} | generation n] = m_n and E[||m_{n+1} - m_n||^2 | generation n]
= V_n / M_n; with m_0 = mu,

    E||m_g - mu||^2 = sum_{k<g} E[V_k] / M_k.

These hold exactly for any p_0 with a finite variance (only first and second moments enter)
and a fixed bandwidth; a bandwidth rule makes H depend on the data and a non-replace
regime mixes other distributions into D_n, and neither is covered here.

Example:
    >>> import numpy as np
    >>> variance_exact(np.full(3, 10), initial_variance=1.0, dim=1, bandwidth=0.5).round(4).tolist()
    [1.0, 1.15, 1.285, 1.4065]
"""

from __future__ import annotations

import numpy as np

__all__ = ["variance_exact", "variance_closed_form", "variance_expansion", "variance_limit", "mean_error_exact"]


def _sizes(sizes) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1)
    if np.any(sizes < 1):
        raise ValueError(f"sample sizes must be >= 1; got {sizes.min():g}")
    return sizes


def variance_exact(sizes, initial_variance: float, dim: int, bandwidth: float) -> np.ndarray:
    """E[V_g], g = 0..G, by the recursion E[V_{n+1}] = (1 - 1/M_n) E[V_n] + d h^2."""
    sizes = _sizes(sizes)
    added = dim * float(bandwidth) ** 2
    values = np.empty(sizes.size + 1)
    values[0] = initial_variance
    for n, m in enumerate(sizes):
        values[n + 1] = (1.0 - 1.0 / m) * values[n] + added
    return values


def variance_closed_form(sizes, initial_variance: float, dim: int, bandwidth: float) -> np.ndarray:
    """E[V_g] = V_0 prod_{j<g} (1 - 1/M_j) + d h^2 sum_{k<g} prod_{k<j<g} (1 - 1/M_j)."""
    sizes = _sizes(sizes)
    shrink = 1.0 - 1.0 / sizes
    values = [float(initial_variance)]
    for g in range(1, sizes.size + 1):
        kept = [np.prod(shrink[k + 1:g]) for k in range(g)]
        values.append(initial_variance * np.prod(shrink[:g]) + dim * bandwidth**2 * float(np.sum(kept)))
    return np.array(values)


def variance_expansion(sizes, initial_variance: float, dim: int, bandwidth: float) -> np.ndarray:
    """The naive "each generation adds h^2": V_0 + g d h^2 (ignores the 1 - 1/M shrink)."""
    generations = _sizes(sizes).size
    return initial_variance + dim * float(bandwidth) ** 2 * np.arange(generations + 1, dtype=np.float64)


def variance_limit(samples: int, dim: int, bandwidth: float) -> float:
    """The fixed point of a constant-M chain: M d h^2."""
    return float(samples) * dim * float(bandwidth) ** 2


def mean_error_exact(sizes, initial_variance: float, dim: int, bandwidth: float) -> np.ndarray:
    """E||m_g - mu||^2 = sum_{k<g} E[V_k] / M_k, g = 0..G."""
    sizes = _sizes(sizes)
    variance = variance_exact(sizes, initial_variance, dim, bandwidth)
    return np.concatenate([[0.0], np.cumsum(variance[:-1] / sizes)])
