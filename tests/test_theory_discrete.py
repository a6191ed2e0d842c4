"""Exact discrete-chain theory against independent computations: brute-force transition
matrices built with scipy.stats, matrix powers, mpmath, and float64 Monte Carlo in numpy."""

import itertools
import math
import time

import mpmath
import numpy as np
import pytest
from scipy import stats

from jaxcollapse.theory import discrete as theory
from conftest import assert_z


# ---------------------------------------------------------------- brute force

def _brute_states(m, k):
    """All count vectors of m draws over k states, by filtering the full grid (no stars and bars)."""
    return np.array([c for c in itertools.product(range(m + 1), repeat=k) if sum(c) == m])


def _brute_matrix(states_from, m_from, states_to, m_to):
    return np.array([[stats.multinomial.pmf(t, m_to, s / m_from) for t in states_to] for s in states_from])


def _brute_chain(p0, sizes):
    """Per-generation summaries from explicit matrices; constant runs of M use matrix_power."""
    p0 = np.asarray(p0, float)
    k = len(p0)
    rows = [dict(absorbed=float(np.max(p0) == 1), absorbed_in=(p0 == 1).astype(float), alive=(p0 > 0).astype(float),
                 heterozygosity=1 - np.sum(p0**2), mean_p=p0)]
    states = _brute_states(sizes[0], k)
    first = np.array([stats.multinomial.pmf(s, sizes[0], p0) for s in states])
    constant = len(set(sizes)) == 1
    if constant:
        step = _brute_matrix(states, sizes[0], states, sizes[0])
    dist, prev_states = first, states
    for g in range(1, len(sizes) + 1):
        m = sizes[g - 1]
        if constant:
            dist = first @ np.linalg.matrix_power(step, g - 1)
        elif g > 1:
            states = _brute_states(m, k)
            dist = dist @ _brute_matrix(prev_states, sizes[g - 2], states, m)
        prev_states = states
        freq = states / m
        absorbed_in = np.array([dist[states[:, i] == m].sum() for i in range(k)])
        rows.append(dict(absorbed=absorbed_in.sum(), absorbed_in=absorbed_in, alive=dist @ (states > 0),
                         heterozygosity=dist @ (1 - np.sum(freq**2, 1)), mean_p=dist @ freq))
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


@pytest.mark.parametrize("p0, sizes", [
    ([0.2, 0.3, 0.5], [4] * 8),
    ([0.35, 0.65], [5] * 8),
    ([0.2, 0.0, 0.3, 0.5], [3] * 6),  # a state outside the support
    ([0.2, 0.3, 0.5], [3, 5, 2, 4, 6, 1, 4]),  # a schedule, including M = 1
])
def test_categorical_chain_matches_brute_force(p0, sizes):
    exact = theory.categorical_chain_exact(p0, sizes)
    brute = _brute_chain(p0, sizes)
    for key in brute:
        np.testing.assert_allclose(exact[key], brute[key], rtol=0, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(exact["support"], brute["alive"].sum(1), rtol=0, atol=1e-12)
    assert np.all(np.diff(exact["absorbed"]) >= -1e-15)


def test_categorical_chain_blockwise_path(monkeypatch):
    """Transition matrices too large to cache are applied in blocks of source states."""
    p0, sizes = [0.2, 0.3, 0.5], [6, 6, 5, 7, 6]
    cached = theory.categorical_chain_exact(p0, sizes)
    monkeypatch.setattr(theory, "_CACHE_ENTRIES", 100)
    blocked = theory.categorical_chain_exact(p0, sizes)
    for key in cached:
        np.testing.assert_allclose(blocked[key], cached[key], rtol=0, atol=1e-14, err_msg=key)


def test_categorical_chain_limits_and_validation():
    with pytest.raises(ValueError, match="max_states"):
        theory.categorical_chain_exact(np.full(10, 0.1), [30])  # C(39, 9) ~ 2e8 compositions
    with pytest.raises(ValueError, match="max_states = 100"):
        theory.absorption_time_exact([0.2, 0.3, 0.5], 20, max_states=100)
    with pytest.raises(ValueError, match="sum to 1"):
        theory.categorical_chain_exact([0.2, 0.3], [3])
    with pytest.raises(ValueError, match="positive integers"):
        theory.categorical_chain_exact([0.5, 0.5], [3, 0])
    delta = theory.categorical_chain_exact([0.0, 1.0, 0.0], [3, 3])
    np.testing.assert_array_equal(delta["absorbed"], 1.0)
    np.testing.assert_array_equal(delta["absorbed_in"][:, 1], 1.0)


def test_categorical_chain_medium_case_is_fast_and_a_martingale():
    p0 = [0.2, 0.3, 0.5]
    start = time.perf_counter()
    exact = theory.categorical_chain_exact(p0, np.full(200, 40))  # 861 states
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"K = 3, M = 40, 200 generations took {elapsed:.1f} s"
    np.testing.assert_allclose(exact["mean_p"], np.broadcast_to(p0, (201, 3)), rtol=0, atol=1e-11)
    np.testing.assert_allclose(exact["heterozygosity"], theory.heterozygosity_exact(np.full(200, 40), p0), rtol=1e-9, atol=1e-14)
    # absorbed into i with probability -> p0[i]; after 200 generations most chains are absorbed
    np.testing.assert_allclose(exact["absorbed_in"][-1] / exact["absorbed"][-1], p0, atol=2e-3)


# ------------------------------------------------------------ absorption time

@pytest.mark.parametrize("p0, m", [([0.2, 0.3, 0.5], 6), ([0.35, 0.65], 5), ([0.1, 0.0, 0.9], 4), ([0.25] * 4, 3)])
def test_absorption_time_against_forward_pmf(p0, m):
    exact = theory.absorption_time_exact(p0, m, g_max=40)
    horizon = 400
    forward = theory.categorical_chain_exact(p0, np.full(horizon, m))
    assert 1 - forward["absorbed"][-1] < 1e-12  # the tail beyond the horizon is negligible
    pmf = np.diff(forward["absorbed"], prepend=0.0)
    g = np.arange(horizon + 1)
    mean = pmf @ g
    assert exact["mean"] == pytest.approx(mean, rel=1e-10)
    assert exact["var"] == pytest.approx(pmf @ g**2 - mean**2, rel=1e-8)
    np.testing.assert_allclose(exact["pmf"], pmf[:41], rtol=0, atol=1e-13)
    np.testing.assert_allclose(exact["absorbed_in"], p0, rtol=0, atol=1e-10)
    np.testing.assert_allclose(exact["absorption_probabilities"].sum(1), 1.0, rtol=0, atol=1e-12)
    # B = N R: from a transient count vector c the chain ends at i with probability c_i / M
    support = np.flatnonzero(np.asarray(p0) > 0)
    np.testing.assert_allclose(exact["absorption_probabilities"], exact["transient_states"][:, support] / m, atol=1e-10)


def test_absorption_time_conventions():
    assert theory.absorption_time_exact([0.0, 1.0], 7)["mean"] == 0.0  # p0 a delta: T = 0
    one = theory.absorption_time_exact([0.2, 0.3, 0.5], 1, g_max=3)  # M = 1: p_1 is always a delta
    assert one["mean"] == pytest.approx(1.0, abs=1e-14) and one["var"] == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(one["pmf"], [0, 1, 0, 0], atol=1e-14)
    # M = 2, p = 1/2: each generation is absorbed with probability 1/2, so T ~ Geometric(1/2)
    two = theory.absorption_time_exact([0.5, 0.5], 2)
    assert two["mean"] == pytest.approx(2.0, rel=1e-13) and two["var"] == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("p, m", [(0.3, 7), (0.05, 30), (0.5, 1), (0.9, 2)])
def test_bernoulli_absorption_matches_categorical(p, m):
    fast = theory.bernoulli_absorption_exact(p, m, g_max=25)
    general = theory.absorption_time_exact([1 - p, p], m, g_max=25)
    assert fast["mean"] == pytest.approx(general["mean"], rel=1e-11)
    assert fast["var"] == pytest.approx(general["var"], rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(fast["absorbed_in"], general["absorbed_in"], atol=1e-12)
    np.testing.assert_allclose(fast["absorbed_in"], [1 - p, p], atol=1e-10)
    np.testing.assert_allclose(fast["pmf"], general["pmf"], atol=1e-13)


def test_bernoulli_absorption_large_m_is_fast():
    start = time.perf_counter()
    general = theory.absorption_time_exact([0.7, 0.3], 500)
    assert time.perf_counter() - start < 5.0
    fast = theory.bernoulli_absorption_exact(0.3, 500)
    assert fast["mean"] == pytest.approx(general["mean"], rel=1e-10)
    assert fast["var"] == pytest.approx(general["var"], rel=1e-8)


# ---------------------------------------------------- heterozygosity and loss

@pytest.mark.parametrize("sizes", [[4] * 6, [3, 5, 2, 4, 6], [2, 1, 3]])
def test_heterozygosity_matches_chain(sizes):
    p0 = [0.2, 0.3, 0.5]
    exact = theory.categorical_chain_exact(p0, sizes)
    np.testing.assert_allclose(theory.heterozygosity_exact(sizes, p0), exact["heterozygosity"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(exact["mean_p"], np.broadcast_to(p0, exact["mean_p"].shape), rtol=0, atol=1e-13)


@pytest.mark.parametrize("p0, m", [([0.2, 0.3, 0.5], 4), ([0.05, 0.0, 0.15, 0.8], 6), ([0.35, 0.65], 5)])
def test_first_generation_loss_and_support(p0, m):
    exact = theory.categorical_chain_exact(p0, [m])
    loss = theory.loss_probability_first_generation(p0, m)
    np.testing.assert_allclose(loss, 1 - exact["alive"][1], rtol=0, atol=1e-13)
    np.testing.assert_allclose(loss, stats.binom.pmf(0, m, p0), rtol=1e-12)
    assert theory.expected_support_first_generation(p0, m) == pytest.approx(exact["support"][1], abs=1e-13)


def test_loss_probability_precision():
    p, m = 1e-3, 100_000
    expected = float((1 - mpmath.mpf(p)) ** m)  # ~3.5e-44
    assert theory.loss_probability_first_generation([p, 1 - p], m)[0] == pytest.approx(expected, rel=1e-11)
    tiny = 1e-15  # 1 - (1 - p)^M ~ M p: the rare state survives with probability ~1e-14
    assert theory.expected_support_first_generation([tiny, 1 - tiny], 10) - 1.0 == pytest.approx(1e-14, rel=0.02)


# ------------------------------------------------------- Bernoulli forward chain

@pytest.mark.parametrize("p, sizes", [(0.3, [6] * 10), (0.15, [3, 7, 2, 5, 4, 1, 3])])
def test_bernoulli_chain_matches_categorical(p, sizes):
    fast = theory.bernoulli_chain_exact(p, sizes)
    general = theory.categorical_chain_exact([1 - p, p], sizes)
    np.testing.assert_allclose(fast["absorbed_zero"], general["absorbed_in"][:, 0], atol=1e-13)
    np.testing.assert_allclose(fast["absorbed_one"], general["absorbed_in"][:, 1], atol=1e-13)
    np.testing.assert_allclose(fast["survival"], general["alive"][:, 1], atol=1e-13)
    np.testing.assert_allclose(fast["mean_p"], p, atol=1e-13)


# --------------------------------------------------------------------- Kimura

def test_kimura_formula_forms():
    p, m = 0.3, 77
    two_state = -2 * m * (p * math.log(p) + (1 - p) * math.log(1 - p))
    assert theory.kimura_mean_absorption_time([1 - p, p], m) == pytest.approx(two_state, rel=1e-14)
    assert theory.kimura_mean_absorption_time(p, m) == pytest.approx(two_state, rel=1e-14)
    assert theory.kimura_mean_absorption_time([0.0, 1.0], m) == 0.0
    # a zero-probability state drops out: K = 3 with one empty state is the K = 2 formula
    assert theory.kimura_mean_absorption_time([1 - p, 0.0, p], m) == pytest.approx(two_state, rel=1e-14)


def test_kimura_approaches_exact_two_states():
    """Our T counts the D_0 draw, as Wright-Fisher time from the population p0 does: compare E[T] directly."""
    errors = []
    for m in (50, 200, 1000):
        exact = theory.bernoulli_absorption_exact(0.3, m)["mean"]
        errors.append(theory.kimura_mean_absorption_time([0.7, 0.3], m) / exact - 1)
    errors = np.array(errors)
    np.testing.assert_allclose(errors, [0.028828, 0.0089682, 0.0022213], rtol=1e-3)  # measured, see docstring
    assert np.all(np.diff(np.abs(errors)) < 0) and abs(errors[-1]) < 0.005


def test_kimura_approaches_exact_three_states():
    p0 = [0.2, 0.3, 0.5]
    errors = np.array([theory.kimura_mean_absorption_time(p0, m) / theory.absorption_time_exact(p0, m)["mean"] - 1
                       for m in (5, 10, 20, 40)])
    np.testing.assert_allclose(errors, [0.16945, 0.094496, 0.053063, 0.029721], rtol=1e-3)
    assert np.all(np.diff(np.abs(errors)) < 0) and abs(errors[-1]) < 0.04


# -------------------------------------------------------------------- Poisson

def _poisson_truncated(lambda0, sizes, s_max=200):
    """P(S_{g-1} = 0) from truncated transition matrices over S = sum(D)."""
    s = np.arange(s_max + 1)
    dist = stats.poisson.pmf(s, sizes[0] * lambda0)
    out = [float(lambda0 == 0), dist[0]]
    for n in range(1, len(sizes)):
        step = stats.poisson.pmf(s[None, :], s[:, None] * sizes[n] / sizes[n - 1])
        dist = dist @ step
        out.append(dist[0])
    return np.array(out)


@pytest.mark.parametrize("lambda0, sizes", [(0.7, [3] * 8), (0.4, [2, 4, 3, 1, 5, 2]), (2.0, [1] * 6)])
def test_poisson_extinction_matches_truncated_matrices(lambda0, sizes):
    np.testing.assert_allclose(theory.poisson_extinction_exact(lambda0, sizes), _poisson_truncated(lambda0, sizes),
                               rtol=0, atol=1e-12)


def test_poisson_extinction_closed_forms():
    np.testing.assert_array_equal(theory.poisson_extinction_exact(0.0, [3, 3]), 1.0)
    # constant M: P(lambda_g = 0) = exp(M lambda0 (f_{g-1}(0) - 1)), f the Poisson(1) pgf
    m, lambda0, z, expected = 4, 0.3, 0.0, []
    for _ in range(6):
        expected.append(math.exp(m * lambda0 * (z - 1)))
        z = math.exp(z - 1)
    np.testing.assert_allclose(theory.poisson_extinction_exact(lambda0, [m] * 6)[1:], expected, rtol=1e-14)


@pytest.mark.parametrize("lambda0, sizes", [(0.4, [5] * 10), (0.3, [4, 8, 2, 6, 3, 5])])
def test_poisson_extinction_monte_carlo(lambda0, sizes):
    rng = np.random.default_rng(20260521)
    chains = 20_000
    lam = np.full(chains, lambda0)
    extinct = []
    for m in sizes:  # actual draws, not the sum identity the theory uses
        lam = rng.poisson(lam[:, None], size=(chains, m)).mean(axis=1)
        extinct.append(np.mean(lam == 0))
    extinct = np.array(extinct)
    exact = theory.poisson_extinction_exact(lambda0, sizes)
    assert exact[0] == 0.0
    se = np.sqrt(exact[1:] * (1 - exact[1:]) / chains)
    assert_z(extinct, se, exact[1:], "P(lambda_g = 0)")


# ------------------------------------------------- Suresh et al. (2025) bound

def test_suresh_bound_values():
    bound = theory.suresh_unigram_survival_bound([0.75, 0.25, 0.0], 8, 3)
    np.testing.assert_allclose(bound[:, 1], [1.0, 1 - math.exp(-2), 1 - math.exp(-1), 1 - math.exp(-2 / 3)], rtol=1e-14)
    np.testing.assert_array_equal(bound[:, 2], 0.0)


def test_suresh_bound_holds_for_exact_bernoulli_chains():
    """1 - exp(-M p0[i] / g) <= P(p_g[i] > 0), for both symbols of every start c / M, M <= 24, g <= 300."""
    worst = np.inf
    for m in list(range(1, 25)) + [60]:
        for c in range(1, m):
            p = c / m
            exact = theory.bernoulli_chain_exact(p, np.full(300, m))
            bound = theory.suresh_unigram_survival_bound([1 - p, p], m, 300)
            alive = np.stack([1 - exact["absorbed_one"], exact["survival"]], axis=1)
            worst = min(worst, np.min(alive - bound))
    assert worst >= -1e-12, f"bound exceeds the exact survival probability by {-worst:.3g}"


def test_suresh_bound_holds_for_exact_categorical_chain_and_is_tight_at_first_generation():
    p0, m = [0.1, 0.25, 0.65], 12
    exact = theory.categorical_chain_exact(p0, np.full(150, m))
    bound = theory.suresh_unigram_survival_bound(p0, m, 150)
    assert np.all(exact["alive"] - bound >= -1e-12)
    # g = 1: (1 - p)^M <= exp(-M p), equality in the Poisson limit (M -> inf, M p fixed)
    p, m = 2e-5, 100_000
    alive_1 = 1 - theory.loss_probability_first_generation([p, 1 - p], m)[0]
    assert alive_1 >= theory.suresh_unigram_survival_bound([p, 1 - p], m, 1)[1, 0]
    assert alive_1 == pytest.approx(theory.suresh_unigram_survival_bound([p, 1 - p], m, 1)[1, 0], rel=1e-4)
