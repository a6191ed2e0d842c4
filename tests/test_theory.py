"""Closed forms against independent computations: quadrature, high-precision arithmetic
and float64 Monte Carlo in numpy (independent of the JAX engine)."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from jaxcollapse.theory import gaussian as theory
from conftest import assert_z


@pytest.mark.parametrize("m, ddof", [(5, 1), (5, 0), (40, 1), (3, 0)])
def test_one_generation_by_quadrature(m, ddof):
    """Generation 1: R = (sigma Z / sqrt(M))^2 + (sigma sqrt(chi2_{M-1} / (M - ddof)) - sigma)^2."""
    sigma = 1.7
    exact = theory.replace_exact([m], sigma, ddof)
    chi2 = stats.chi2(m - 1)
    s = lambda x: sigma * math.sqrt(x / (m - ddof))
    e_u2 = integrate.quad(lambda x: (s(x) - sigma) ** 2 * chi2.pdf(x), 0, np.inf)[0]
    e_u4 = integrate.quad(lambda x: (s(x) - sigma) ** 4 * chi2.pdf(x), 0, np.inf)[0]
    e_sigma = integrate.quad(lambda x: s(x) * chi2.pdf(x), 0, np.inf)[0]
    e2 = sigma**2 / m
    assert exact["w2_risk"][1] == pytest.approx(e2 + e_u2, rel=1e-9)
    assert exact["w2_risk_var"][1] == pytest.approx(3 * e2**2 + 2 * e2 * e_u2 + e_u4 - (e2 + e_u2) ** 2, rel=1e-7)
    assert exact["sigma"][1] == pytest.approx(e_sigma, rel=1e-9)
    assert exact["sigma2"][1] == pytest.approx(sigma**2 * (m - 1) / (m - ddof), rel=1e-12)


def _numpy_replace_chain(sizes, sigma, ddof, chains, seed):
    rng = np.random.default_rng(seed)
    mean, sd = np.zeros(chains), np.full(chains, sigma)
    history = []
    for m in sizes:
        mean = mean + sd * rng.standard_normal(chains) / np.sqrt(m)
        sd = sd * np.sqrt(rng.chisquare(m - 1, chains) / (m - ddof))
        history.append((mean.copy(), sd.copy()))
    return history


@pytest.mark.parametrize("ddof", [1, 0])
def test_replace_exact_against_float64_monte_carlo(ddof):
    sizes = np.array([4, 9, 3, 20, 6, 5, 30, 4])  # a ragged schedule with tiny samples
    sigma, chains = 1.3, 400_000
    exact = theory.replace_exact(sizes, sigma, ddof)
    for g, (mean, sd) in enumerate(_numpy_replace_chain(sizes, sigma, ddof, chains, seed=ddof), start=1):
        risk = mean**2 + (sd - sigma) ** 2
        for name, values in (("w2_risk", risk), ("sigma", sd), ("sigma2", sd**2), ("mean_error", mean**2),
                             ("var_x", mean**2 + sd**2)):
            assert_z(values.mean(), values.std() / np.sqrt(chains), exact[name][g], f"{name} at generation {g}")
        centred = (risk - risk.mean()) ** 2
        assert_z(centred.mean(), centred.std() / np.sqrt(chains), exact["w2_risk_var"][g], f"Var R at {g}")
        fourth = (risk - exact["w2_risk"][g]) ** 4
        assert_z(fourth.mean(), fourth.std() / np.sqrt(chains), exact["w2_risk_central4"][g], f"mu4 of R at {g}")


def test_replace_exact_keeps_precision_for_huge_samples():
    """Against the same recursion in 50-digit arithmetic (mpmath), for M up to 1e7."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    sizes = [10**7, 10**5, 10**6]
    for ddof in (0, 1):
        ref_risk, ref_var = [], []
        # plain (unshifted) recursion for E[sigma^a e^b]: fine in 50 digits
        state = {(a, b): (mpmath.mpf(1) if b == 0 else mpmath.mpf(0)) for a in range(5) for b in range(5 - a)}
        for m in sizes:
            k = m - 1
            c = mpmath.mpf(1) / (m - ddof)
            s_moment = lambda a: (2 * c) ** (mpmath.mpf(a) / 2) * mpmath.gamma(mpmath.mpf(k + a) / 2) / mpmath.gamma(mpmath.mpf(k) / 2)
            normal = [1, 0, 1, 0, 3]
            new = {}
            for a in range(5):
                for b in range(5 - a):
                    new[(a, b)] = s_moment(a) * sum(
                        math.comb(b, j) * normal[j] * mpmath.mpf(m) ** (-mpmath.mpf(j) / 2) * state[(a + j, b - j)]
                        for j in range(0, b + 1, 2))
            state = new
            u2 = state[(2, 0)] - 2 * state[(1, 0)] + 1
            risk = state[(0, 2)] + u2
            u4 = state[(4, 0)] - 4 * state[(3, 0)] + 6 * state[(2, 0)] - 4 * state[(1, 0)] + 1
            e2u2 = state[(2, 2)] - 2 * state[(1, 2)] + state[(0, 2)]
            ref_risk.append(risk)
            ref_var.append(state[(0, 4)] + 2 * e2u2 + u4 - risk**2)
        exact = theory.replace_exact(sizes, 1.0, ddof)
        np.testing.assert_allclose(exact["w2_risk"][1:], [float(v) for v in ref_risk], rtol=1e-9)
        np.testing.assert_allclose(exact["w2_risk_var"][1:], [float(v) for v in ref_var], rtol=1e-6)


def test_paper_formulas_as_printed():
    sizes = np.array([10, 20, 40])
    assert theory.paper_w2_risk(sizes)[3] == pytest.approx(1 / 10 + 1 / 20 + 1.5 / 40)
    inverse = 1 / sizes
    off = inverse.sum() ** 2 - (inverse**2).sum()
    assert theory.paper_w2_risk_var(sizes)[3] == pytest.approx(2 / 100 + 2 / 400 + 3 / 1600 + 3 * off)
    assert theory.paper_var_x(sizes, 2.0)[2] == pytest.approx(4 * (1 + 1 / 10 + 1 / 20))
    assert theory.w2_lower_bound(sizes, 3.0)[3] == pytest.approx(3 * inverse.sum())
    # the unbiased Var(X^n) formula is exact, not only an expansion
    np.testing.assert_allclose(theory.paper_var_x(sizes, 1.5), theory.replace_exact(sizes, 1.5, 1)["var_x"])
    # eq. (4) misses half of the standard-deviation term of every generation but the last
    exact = theory.replace_exact(np.full(50, 1000), 1.0, 1)["w2_risk"]
    assert exact[50] == pytest.approx(theory.w2_first_order(np.full(50, 1000))[50], rel=2e-3)
    assert theory.paper_w2_risk(np.full(50, 1000))[50] < 0.7 * exact[50]


def test_accumulate_exact_against_float64_monte_carlo():
    sizes = np.array([5, 5, 8, 3, 5, 5])
    chains, ddof = 300_000, 1
    rng = np.random.default_rng(7)
    exact = theory.accumulate_exact(sizes, 1.0, ddof)
    count, total, scatter = np.zeros(chains), np.zeros(chains), np.zeros(chains)
    mean, sd = np.zeros(chains), np.ones(chains)
    for g, m in enumerate(sizes, start=1):
        x = mean[:, None] + sd[:, None] * rng.standard_normal((chains, m))
        batch_mean = x.mean(1)
        batch_scatter = ((x - batch_mean[:, None]) ** 2).sum(1)
        pooled_count = count + m
        delta = batch_mean - np.where(count > 0, total, 0.0)
        scatter = scatter + batch_scatter + delta**2 * count * m / pooled_count
        total = np.where(count > 0, total, 0.0) + delta * m / pooled_count
        count = pooled_count
        mean, sd = total, np.sqrt(scatter / (count - ddof))
        for name, values in (("mean_error", mean**2), ("cov_trace", sd**2)):
            assert_z(values.mean(), values.std() / np.sqrt(chains), exact[name][g], f"{name} at generation {g}")


def test_replace_exact_nd_reduces_to_one_dimension():
    sizes = np.array([5, 7, 9])
    for ddof in (0, 1):
        one = theory.replace_exact(sizes, 1.0, ddof)
        many = theory.replace_exact_nd(sizes, 1.0, ddof)
        np.testing.assert_allclose(many["mean_error"], one["mean_error"], rtol=1e-12)
        np.testing.assert_allclose(many["cov_trace"], one["sigma2"], rtol=1e-12)
