"""Exact finite-M theory of Gaussian recursion chains, and the paper's formulas as stated.

Notation (paper section 4): generation 0 is p_0 = N(mu, sigma^2); generation g >= 1 is
fitted to the M_{g-1} samples of D_{g-1}; ``sizes`` = (M_0, ..., M_{G-1}). Every
function returns an array over generations g = 0..G. ``ddof`` is 1 for the unbiased
estimator (paper eq. 1) and 0 for the MLE. Derivations: docs/theory.md.

Replace chain, 1-D. With e_g = mu_g - mu and u_g = sigma_g - sigma,

    e_{g+1} = e_g + sigma_g Z / sqrt(M),   sigma_{g+1} = sigma_g s,
    s = sqrt(chi^2_{M-1} / (M - ddof)),     Z ~ N(0, 1) independent of s,

because the sample mean and variance of a Gaussian sample are independent. The moments
E[u^a e^b], a + b <= 8, therefore obey a closed linear recursion (order 8 gives the
fourth central moment of R, hence the exact standard error of a sample variance); the coefficients
E[s^i (s - 1)^p] are computed from the deviations E[s^i] - 1, which keeps full relative
precision up to M ~ 1e7 (plain gamma-function ratios lose it from M ~ 1e4).

Examples:
    >>> import numpy as np
    >>> exact = replace_exact(np.full(3, 100), sigma=1.0, ddof=1)
    >>> round(float(exact["w2_risk"][1]), 5)  # 1/M + E(sigma_1 - 1)^2
    0.01504
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import gammaln

__all__ = [
    "replace_exact", "replace_exact_nd", "accumulate_exact", "paper_w2_risk", "paper_w2_risk_var",
    "paper_var_x", "w2_lower_bound", "w2_first_order", "w2_var_first_order", "accumulate_mean_error_published",
    "sample_variance_standard_error",
]

_ORDER = 8  # moments up to order 8 give the fourth central moment of R = e^2 + u^2
_NORMAL_MOMENTS = (1.0, 0.0, 1.0, 0.0, 3.0, 0.0, 15.0, 0.0, 105.0)
_PAIRS = [(a, b) for a in range(_ORDER + 1) for b in range(_ORDER + 1 - a)]
_INDEX = {pair: i for i, pair in enumerate(_PAIRS)}


def _half_gamma_log_ratio_remainder(x: float) -> float:
    """h(x) = ln Gamma(x + 1/2) - ln Gamma(x) - ln(x) / 2, accurate to ~1e-16 relative."""
    if x < 60.0:
        return float(gammaln(x + 0.5) - gammaln(x) - 0.5 * math.log(x))
    inv = 1.0 / x
    # asymptotic series of ln Gamma(x + 1/2) - ln Gamma(x) - ln(x)/2
    return inv * (-1.0 / 8 + inv**2 * (1.0 / 192 + inv**2 * (-1.0 / 640 + inv**2 * 17.0 / 14336)))


def _scale_factor_deviations(sample_size: int, ddof: int) -> np.ndarray:
    """delta_i = E[s^i] - 1 for i = 0.._ORDER, s = sqrt(chi^2_{M-1} / (M - ddof)).

    E[s^2j] = c^j prod_{l<j} (k + 2l) and E[s^(2j+1)] = E[s] c^j prod_{l<j} (k + 1 + 2l)
    with k = M - 1, c = 1 / (M - ddof); each factor c (k + 2l) - 1 = (2l - 1 + ddof) c is
    small and exact, so the logs are summed with log1p and the deviation taken by expm1.
    """
    k = sample_size - 1
    if k == 0:  # M = 1 with the MLE: the fitted variance is exactly zero
        return np.array([0.0] + [-1.0] * _ORDER)
    denominator = sample_size - ddof
    log_mean_s = 0.5 * math.log1p((k - denominator) / denominator) + _half_gamma_log_ratio_remainder(k / 2)
    deltas = [0.0]
    for i in range(1, _ORDER + 1):
        j, odd = divmod(i, 2)
        offset = 0 if odd else -1  # (2l + ddof) for odd powers, (2l - 1 + ddof) for even
        log_moment = sum(math.log1p((2 * l + offset + ddof) / denominator) for l in range(j))
        deltas.append(math.expm1(log_moment + (log_mean_s if odd else 0.0)))
    return np.array(deltas)


def _shifted_scale_moments(deltas: np.ndarray) -> np.ndarray:
    """table[i, p] = E[s^i (s - 1)^p] for i + p <= _ORDER, from the deviations."""
    table = np.zeros((_ORDER + 1, _ORDER + 1))
    for i in range(_ORDER + 1):
        for p in range(_ORDER + 1 - i):
            if p == 0:
                table[i, p] = 1.0 + deltas[i]
            else:  # the constant parts cancel exactly; only the deviations remain
                table[i, p] = sum(math.comb(p, q) * (-1) ** (p - q) * deltas[i + q] for q in range(p + 1))
    return table


@functools.lru_cache(maxsize=256)
def _transition(sample_size: int, sigma: float, ddof: int) -> np.ndarray:
    """The linear map m_g -> m_{g+1} on E[u^a e^b], a + b <= _ORDER, for one generation:
    u' = u s + sigma (s - 1), e' = e + (u + sigma) Z / sqrt(M)."""
    scale = _shifted_scale_moments(_scale_factor_deviations(sample_size, ddof))
    matrix = np.zeros((len(_PAIRS), len(_PAIRS)))
    inv_sqrt_m = 1.0 / math.sqrt(sample_size)
    for row, (a, b) in enumerate(_PAIRS):
        for i in range(a + 1):
            for j in range(0, b + 1, 2):
                for l in range(j + 1):
                    matrix[row, _INDEX[(i + l, b - j)]] += (
                        math.comb(a, i) * sigma ** (a - i) * scale[i, a - i]
                        * math.comb(b, j) * _NORMAL_MOMENTS[j] * inv_sqrt_m**j
                        * math.comb(j, l) * sigma ** (j - l)
                    )
    return matrix


def _sizes(sizes) -> np.ndarray:
    return np.asarray(sizes, dtype=np.int64).reshape(-1)


def _moment(history: np.ndarray, a: int, b: int) -> np.ndarray:
    return history[:, _INDEX[(a, b)]]


def replace_exact(sizes, sigma: float = 1.0, ddof: int = 1) -> dict[str, np.ndarray]:
    """Exact moments of the 1-D replace chain for any schedule and either estimator.

    Returns arrays over g = 0..G: ``w2_risk`` (E R_W2), ``w2_risk_var`` (Var R_W2),
    ``w2_risk_central4`` (E (R - E R)^4, for the standard error of a sample variance),
    ``mean_error`` (E (mu_g - mu)^2), ``sigma2`` (E sigma_g^2), ``sigma`` (E sigma_g)
    and ``var_x`` (Var X^g = E (mu_g - mu)^2 + E sigma_g^2).
    """
    sizes = _sizes(sizes)
    moments = np.zeros(len(_PAIRS))
    moments[_INDEX[(0, 0)]] = 1.0
    history = [moments]
    for m in sizes:
        moments = _transition(int(m), float(sigma), int(ddof)) @ moments
        history.append(moments)
    h = np.stack(history)
    mean_error = _moment(h, 0, 2)
    u1, u2 = _moment(h, 1, 0), _moment(h, 2, 0)
    # E[R^k] = sum_i C(k, i) E[e^(2i) u^(2(k-i))]
    raw = [sum(math.comb(k, i) * _moment(h, 2 * (k - i), 2 * i) for i in range(k + 1)) for k in range(5)]
    risk = raw[1]
    central4 = raw[4] - 4 * raw[3] * risk + 6 * raw[2] * risk**2 - 3 * risk**4
    sigma2 = u2 + 2.0 * sigma * u1 + sigma**2
    return {
        "w2_risk": risk,
        "w2_risk_var": raw[2] - risk**2,
        "w2_risk_central4": central4,
        "mean_error": mean_error,
        "sigma2": sigma2,
        "sigma": u1 + sigma,
        "var_x": mean_error + sigma2,
    }


def sample_variance_standard_error(variance, central4, chains: int) -> np.ndarray:
    """The exact standard deviation of the sample variance of ``chains`` independent draws:
    sqrt((mu_4 - sigma^4 (n - 3) / (n - 1)) / n)."""
    n = float(chains)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.maximum(central4 - variance**2 * (n - 3) / (n - 1), 0.0) / n)


def replace_exact_nd(sizes, cov_trace: float, ddof: int = 1) -> dict[str, np.ndarray]:
    """Exact E tr Sigma_g, E ||mu_g - mu||^2 and the data variance in d dimensions.

    E[Sigma_{g+1} | Sigma_g] = Sigma_g (M - 1) / (M - ddof) and
    E[||mu_{g+1} - mu_g||^2 | Sigma_g] = tr Sigma_g / M.
    """
    sizes = _sizes(sizes)
    trace = np.empty(sizes.size + 1)
    mean_error = np.zeros(sizes.size + 1)
    trace[0] = cov_trace
    for g, m in enumerate(sizes):
        trace[g + 1] = trace[g] * (m - 1) / (m - ddof)
        mean_error[g + 1] = mean_error[g] + trace[g] / m
    return {"cov_trace": trace, "mean_error": mean_error, "var_x": trace + mean_error}


def accumulate_exact(sizes, cov_trace: float, ddof: int = 1) -> dict[str, np.ndarray]:
    """Exact E tr Sigma_g and E ||mu_g - mu||^2 when each fit sees the whole pool.

    Adding m samples of N(mu_g, Sigma_g) to a pool of N points whose mean is mu_g adds
    (m - 1 + N / (N + m)) E tr Sigma_g to the expected scatter and moves the pool mean by
    a term of expected squared size m E tr Sigma_g / (N + m)^2.
    """
    sizes = _sizes(sizes)
    trace = np.empty(sizes.size + 1)
    mean_error = np.zeros(sizes.size + 1)
    trace[0] = cov_trace
    if sizes.size:
        pool, scatter = int(sizes[0]), (sizes[0] - 1) * cov_trace
        mean_error[1] = cov_trace / sizes[0]
        trace[1] = scatter / (pool - ddof)
        for g in range(1, sizes.size):
            m = int(sizes[g])
            scatter += (m - 1 + pool / (pool + m)) * trace[g]
            mean_error[g + 1] = mean_error[g] + m * trace[g] / (pool + m) ** 2
            pool += m
            trace[g + 1] = scatter / (pool - ddof)
    return {"cov_trace": trace, "mean_error": mean_error, "var_x": trace + mean_error}


def accumulate_mean_error_published(sizes, cov_trace: float) -> np.ndarray:
    """tr Sigma * sum_{i<g} M_i / N_i^2 with N_i = M_0 + ... + M_i: the accumulate mean
    error if the fitted variance stayed at its true value (Gerstgrasser et al. 2024); for
    constant M it is bounded by pi^2 tr Sigma / (6 M)."""
    sizes = _sizes(sizes).astype(np.float64)
    pools = np.cumsum(sizes)
    return np.concatenate([[0.0], cov_trace * np.cumsum(sizes / pools**2)])


def paper_w2_risk(sizes, sigma: float = 1.0) -> np.ndarray:
    """Eq. (4) as printed: E R^{n+1} = sigma^2 (1/M_0 + ... + 1/M_{n-1} + 3 / (2 M_n))."""
    inverse = 1.0 / _sizes(sizes)
    values = [0.0]
    for g in range(1, inverse.size + 1):
        values.append(sigma**2 * (inverse[: g - 1].sum() + 1.5 * inverse[g - 1]))
    return np.array(values)


def paper_w2_risk_var(sizes, sigma: float = 1.0) -> np.ndarray:
    """Eq. (5) as printed: sigma^4 (2/M_0^2 + ... + 3/M_n^2 + sum_{i != j} 3 / (M_i M_j))."""
    inverse = 1.0 / _sizes(sizes)
    values = [0.0]
    for g in range(1, inverse.size + 1):
        head, last = inverse[: g - 1], inverse[g - 1]
        window = inverse[:g]
        off_diagonal = window.sum() ** 2 - (window**2).sum()
        values.append(sigma**4 * (2.0 * (head**2).sum() + 3.0 * last**2 + 3.0 * off_diagonal))
    return np.array(values)


def paper_var_x(sizes, sigma: float = 1.0) -> np.ndarray:
    """Section 4.2: Var(X^n) = sigma^2 (1 + 1/M_0 + ... + 1/M_{n-1})."""
    return sigma**2 * (1.0 + np.concatenate([[0.0], np.cumsum(1.0 / _sizes(sizes))]))


def w2_lower_bound(sizes, cov_trace: float) -> np.ndarray:
    """Eq. (15) with no extra noise: E R^{n+1} >= tr Sigma (1/M_0 + ... + 1/M_n)."""
    return cov_trace * np.concatenate([[0.0], np.cumsum(1.0 / _sizes(sizes))])


def w2_first_order(sizes, sigma: float = 1.0) -> np.ndarray:
    """The first-order expansion that the exact theory gives for the unbiased estimator:
    E R^g = sigma^2 * sum_{i<g} 3 / (2 M_i) + O(1/M^2) (every generation contributes
    1/M_i through the mean and 1/(2 M_i) through the standard deviation)."""
    return sigma**2 * 1.5 * np.concatenate([[0.0], np.cumsum(1.0 / _sizes(sizes))])


def w2_var_first_order(sizes, sigma: float = 1.0) -> np.ndarray:
    """Leading order of Var R_W2 for the unbiased estimator: (5/2) sigma^4 S^2 with
    S = sum_{i<g} 1/M_i (e ~ N(0, sigma^2 S) and sigma_g - sigma ~ N(0, sigma^2 S / 2));
    valid while S is small."""
    inverse_sums = np.concatenate([[0.0], np.cumsum(1.0 / _sizes(sizes))])
    return 2.5 * sigma**4 * inverse_sums**2
