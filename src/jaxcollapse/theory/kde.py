"""Exact moments of a Gaussian KDE chain in the replace regime.

Notation (docs/design.md): generation 0 is p_0, with mean mu and V_0 = trace Cov p_0 (any
p_0 with a finite variance, any dimension d); generation n >= 1 is the KDE of the M_{n-1}
points of D_{n-1}; D_0 holds M_0 draws of p_0 and, in the replace regime, D_n (n >= 1)
holds M_n draws of generation n. ``sizes`` = (M_0, ..., M_{G-1}); ``bandwidth`` is a fixed
h (kernel H = h^2 I) or ``"scott"`` / ``"silverman"``; every function returns an array over
generations g = 0..G.

Model variance. A KDE with points x_i, weights 1/M and kernel H has mean m = x-bar and
covariance S + H, S the *biased* sample covariance of its points, so its variance (the
trace) is V = tr S + tr H. D_n holds M_n i.i.d. draws of generation n (of p_0 for n = 0),
whose covariance has trace V_n, so E[tr S | generation n] = (1 - 1/M_n) V_n.

* Fixed h: tr H = d h^2, hence for every n >= 0

      E[V_{n+1}] = (1 - 1/M_n) E[V_n] + d h^2,
      E[V_g] = V_0 prod_{j<g} (1 - 1/M_j) + d h^2 sum_{k<g} prod_{k<j<g} (1 - 1/M_j),

  and for a constant M, with r = 1 - 1/M: E[V_g] = V_0 r^g + M d h^2 (1 - r^g), which
  tends to M d h^2 (resampling shrinks the spread by 1/M of itself per generation while
  the kernel adds d h^2). The naive "each generation adds h^2" (per dimension),
  V_0 + g d h^2, drops the (1 - 1/M) shrink: it is the first-order expansion for g << M
  and grows without bound.
* A rule: H = f^2 C with C = M S / (M - 1) the unbiased sample covariance (E tr C = V_n)
  and f a function of n_eff = M_n alone (the replace regime gives M_n unit weights):
  f^2 = M^(-2/(d+4)) (Scott) or (M (d + 2) / 4)^(-2/(d+4)) (Silverman). Hence

      E[V_{n+1}] = (1 - 1/M_n + f(M_n)^2) E[V_n]:

  geometric growth whenever f^2 > 1/M, i.e. always (M^(-2/(d+4)) > 1/M for M >= 2): a
  rule-of-thumb KDE chain does not collapse, its variance explodes. (In d > 1 the kernel
  floor of :mod:`jaxcollapse.families.kde` multiplies f^2 by 1 + 64 eps, 1 + 8e-6 in
  float32: far below Monte Carlo resolution.)

Mean. The model mean m_n is a martingale whatever the kernel: m_{n+1} is the mean of M_n
i.i.d. draws of generation n, E[m_{n+1} | generation n] = m_n and
E[||m_{n+1} - m_n||^2 | generation n] = V_n / M_n; with m_0 = mu,

    E||m_g - mu||^2 = sum_{k<g} E[V_k] / M_k.

Only first and second moments enter, so these hold exactly for any p_0 with a finite
variance; a regime other than replace mixes other distributions (or a pool of earlier
generations) into D_n and is not covered here.

Examples:
    >>> import numpy as np
    >>> variance_exact(np.full(3, 10), initial_variance=1.0, dim=1, bandwidth=0.5).round(4).tolist()
    [1.0, 1.15, 1.285, 1.4065]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "variance_exact", "variance_closed_form", "variance_expansion", "variance_limit", "mean_error_exact",
    "rule_factor_squared",
]


def _sizes(sizes) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1)
    if np.any(sizes < 1):
        raise ValueError(f"sample sizes must be >= 1; got {sizes.min():g}")
    return sizes


def rule_factor_squared(samples, dim: int, rule: str) -> np.ndarray:
    """f^2 of scipy.stats.gaussian_kde's rule for n_eff = M unit weights."""
    samples = np.asarray(samples, dtype=np.float64)
    if rule == "scott":
        return samples ** (-2.0 / (dim + 4))
    if rule == "silverman":
        return (samples * (dim + 2) / 4.0) ** (-2.0 / (dim + 4))
    raise ValueError(f"unknown bandwidth rule {rule!r}; choose 'scott' or 'silverman'")


def _coefficients(sizes, dim: int, bandwidth) -> tuple[np.ndarray, np.ndarray]:
    """(a_n, b_n) with E[V_{n+1}] = a_n E[V_n] + b_n."""
    sizes = _sizes(sizes)
    if isinstance(bandwidth, str):
        return 1.0 - 1.0 / sizes + rule_factor_squared(sizes, dim, bandwidth), np.zeros_like(sizes)
    return 1.0 - 1.0 / sizes, np.full_like(sizes, dim * float(bandwidth) ** 2)


def variance_exact(sizes, initial_variance: float, dim: int, bandwidth) -> np.ndarray:
    """E[V_g], g = 0..G, by the recursion E[V_{n+1}] = a_n E[V_n] + b_n (module docstring)."""
    shrink, added = _coefficients(sizes, dim, bandwidth)
    values = np.empty(shrink.size + 1)
    values[0] = initial_variance
    for n in range(shrink.size):
        values[n + 1] = shrink[n] * values[n] + added[n]
    return values


def variance_closed_form(sizes, initial_variance: float, dim: int, bandwidth) -> np.ndarray:
    """E[V_g] = V_0 prod_{j<g} a_j + sum_{k<g} b_k prod_{k<j<g} a_j (the recursion unrolled)."""
    shrink, added = _coefficients(sizes, dim, bandwidth)
    values = [float(initial_variance)]
    for g in range(1, shrink.size + 1):
        carried = sum(added[k] * np.prod(shrink[k + 1:g]) for k in range(g))
        values.append(initial_variance * float(np.prod(shrink[:g])) + float(carried))
    return np.array(values)


def variance_expansion(sizes, initial_variance: float, dim: int, bandwidth: float) -> np.ndarray:
    """The naive "each generation adds h^2" of a fixed bandwidth: V_0 + g d h^2."""
    if isinstance(bandwidth, str):
        raise ValueError("the 'adds h^2 per generation' expansion needs a fixed bandwidth")
    generations = _sizes(sizes).size
    return initial_variance + dim * float(bandwidth) ** 2 * np.arange(generations + 1, dtype=np.float64)


def variance_limit(samples: int, dim: int, bandwidth: float) -> float:
    """The fixed point of a constant-M chain with a fixed bandwidth: M d h^2."""
    return float(samples) * dim * float(bandwidth) ** 2


def mean_error_exact(sizes, initial_variance: float, dim: int, bandwidth) -> np.ndarray:
    """E||m_g - mu||^2 = sum_{k<g} E[V_k] / M_k, g = 0..G."""
    sizes = _sizes(sizes)
    variance = variance_exact(sizes, initial_variance, dim, bandwidth)
    return np.concatenate([[0.0], np.cumsum(variance[:-1] / sizes)])
