"""Exact theory of linear-regression collapse chains (numpy, float64).

Setting (Gerstgrasser et al. 2024, "Is model collapse inevitable?"; Dohmatob et al.
2024): a design X (T rows, d features) shared by every generation, w_0 = w*, and
generation n + 1 the ordinary least-squares fit to y_n = X w_n + sigma eps_n with
eps_n ~ N(0, I_T). Write G = X^T X and eta_n = G^{-1} X^T sigma eps_n ~ N(0, sigma^2 G^{-1}),
independent across generations, and e_n = w_n - w*.

* replace (fit on the newest T labels): w_{n+1} = w_n + eta_n, so e_n = sum_{i<n} eta_i;
* accumulate (fit on every block so far; the blocks share X, so the stacked fit is
  G^{-1} X^T (y_0 + ... + y_n) / (n + 1)): (n + 1) w_{n+1} = n w_n + w_n + eta_n, so
  w_{n+1} = w_n + eta_n / (n + 1) and e_n = sum_{i=1..n} eta_{i-1} / i.

Either way e_n ~ N(0, c_n sigma^2 G^{-1}) with c_n = n (replace) or c_n = sum_{i<=n} 1/i^2
(accumulate, bounded by pi^2/6). Write s = c_n sigma^2. The metrics are

    test_error  = ||e_n||^2           (excess squared error at a test point x ~ N(0, I_d)),
    weight_norm = ||w* + e_n||^2,
    train_error = ||X e_n||^2 / T.

Fixed design (the ``shared`` mode): with lambda_i the eigenvalues of G^{-1}, test_error is
s sum_i lambda_i chi^2_1 (independent chi-squares), so its mean is s tr G^{-1}, its
variance 2 s^2 tr G^{-2} and its fourth central moment 48 s^4 tr G^{-4} + 3 (2 s^2 tr G^{-2})^2.
X e_n ~ N(0, s X G^{-1} X^T), a projection of rank d: train_error = (s / T) chi^2_d for
every design. weight_norm = ||w*||^2 + 2 w*^T e + ||e||^2, the cross term uncorrelated
with ||e||^2 (odd Gaussian moments vanish): variance 4 s w*^T G^{-1} w* + 2 s^2 tr G^{-2}.

Random design (the ``per-chain`` mode, X with i.i.d. N(0, 1) entries, so G ~ Wishart_d(T, I)):
given G, ||e||^2 / s = z^T G^{-1} z with z ~ N(0, I_d); writing z = r u (r^2 ~ chi^2_d,
u uniform on the sphere) and using rotation invariance, u^T G^{-1} u has the law of
(G^{-1})_11 ~ 1 / chi^2_{T-d+1}, independent of r, so

    test_error = s chi^2_d / chi^2_{T-d+1}   (independent),  i.e.  s d / (T-d+1) F(d, T-d+1).

Its raw moments are s^r d (d+2) ... (d+2r-2) / ((k-2)(k-4) ... (k-2r)) with k = T-d+1:
E = s d / (T-d-1) (T > d + 1: the published formula), and

    Var = 2 s^2 d (T-1) / ((T-d-1)^2 (T-d-3))   (T > d + 3),

which is also E[2 s^2 tr G^{-2}] + Var[s tr G^{-1}] from the inverse-Wishart second
moments (E tr G^{-2} = d (T-1) / ((T-d) (T-d-1) (T-d-3)),
Var tr G^{-1} = 2 d (T-1) / ((T-d) (T-d-1)^2 (T-d-3))); the fourth central moment needs
T > d + 7. For weight_norm, E[w*^T G^{-1} w*] = ||w*||^2 / (T-d-1) adds
4 s ||w*||^2 / (T-d-1) to that variance. Every formula is checked against a numpy Monte
Carlo of the recursion itself in tests/test_regression.py.

Every function returns arrays over generations n = 0..G (value 0 at n = 0 for the
errors). A moment that does not exist (too few samples for it) is ``inf``.

Examples:
    >>> import numpy as np
    >>> exact = random_design_exact(samples=100, dim=10, noise=1.0, generations=3, regime="replace")
    >>> np.round(exact["test_error"], 6)  # n sigma^2 d / (T - d - 1)
    array([0.      , 0.11236 , 0.224719, 0.337079])
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

__all__ = [
    "REGIMES", "regime_factor", "fixed_design_exact", "random_design_exact", "published_test_error",
    "accumulate_limit",
]

REGIMES = ("replace", "accumulate")


def regime_factor(generations: int, regime: str) -> np.ndarray:
    """c_n over n = 0..G: e_n ~ N(0, c_n sigma^2 G^{-1}).

    Replace adds one unit of OLS noise per generation (c_n = n); accumulate adds the
    noise of generation i with weight 1/i (c_n = sum_{i<=n} 1/i^2 < pi^2/6).

    Examples:
        >>> regime_factor(3, "accumulate").round(4)
        array([0.    , 1.    , 1.25  , 1.3611])
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {', '.join(REGIMES)}; got {regime!r}")
    n = np.arange(int(generations) + 1, dtype=np.float64)
    if regime == "replace":
        return n
    terms = np.zeros_like(n)
    terms[1:] = 1.0 / n[1:] ** 2
    return np.cumsum(terms)


def _weights(true_weights, dim: int) -> np.ndarray:
    if true_weights is None:
        return np.ones(dim) / np.sqrt(dim)
    return np.asarray(true_weights, np.float64).reshape(dim)


def _train_error(scale: np.ndarray, samples: int, dim: int) -> dict[str, np.ndarray]:
    """train_error = (s / T) chi^2_d, whatever the design."""
    unit = scale / samples
    return {
        "train_error": unit * dim,
        "train_error_var": 2.0 * dim * unit**2,
        "train_error_central4": (48.0 * dim + 12.0 * dim**2) * unit**4,
    }


def fixed_design_exact(design, noise: float, generations: int, regime: str, true_weights=None) -> dict[str, np.ndarray]:
    """Exact moments of the metrics for one fixed design X (T x d) shared by all chains.

    Keys: ``test_error``, ``test_error_var``, ``test_error_central4``, ``train_error``,
    ``train_error_var``, ``train_error_central4``, ``weight_norm``, ``weight_norm_var``.

    Examples:
        >>> import numpy as np
        >>> exact = fixed_design_exact(np.eye(2) * 2.0, 1.0, 2, "replace")
        >>> exact["test_error"]  # n sigma^2 tr (X^T X)^{-1} = n (1/4 + 1/4)
        array([0. , 0.5, 1. ])
    """
    design = np.asarray(design, np.float64)
    samples, dim = design.shape
    gram = design.T @ design
    inverse_eigenvalues = 1.0 / np.linalg.eigvalsh(gram)
    trace1, trace2, trace4 = (float(np.sum(inverse_eigenvalues**p)) for p in (1, 2, 4))
    weights = _weights(true_weights, dim)
    spread = float(weights @ np.linalg.solve(gram, weights))  # w*^T G^{-1} w*
    scale = regime_factor(generations, regime) * noise**2
    test_var = 2.0 * scale**2 * trace2
    return {
        "test_error": scale * trace1,
        "test_error_var": test_var,
        "test_error_central4": 48.0 * scale**4 * trace4 + 3.0 * test_var**2,
        "weight_norm": float(weights @ weights) + scale * trace1,
        "weight_norm_var": 4.0 * scale * spread + test_var,
        **_train_error(scale, samples, dim),
    }


def _ratio_raw_moment(order: int, dim: int, degrees: int) -> Fraction:
    """E[(chi^2_d / chi^2_k)^r] for independent chi-squares, exactly (needs k > 2r)."""
    value = Fraction(1)
    for j in range(order):
        value *= Fraction(dim + 2 * j, degrees - 2 * (j + 1))
    return value


def _ratio_central4(dim: int, degrees: int) -> float:
    """Fourth central moment of chi^2_d / chi^2_k, in exact rational arithmetic (the raw
    moments nearly cancel), then rounded once."""
    m1, m2, m3, m4 = (_ratio_raw_moment(r, dim, degrees) for r in (1, 2, 3, 4))
    return float(m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4)


def random_design_exact(samples: int, dim: int, noise: float, generations: int, regime: str,
                        true_weights=None) -> dict[str, np.ndarray]:
    """Exact moments of the metrics when every chain draws its own Gaussian design.

    The same keys as :func:`fixed_design_exact`; needs T > d + 1 for the means, T > d + 3
    for the variances (``inf`` otherwise) and T > d + 7 for the fourth central moment.

    Examples:
        >>> exact = random_design_exact(20, 2, 1.0, 1, "replace")
        >>> round(float(exact["test_error"][1]), 6), round(float(exact["test_error_var"][1]), 6)
        (0.117647, 0.017532)
    """
    samples, dim = int(samples), int(dim)
    if samples <= dim + 1:
        raise ValueError(f"a random design needs samples T > dim + 1 = {dim + 1}; got T = {samples}")
    weights = _weights(true_weights, dim)
    scale = regime_factor(generations, regime) * noise**2
    free = samples - dim - 1
    degrees = samples - dim + 1  # of the chi-square in the denominator
    mean = scale * dim / free
    with np.errstate(invalid="ignore"):  # 0 * inf at n = 0 is 0: nothing has moved yet
        if samples > dim + 3:
            test_var = 2.0 * scale**2 * dim * (samples - 1) / (free**2 * (samples - dim - 3))
        else:
            test_var = np.where(scale > 0, np.inf, 0.0)
        if samples > dim + 7:
            central4 = scale**4 * _ratio_central4(dim, degrees)
        else:
            central4 = np.where(scale > 0, np.inf, 0.0)
    return {
        "test_error": mean,
        "test_error_var": test_var,
        "test_error_central4": central4,
        "weight_norm": float(weights @ weights) + mean,
        "weight_norm_var": 4.0 * scale * float(weights @ weights) / free + test_var,
        **_train_error(scale, samples, dim),
    }


def published_test_error(samples: int, dim: int, noise: float, generations: int, regime: str) -> np.ndarray:
    """The published E[test_error] = c_n sigma^2 d / (T - d - 1): replace n sigma^2 d / (T-d-1)
    (Dohmatob et al.), accumulate sigma^2 d / (T-d-1) sum_{i<=n} 1/i^2 (Gerstgrasser et al.).

    It averages over Gaussian designs; for one fixed design X the exact value is
    c_n sigma^2 tr (X^T X)^{-1}, which differs by the factor tr (X^T X)^{-1} / (d / (T-d-1)).
    """
    samples, dim = int(samples), int(dim)
    if samples <= dim + 1:
        raise ValueError(f"the published formula needs samples T > dim + 1 = {dim + 1}; got T = {samples}")
    return regime_factor(generations, regime) * noise**2 * dim / (samples - dim - 1)


def accumulate_limit(samples: int, dim: int, noise: float) -> float:
    """sup_n of the published accumulate E[test_error]: sigma^2 d / (T - d - 1) pi^2 / 6."""
    return float(noise**2 * dim / (samples - dim - 1) * np.pi**2 / 6.0)
