"""Exact finite-M theory of discrete recursion chains (paper section 4.1 and appendix A.1).

Notation: a chain over K states starts from the probability vector p_0 (generation 0);
D_n is M_n draws from p_n and p_{n+1} = counts(D_n) / M_n (the "replace" regime, fitted
by empirical frequencies, no smoothing). ``sizes`` = (M_0, ..., M_{G-1}); functions that
return per-generation values return arrays over g = 0..G. The state of generation g >= 1
is the count vector of D_{g-1}, a composition of M_{g-1} into K parts; states that p_0
gives zero probability never come back, so every solver works on the support of p_0.

A chain is absorbed at generation g when p_g is a delta, and the absorption time is
T = min{g >= 0 : p_g is a delta}; so T = 0 when p_0 is a delta, and otherwise
T = 1 + (steps from the generation-1 state), the D_0 draw counting as one generation.

Bernoulli chain: K = 2 and p = P(state 1). Poisson chain: generation 0 is Poisson(lambda_0),
D_n is M_n draws from Poisson(lambda_n) and lambda_{n+1} = mean(D_n); S_n = sum(D_n) is a
Galton-Watson process whose step n has Poisson offspring with mean M_n / M_{n-1}, so it is
critical for constant M. lambda_g = 0 is absorbing ("collapse").

Examples:
    >>> import numpy as np
    >>> exact = categorical_chain_exact([0.2, 0.3, 0.5], np.full(3, 4))
    >>> bool(np.allclose(exact["heterozygosity"], heterozygosity_exact(np.full(3, 4), [0.2, 0.3, 0.5])))
    True
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
from scipy import linalg, stats
from scipy.special import gammaln

__all__ = [
    "heterozygosity_exact", "loss_probability_first_generation", "expected_support_first_generation",
    "categorical_chain_exact", "absorption_time_exact", "bernoulli_absorption_exact", "bernoulli_chain_exact",
    "kimura_mean_absorption_time", "poisson_extinction_exact", "suresh_unigram_survival_bound",
]

_MAX_STATES = 20_000           # compositions for categorical_chain_exact (forward propagation only)
_MAX_STATES_ABSORPTION = 5_000  # absorption_time_exact solves a dense system over the transient states
_CACHE_ENTRIES = 20_000_000     # transition matrices up to 160 MB are built once and reused


def _probability_vector(p0) -> np.ndarray:
    p0 = np.asarray(p0, dtype=float)
    if p0.ndim != 1 or p0.size == 0:
        raise ValueError(f"p0 must be a non-empty 1-D probability vector, got shape {p0.shape}")
    if np.any(~np.isfinite(p0)) or np.any(p0 < 0) or abs(p0.sum() - 1.0) > 1e-9:
        raise ValueError(f"p0 must be non-negative and sum to 1, got sum {p0.sum()!r}")
    return p0


def _sizes(sizes) -> np.ndarray:
    raw = np.atleast_1d(np.asarray(sizes))
    if raw.ndim != 1:
        raise ValueError(f"sizes must be 1-D, got shape {raw.shape}")
    if raw.size and (np.any(raw != np.round(raw)) or np.any(raw < 1)):
        raise ValueError("sizes must be positive integers")
    return raw.astype(np.int64)


def _sample_size(m) -> int:
    if m != int(m) or int(m) < 1:
        raise ValueError(f"the sample size must be a positive integer, got {m!r}")
    return int(m)


def _check_state_count(m: int, k: int, max_states: int) -> int:
    count = math.comb(m + k - 1, k - 1)
    if count > max_states:
        raise ValueError(
            f"{count} count vectors (compositions of M = {m} into K = {k} parts) exceed the limit "
            f"max_states = {max_states}; use fewer states, a smaller M, or raise max_states"
        )
    return count


@functools.lru_cache(maxsize=16)
def _compositions(m: int, k: int) -> np.ndarray:
    """All count vectors of m draws over k states, shape (C(m+k-1, k-1), k), by stars and bars."""
    if k == 1:
        return np.array([[m]], dtype=np.int64)
    bars = np.array(list(itertools.combinations(range(m + k - 1), k - 1)), dtype=np.int64).reshape(-1, k - 1)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), m + k - 1)], axis=1)
    states = np.diff(edges, axis=1) - 1
    states.flags.writeable = False
    return states


def _multinomial_matrix(probs: np.ndarray, targets: np.ndarray, m: int) -> np.ndarray:
    """P[a, b] = P(Multinomial(m, probs[a]) = targets[b]) from log-factorials, vectorised.

    0 log 0 = 0: a zero probability contributes nothing to the log-pmf unless the target has
    draws there, in which case the entry is exactly 0.
    """
    positive = probs > 0
    with np.errstate(divide="ignore"):
        log_probs = np.where(positive, np.log(np.where(positive, probs, 1.0)), 0.0)
    log_coefficient = gammaln(m + 1.0) - gammaln(targets + 1.0).sum(axis=1)
    log_pmf = log_probs @ targets.T.astype(float) + log_coefficient
    impossible = (~positive).astype(float) @ (targets > 0).T.astype(float) > 0
    pmf = np.exp(log_pmf)
    pmf[impossible] = 0.0
    return pmf


def _propagate(dist, states_prev, m_prev, states, m, cache):
    """One generation forward: dist over compositions of m_prev -> dist over compositions of m."""
    key = (m_prev, m, states.shape[1])
    if key in cache:
        return dist @ cache[key]
    probs = states_prev / m_prev
    if len(states_prev) * len(states) <= _CACHE_ENTRIES:
        cache[key] = _multinomial_matrix(probs, states, m)
        return dist @ cache[key]
    # too large to keep: blocks of source states, skipping those the chain cannot be in
    out = np.zeros(len(states))
    rows = max(1, _CACHE_ENTRIES // (4 * len(states)))
    live = np.flatnonzero(dist > 0)
    for start in range(0, len(live), rows):
        block = live[start:start + rows]
        out += dist[block] @ _multinomial_matrix(probs[block], states, m)
    return out


def heterozygosity_exact(sizes, p0) -> np.ndarray:
    """E[1 - sum_i p_g[i]^2] for g = 0..G: (1 - sum p0^2) prod_{i<g} (1 - 1/M_i).

    Given p_n, E[p_{n+1}[i]^2] = p_n[i]^2 + p_n[i] (1 - p_n[i]) / M_n, so the expected
    heterozygosity shrinks by exactly (1 - 1/M_n) per generation (Wright-Fisher drift).

    Examples:
        >>> [round(float(h), 6) for h in heterozygosity_exact([2, 4], [0.5, 0.5])]
        [0.5, 0.25, 0.1875]
    """
    sizes, p0 = _sizes(sizes), _probability_vector(p0)
    factors = np.concatenate([[1.0], np.cumprod(1.0 - 1.0 / sizes)])
    return (1.0 - np.sum(p0**2)) * factors


def loss_probability_first_generation(p0, m0) -> np.ndarray:
    """P(p_1[i] = 0) = (1 - p0[i])^{M_0} for every state i, shape (K,).

    Computed as exp(M_0 log1p(-p0)) so that small p0[i] keeps full relative precision.

    Examples:
        >>> [round(float(x), 6) for x in loss_probability_first_generation([0.1, 0.9], 10)]
        [0.348678, 0.0]
    """
    p0, m0 = _probability_vector(p0), _sample_size(m0)
    with np.errstate(divide="ignore"):
        return np.exp(m0 * np.log1p(-p0))


def expected_support_first_generation(p0, m0) -> float:
    """E[#states alive at generation 1] = sum_{p0_i > 0} (1 - (1 - p0_i)^{M_0}).

    Examples:
        >>> round(expected_support_first_generation([0.1, 0.9, 0.0], 10), 6)
        1.651322
    """
    p0, m0 = _probability_vector(p0), _sample_size(m0)
    alive = p0 > 0
    # -expm1 keeps precision when (1 - p)^M is close to 1 (rare states)
    return float(np.sum(-np.expm1(m0 * np.log1p(-p0[alive]))))


def categorical_chain_exact(p0, sizes, max_states: int = _MAX_STATES) -> dict:
    """Exact per-generation law of a categorical chain by forward propagation over count vectors.

    Generation 0 is p0 itself; generation g >= 1 has a distribution over the compositions of
    M_{g-1} into K' parts (K' = number of states with p0 > 0), obtained from generation g - 1
    by multinomial(M_{g-1}, c / M_{g-2}) transitions (rectangular when M changes).

    Returns a dict of arrays over g = 0..G: "absorbed" P(p_g is a delta), "absorbed_in"
    (G+1, K) P(p_g = delta at i), "alive" (G+1, K) P(p_g[i] > 0), "support"
    E[#{i : p_g[i] > 0}] (the row sums of "alive"), "heterozygosity"
    E[1 - sum p_g^2], "mean_p" (G+1, K) E[p_g] (equal to p0: the chain is a martingale).

    Raises ValueError when some M_n has more than ``max_states`` compositions. Memory is
    bounded (large transition matrices are built in blocks), time grows as states^2 * K per
    generation: K = 3, M = 40 (861 states) over 200 generations takes a fraction of a second.

    Examples:
        >>> exact = categorical_chain_exact([0.5, 0.5], [1, 1])
        >>> exact["absorbed"].tolist()
        [0.0, 1.0, 1.0]
    """
    p0, sizes = _probability_vector(p0), _sizes(sizes)
    support = np.flatnonzero(p0 > 0)
    k, n_gen = len(support), len(sizes)
    for m in np.unique(sizes):
        _check_state_count(int(m), k, max_states)

    out = {
        "absorbed": np.zeros(n_gen + 1),
        "absorbed_in": np.zeros((n_gen + 1, len(p0))),
        "alive": np.zeros((n_gen + 1, len(p0))),
        "support": np.zeros(n_gen + 1),
        "heterozygosity": np.zeros(n_gen + 1),
        "mean_p": np.zeros((n_gen + 1, len(p0))),
    }
    out["absorbed_in"][0] = p0 == 1.0
    out["absorbed"][0] = float(k == 1)
    out["alive"][0] = p0 > 0
    out["support"][0] = k
    out["heterozygosity"][0] = 1.0 - np.sum(p0**2)
    out["mean_p"][0] = p0

    cache: dict = {}
    dist = states_prev = m_prev = None
    for g in range(1, n_gen + 1):
        m = int(sizes[g - 1])
        states = _compositions(m, k)
        if g == 1:
            dist = _multinomial_matrix(p0[support][None, :], states, m)[0]
        else:
            dist = _propagate(dist, states_prev, m_prev, states, m, cache)
        freq = states / m
        absorbed_in = dist @ (states == m)
        out["absorbed_in"][g, support] = absorbed_in
        out["absorbed"][g] = absorbed_in.sum()
        out["alive"][g, support] = dist @ (states > 0)
        out["support"][g] = out["alive"][g].sum()
        out["heterozygosity"][g] = dist @ (1.0 - np.sum(freq**2, axis=1))
        out["mean_p"][g, support] = dist @ freq
        states_prev, m_prev = states, m
    return out


def _absorbing_solve(transition: np.ndarray, absorbing: np.ndarray):
    """Fundamental-matrix solution (paper appendix A.1) for a row-stochastic matrix.

    With transient block Q and transient-to-absorbing block R (rows = from; the paper writes
    the transpose), N = (I - Q)^-1, t = N 1 (expected steps), N t gives E[steps^2] through
    (2N - I) t, and B = N R (absorption probabilities). One LU factorisation serves all three
    solves; N itself is never formed.
    """
    transient = ~absorbing
    q = transition[np.ix_(transient, transient)]
    r = transition[np.ix_(transient, absorbing)]
    lu = linalg.lu_factor(np.eye(len(q)) - q)
    t = linalg.lu_solve(lu, np.ones(len(q)))
    second_moment = 2.0 * linalg.lu_solve(lu, t) - t  # E[steps^2] = ((2N - I) t); Var = that - t*t
    b = linalg.lu_solve(lu, r)
    return t, second_moment, b


def _time_summary(first, absorbing, t, second_moment, b):
    """Moments of T = 1 + steps(X_1), X_1 ~ ``first``; steps = 0 from an absorbing state."""
    transient = ~absorbing
    e_steps = first[transient] @ t
    e_steps2 = first[transient] @ second_moment
    absorbed_in = first[transient] @ b + first[absorbing]
    return 1.0 + e_steps, e_steps2 - e_steps**2, absorbed_in


def _pmf_forward(first, transition, absorbing, g_max):
    """P(T = g), g = 0..g_max, for a chain that is not absorbed at generation 0."""
    absorbed = np.zeros(g_max + 1)
    dist = first
    for g in range(1, g_max + 1):
        if g > 1:
            dist = dist @ transition
        absorbed[g] = dist[absorbing].sum()
    return np.diff(absorbed, prepend=0.0)


def _trivial_time(p0, g_max):
    out = {"mean": 0.0, "var": 0.0, "absorbed_in": p0.copy()}
    if g_max is not None:
        out["pmf"] = np.zeros(g_max + 1)
        out["pmf"][0] = 1.0
    return out


def absorption_time_exact(p0, m, g_max: int | None = None, max_states: int = _MAX_STATES_ABSORPTION) -> dict:
    """Law of the absorption time T for a constant sample size M, from the fundamental matrix.

    T = 0 if p0 is a delta; otherwise T = 1 + (steps to absorption from the generation-1
    state, whose counts are Multinomial(M, p0)), and T = 1 when that state is already a delta.

    Returns "mean" E[T], "var" Var[T], "absorbed_in" (K,) P(the chain ends as a delta at i)
    (equal to p0: p_g is a bounded martingale), and the internals over the transient count
    vectors: "transient_states" (r, K), "absorbing_states" (s, K), "expected_steps" t = N 1,
    "absorption_probabilities" B = N R (r, s). With ``g_max``, also "pmf" = P(T = g) for
    g = 0..g_max by forward propagation. At most ``max_states`` count vectors (a dense
    solve over them): K = 2, M = 500 takes a few hundredths of a second.

    Examples:
        >>> exact = absorption_time_exact([0.5, 0.5], 2)
        >>> round(exact["mean"], 12), round(exact["var"], 12)  # absorbed at each step w.p. 1/2
        (2.0, 2.0)
    """
    p0, m = _probability_vector(p0), _sample_size(m)
    support = np.flatnonzero(p0 > 0)
    k = len(support)
    if k == 1:
        return _trivial_time(p0, g_max)
    _check_state_count(m, k, max_states)
    states = _compositions(m, k)
    transition = _multinomial_matrix(states / m, states, m)
    absorbing = (states == m).any(axis=1)
    t, second_moment, b = _absorbing_solve(transition, absorbing)
    first = _multinomial_matrix(p0[support][None, :], states, m)[0]
    mean, var, absorbed_support = _time_summary(first, absorbing, t, second_moment, b)

    def full(x):  # support columns back to all K states
        y = np.zeros(x.shape[:-1] + (len(p0),), dtype=x.dtype)
        y[..., support] = x
        return y

    absorbing_order = np.argmax(states[absorbing], axis=1)  # the support state each delta sits on
    absorbed_in = np.zeros(k)
    absorbed_in[absorbing_order] = absorbed_support
    b_ordered = np.zeros_like(b)
    b_ordered[:, absorbing_order] = b
    out = {
        "mean": float(mean), "var": float(var), "absorbed_in": full(absorbed_in),
        "transient_states": full(states[~absorbing]), "absorbing_states": full(states[absorbing][np.argsort(absorbing_order)]),
        "expected_steps": t, "absorption_probabilities": b_ordered,
    }
    if g_max is not None:
        out["pmf"] = _pmf_forward(first, transition, absorbing, g_max)
    return out


@functools.lru_cache(maxsize=8)
def _binomial_matrix(m_prev: int, m: int) -> np.ndarray:
    """P[i, j] = P(Binomial(m, i / m_prev) = j), shape (m_prev + 1, m + 1)."""
    probs = np.arange(m_prev + 1) / m_prev
    matrix = stats.binom.pmf(np.arange(m + 1)[None, :], m, probs[:, None])
    matrix.flags.writeable = False
    return matrix


def bernoulli_absorption_exact(p0: float, m, g_max: int | None = None) -> dict:
    """``absorption_time_exact`` for K = 2 (p0 = P(state 1)) over counts 0..M; fast to M ~ 1000.

    Returns "mean", "var", "absorbed_in" = (P(ends at p = 0), P(ends at p = 1)), the same
    order as ``absorption_time_exact([1 - p0, p0], m)``, "expected_steps" (M+1,) t(j) from
    count j (0 at j = 0, M), and with ``g_max`` the "pmf" P(T = g), g = 0..g_max.

    Examples:
        >>> exact = bernoulli_absorption_exact(0.5, 2)
        >>> round(exact["mean"], 12), exact["absorbed_in"].round(12).tolist()
        (2.0, [0.5, 0.5])
    """
    p0, m = float(p0), _sample_size(m)
    if not 0.0 <= p0 <= 1.0:
        raise ValueError(f"p0 must lie in [0, 1], got {p0!r}")
    if p0 in (0.0, 1.0):
        return _trivial_time(np.array([1.0 - p0, p0]), g_max)
    transition = _binomial_matrix(m, m)
    absorbing = np.zeros(m + 1, dtype=bool)
    absorbing[[0, m]] = True
    t, second_moment, b = _absorbing_solve(transition, absorbing)
    first = stats.binom.pmf(np.arange(m + 1), m, p0)
    mean, var, absorbed_in = _time_summary(first, absorbing, t, second_moment, b)
    out = {"mean": float(mean), "var": float(var), "absorbed_in": absorbed_in,
           "expected_steps": np.concatenate([[0.0], t, [0.0]])}
    if g_max is not None:
        out["pmf"] = _pmf_forward(first, transition, absorbing, g_max)
    return out


def bernoulli_chain_exact(p0: float, sizes) -> dict:
    """Exact per-generation absorption of a Bernoulli chain (K = 2, p = P(state 1)), any schedule.

    Forward propagation over the counts 0..M_{g-1} with binomial transitions. Returns arrays
    over g = 0..G: "absorbed_zero" P(p_g = 0), "absorbed_one" P(p_g = 1), "survival"
    P(p_g > 0) (state 1 not yet lost), "mean_p" E[p_g] (= p0). Each distinct (M_{n-1}, M_n)
    pair builds one dense matrix, so M up to a few thousand.

    Examples:
        >>> exact = bernoulli_chain_exact(0.5, [2, 2])
        >>> exact["absorbed_zero"].round(12).tolist(), exact["survival"].round(12).tolist()
        ([0.0, 0.25, 0.375], [1.0, 0.75, 0.625])
    """
    p0, sizes = float(p0), _sizes(sizes)
    if not 0.0 <= p0 <= 1.0:
        raise ValueError(f"p0 must lie in [0, 1], got {p0!r}")
    n_gen = len(sizes)
    out = {key: np.zeros(n_gen + 1) for key in ("absorbed_zero", "absorbed_one", "survival", "mean_p")}
    out["absorbed_zero"][0], out["absorbed_one"][0] = float(p0 == 0.0), float(p0 == 1.0)
    out["survival"][0], out["mean_p"][0] = float(p0 > 0.0), p0
    dist = None
    for g in range(1, n_gen + 1):
        m = int(sizes[g - 1])
        if g == 1:
            dist = stats.binom.pmf(np.arange(m + 1), m, p0)
        else:
            dist = dist @ _binomial_matrix(int(sizes[g - 2]), m)
        out["absorbed_zero"][g], out["absorbed_one"][g] = dist[0], dist[m]
        out["survival"][g] = dist[1:].sum()
        out["mean_p"][g] = dist @ (np.arange(m + 1) / m)
    return out


def kimura_mean_absorption_time(p0, m) -> float:
    """Diffusion approximation of E[T], the mean number of generations until one state remains.

    t(p) = -2 M sum_i (1 - p_i) ln(1 - p_i); for K = 2 this is Kimura's
    -2 M [p ln p + (1 - p) ln(1 - p)] (Kimura & Ohta 1969, written for 2N = M haploid
    copies), and for K states the multi-allele result (Littler 1975; Baxter, Blythe & McKane
    2007). Check: with generator L = (1/2M) sum x_i (delta_ij - x_j) d_i d_j and
    g(y) = (1 - y) ln(1 - y), g'' = 1/(1 - y), so L sum_i g(x_i) = (1/2M) sum_i x_i = 1/(2M)
    and L t = -1, with t = 0 wherever a single state remains.

    Wright-Fisher time starts from the population p0 and counts every resampling, so it is
    compared directly with our E[T] (whose first generation is the D_0 draw). It overestimates:
    for p0 = (0.3, 0.7) the exact E[T] is 59.375, 242.174, 1219.021 at M = 50, 200, 1000 and
    the relative error is +2.88%, +0.90%, +0.22%. The absolute error, 1.71, 2.17, 2.71
    generations, still grows slowly (about 0.33 per unit of ln M over this range), so the
    relative error falls a little slower than 1/M.

    A scalar p0 is read as the Bernoulli p = P(state 1).

    Examples:
        >>> round(kimura_mean_absorption_time(0.5, 100), 4)  # 2 M ln 2
        138.6294
    """
    p0 = _probability_vector([1.0 - float(p0), float(p0)] if np.ndim(p0) == 0 else p0)
    m = _sample_size(m)
    # (1 - p) ln(1 - p) through log1p for accuracy at small p; the p = 1 term is 0 ln 0 = 0
    terms = (1.0 - p0) * np.log1p(-np.where(p0 < 1.0, p0, 0.0))
    return float(-2.0 * m * np.sum(terms))


def poisson_extinction_exact(lambda0: float, sizes) -> np.ndarray:
    """P(lambda_g = 0) for g = 0..G in the Poisson chain, exactly, by composing generating functions.

    S_0 ~ Poisson(M_0 lambda0) and S_n | S_{n-1} = s ~ Poisson(s r_n), r_n = M_n / M_{n-1},
    so the pgf of S_n is F_0(h_1(...h_n(z))) with F_0(z) = exp(M_0 lambda0 (z - 1)) and
    h_j(z) = exp(r_j (z - 1)); lambda_g = S_{g-1} / M_{g-1}, hence
    P(lambda_g = 0) = F_0(h_1(...h_{g-1}(0))). The composition is carried on w = 1 - z with
    w <- -expm1(-r w), which keeps small survival probabilities w accurate.

    Examples:
        >>> [round(float(x), 6) for x in poisson_extinction_exact(1.0, [1, 1])]  # exp(-1), exp(exp(-1) - 1)
        [0.0, 0.367879, 0.531464]
    """
    sizes = _sizes(sizes)
    lambda0 = float(lambda0)
    if not (np.isfinite(lambda0) and lambda0 >= 0.0):
        raise ValueError(f"lambda0 must be finite and non-negative, got {lambda0!r}")
    n_gen = len(sizes)
    out = np.ones(n_gen + 1)
    if lambda0 == 0.0:
        return out
    out[0] = 0.0
    ratios = sizes[1:] / sizes[:-1]  # r_j for j = 1..G-1
    # w[g - 1] = 1 - h_1(...h_{g-1}(0)) for g = 1..G; apply h_j from the inside out, j descending
    w = np.ones(n_gen)
    for j in range(n_gen - 1, 0, -1):
        w[j:] = -np.expm1(-ratios[j - 1] * w[j:])
    out[1:] = np.exp(-sizes[0] * lambda0 * w)
    return out


def suresh_unigram_survival_bound(p0, m, n_generations: int) -> np.ndarray:
    """Lower bound 1 - exp(-lambda_i / k) on P(p_g[i] > 0) quoted for Suresh et al. (2025).

    Source: Suresh, Thangaraj & Khandavally, "Rate of Model Collapse in Recursive Training"
    (AISTATS 2025, arXiv 2412.17646), as summarised (not verified verbatim against the paper's
    theorem) by sciencestack.ai/paper/2412.17646: "for discrete unigram models, the survival
    probability of a symbol satisfies Pr(Theta_{k,i} != 0) >= 1 - exp(-lambda_i / k)".
    Their Theta_k is the model fitted at iteration k to n samples of Theta_{k-1}; lambda_i is
    read as the number of occurrences of symbol i among the n samples that define the start,
    lambda_i = M p0[i], and iteration k as our generation g = k (constant M = n). The other
    reading, p0 the true distribution, Theta_1 = p_1 and lambda_i = n p0[i] its expected count,
    gives the same array. (Reading Theta_0 as our p_1, i.e. k = g - 1, cannot be meant: it
    would claim P(p_1[i] > 0) >= 1, false for every M.) The bound is trivial (= 1) at g = 0.
    Against the exact chains (``bernoulli_chain_exact``, ``categorical_chain_exact``) it holds
    in every case we computed; it is attained at g = 1 in the Poisson limit (M -> inf,
    M p0[i] fixed), where P(p_1[i] > 0) = 1 - (1 - p0[i])^M -> 1 - exp(-lambda_i).

    Returns the bound, shape (G+1, K) over g = 0..G; states with p0[i] = 0 get 0.

    Examples:
        >>> [round(float(x), 4) for x in suresh_unigram_survival_bound([0.5, 0.5], 4, 2)[:, 1]]
        [1.0, 0.8647, 0.6321]
    """
    p0, m = _probability_vector(p0), _sample_size(m)
    lam = m * p0
    g = np.arange(n_generations + 1, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 only where p0[i] = 0, masked below
        bound = -np.expm1(-lam[None, :] / g[:, None])  # g = 0 gives -expm1(-inf) = 1
    return np.where(p0[None, :] > 0, bound, 0.0)
