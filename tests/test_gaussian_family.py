"""Fit, sample, sufficient statistics and metrics of the Gaussian family."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, linalg, stats

import jaxcollapse as jc
from jaxcollapse.families.gaussian import GaussianParams, GaussianStats, gaussian_reference


@pytest.mark.parametrize("estimator, ddof", [("unbiased", 1), ("mle", 0)])
@pytest.mark.parametrize("dim", [1, 3])
def test_fit_matches_numpy_and_masks(estimator, ddof, dim, rng):
    family = jc.gaussian(dim, estimator)
    data = rng.normal(size=(50, dim))
    weights = np.r_[np.ones(37), np.zeros(13)]
    fitted = family.fit(jax.random.key(0), jnp.asarray(data), jnp.asarray(weights))
    np.testing.assert_allclose(fitted.mean, data[:37].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.cov, np.atleast_2d(np.cov(data[:37].T, ddof=ddof)), rtol=1e-5, atol=1e-6)


def test_stats_merge_equals_fit_of_pooled_data(rng):
    family = jc.gaussian(2, "unbiased")
    a, b = rng.normal(size=(20, 2)), rng.normal(size=(7, 2)) + 3

    def stats_of(x):
        return GaussianStats(jnp.float32(len(x)), jnp.asarray(x.mean(0)), jnp.asarray((x - x.mean(0)).T @ (x - x.mean(0))))

    pooled = family.sufficient.fit(family.sufficient.merge(stats_of(a), stats_of(b)))
    direct = family.fit(None, jnp.asarray(np.vstack([a, b])), jnp.ones(27))
    np.testing.assert_allclose(pooled.cov, direct.cov, rtol=1e-5)
    np.testing.assert_allclose(pooled.mean, direct.mean, rtol=1e-5)
    empty = GaussianStats(jnp.float32(0), jnp.zeros(2), jnp.zeros((2, 2)))
    merged = family.sufficient.merge(empty, stats_of(a))
    np.testing.assert_allclose(merged.mean, a.mean(0), rtol=1e-5)


def test_one_dimensional_metrics_against_direct_formulas():
    family = jc.gaussian(1)
    reference = gaussian_reference([0.5], [[4.0]])
    params = GaussianParams(jnp.array([1.2]), jnp.array([[2.25]]))
    metrics = {k: float(v) for k, v in family.metrics(params, reference).items()}
    assert metrics["w2_risk"] == pytest.approx(0.7**2 + (1.5 - 2.0) ** 2, rel=1e-6)
    assert metrics["var_x"] == pytest.approx(0.49 + 2.25, rel=1e-6)
    p, q = stats.norm(0.5, 2.0), stats.norm(1.2, 1.5)
    kl = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -30, 30)[0]
    assert metrics["kl"] == pytest.approx(kl, rel=1e-5)
    low, high = p.ppf(0.01), p.ppf(0.99)
    assert metrics["tail_mass"] == pytest.approx(q.cdf(low) + q.sf(high), rel=1e-5)
    # at p0 itself: risk 0, tail mass 2 %
    at_p0 = family.metrics(GaussianParams(reference.mean, reference.cov), reference)
    assert float(at_p0["w2_risk"]) == 0.0 and float(at_p0["tail_mass"]) == pytest.approx(0.02, rel=1e-5)


def test_multivariate_w2_and_kl_against_scipy(rng):
    family = jc.gaussian(3)
    a = rng.normal(size=(3, 3))
    b = rng.normal(size=(3, 3))
    cov0, cov1 = a @ a.T + np.eye(3), b @ b.T + 0.5 * np.eye(3)
    mean0, mean1 = rng.normal(size=3), rng.normal(size=3)
    metrics = family.metrics(
        GaussianParams(jnp.asarray(mean1, jnp.float32), jnp.asarray(cov1, jnp.float32)),
        gaussian_reference(mean0, cov0),
    )
    root = linalg.sqrtm(cov0)
    bures = np.trace(cov0 + cov1 - 2 * linalg.sqrtm(root @ cov1 @ root)).real
    assert float(metrics["w2_risk"]) == pytest.approx(np.sum((mean0 - mean1) ** 2) + bures, rel=1e-4)
    inverse = np.linalg.inv(cov1)
    kl = 0.5 * (np.trace(inverse @ cov0) + (mean1 - mean0) @ inverse @ (mean1 - mean0) - 3
                + np.log(np.linalg.det(cov1) / np.linalg.det(cov0)))
    assert float(metrics["kl"]) == pytest.approx(kl, rel=1e-4)
    assert float(metrics["cov_logdet"]) == pytest.approx(np.log(np.linalg.det(cov1)), rel=1e-4)


@pytest.mark.parametrize("regime, dim", [
    ("replace", 1), ("accumulate", 1), ("fresh-real:0.3", 1), pytest.param("replace", 2, marks=pytest.mark.slow),
    # every 1-D policy runs by default; the 2-D ones with -m slow (2-D replace: test_multivariate_replace_matches_exact_theory_and_bound)
    pytest.param("accumulate", 2, marks=pytest.mark.slow), pytest.param("fresh-real:0.3", 2, marks=pytest.mark.slow),
])
def test_data_and_sufficient_paths_agree_in_distribution(regime, dim):
    """Two-sample Kolmogorov-Smirnov tests on every generation's parameters."""
    chains, generations = 3000, 4
    results = {}
    for path, seed in (("data", 1), ("sufficient", 2)):
        study = jc.gaussian_study(samples=12, generations=generations, regime=regime, dim=dim, path=path)
        results[path] = jc.simulate(study.program(), num_chains=chains, num_generations=generations, seed=seed,
                                    record="trajectories")
    for g in (1, 2, generations):
        for name, pick in (("mean", lambda p: p.mean[g, :, 0]), ("variance", lambda p: p.cov[g, :, 0, 0]),
                           ("last variance", lambda p: p.cov[g, :, -1, -1])):
            a, b = pick(results["data"].params), pick(results["sufficient"].params)
            pvalue = stats.ks_2samp(a, b).pvalue
            assert pvalue > 1e-4, f"{regime}, d={dim}, generation {g}: {name} differs (KS p = {pvalue:.2g})"


def test_paths_differ_when_they_should():
    """The KS comparison above has power: an MLE chain is told apart from an unbiased one."""
    a = jc.simulate(jc.gaussian_study(samples=12, generations=4, path="data").program(),
                    num_chains=3000, num_generations=4, seed=1, record="trajectories")
    b = jc.simulate(jc.gaussian_study(samples=12, generations=4, estimator="mle", path="sufficient").program(),
                    num_chains=3000, num_generations=4, seed=2, record="trajectories")
    assert stats.ks_2samp(a.params.cov[4, :, 0, 0], b.params.cov[4, :, 0, 0]).pvalue < 1e-4
