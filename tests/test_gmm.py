"""GMM family: EM parity with scikit-learn, the closed-form L2 distance, the study."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcollapse import ConfigError, simulate
from jaxcollapse.families.base import Family
from jaxcollapse.families.gmm import (
    _em, _em_step_unrolled, _em_step_vectorised, cholesky, gaussian_overlap, gmm, gmm_params, gmm_reference, l2_distance, lower_inverse,
    mixture_log_density, sample,
)
from jaxcollapse.policies import DataPolicy
from jaxcollapse.programs import data_path_program
from jaxcollapse.studies.gmm import GMMStudy, gmm_initial, gmm_study, parse_gmm_initial

sklearn_mixture = pytest.importorskip("sklearn.mixture")


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal([-2, 0], 1, (300, 2)), rng.normal([2, 1], [0.5, 1.5], (200, 2))])


def _as_full(covariances, covariance_type, dim):
    if covariance_type == "full":
        return covariances
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in covariances])
    return np.stack([v * np.eye(dim) for v in covariances])


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_em_matches_scikit_learn_with_frequency_weights(covariance_type):
    """Weights w_i in {0, 1, 2} on the points equal scikit-learn on the points repeated
    w_i times: same weights, means, covariances and final lower bound."""
    data = _blobs()
    frequency = np.random.default_rng(1).integers(0, 3, len(data))
    start = (np.array([0.4, 0.6]), np.array([[-1.0, 0.0], [1.0, 0.5]]), np.stack([np.eye(2), 2 * np.eye(2)]))
    precisions = {"full": np.stack([np.linalg.inv(c) for c in start[2]]), "diag": np.array([[1.0, 1.0], [0.5, 0.5]]),
                  "spherical": np.array([1.0, 0.5])}[covariance_type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 12 iterations without tol: scikit-learn warns of non-convergence
        reference = sklearn_mixture.GaussianMixture(
            2, covariance_type=covariance_type, max_iter=12, tol=0, weights_init=start[0], means_init=start[1],
            precisions_init=precisions, reg_covar=1e-4,
        ).fit(np.repeat(data, frequency, axis=0))
    fitted = _em(jnp.asarray(data, jnp.float32), jnp.asarray(frequency, jnp.float32), gmm_params(*start), 12,
                 covariance_type, 1e-4)
    np.testing.assert_allclose(fitted.weights, reference.weights_, atol=2e-6)
    np.testing.assert_allclose(fitted.means, reference.means_, atol=2e-5)
    np.testing.assert_allclose(fitted.covs, _as_full(reference.covariances_, covariance_type, 2), atol=2e-5)
    np.testing.assert_allclose(float(fitted.loglik), reference.lower_bound_, rtol=2e-6)
    assert abs(float(fitted.loglik_change)) < 1e-2


def test_fit_recovers_separated_blobs_and_reports_convergence():
    family = gmm(2, 2, iterations=30, init="kmeans")
    p0 = parse_gmm_initial("two-blobs").params()
    data = sample(jax.random.key(0), p0, 2000)
    fitted = family.fit(jax.random.key(1), data, jnp.ones(2000))
    order = jnp.argsort(fitted.means[:, 0])
    np.testing.assert_allclose(fitted.means[order], [[-3, 0], [3, 0]], atol=0.1)
    np.testing.assert_allclose(fitted.weights, [0.5, 0.5], atol=0.05)
    np.testing.assert_allclose(fitted.covs[order], np.stack([np.eye(2)] * 2), atol=0.15)
    assert abs(float(fitted.loglik_change)) < 1e-4  # converged: the change is reported, not hidden


def test_small_matrix_algebra_matches_lapack():
    rng = np.random.default_rng(3)
    for dim in (1, 2, 3, 4, 6):
        factors = rng.normal(size=(5, dim, dim))
        spd = factors @ np.swapaxes(factors, -1, -2) + 0.1 * np.eye(dim)
        lower = np.asarray(cholesky(jnp.asarray(spd, jnp.float32)))
        np.testing.assert_allclose(lower, np.linalg.cholesky(spd), rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(np.asarray(lower_inverse(jnp.asarray(lower))) @ lower,
                                   np.broadcast_to(np.eye(dim), spd.shape), atol=5e-4)


def test_l2_distance_matches_numerical_integration_on_a_grid():
    """integral (f - g)^2 in closed form against a 2-D Riemann sum, and the 1-D case."""
    rng = np.random.default_rng(4)
    f = gmm_params([0.3, 0.7], [[-1.0, 0.5], [1.5, -0.5]], [[[1.0, 0.3], [0.3, 0.8]], [[0.5, -0.1], [-0.1, 0.7]]])
    g = gmm_params([0.5, 0.2, 0.3], rng.normal(size=(3, 2)), np.stack([np.eye(2) * s for s in (0.6, 1.2, 0.9)]))
    axis = np.linspace(-7, 7, 281)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    density_f = np.exp(np.asarray(mixture_log_density(f, jnp.asarray(grid, jnp.float32)), np.float64))
    density_g = np.exp(np.asarray(mixture_log_density(g, jnp.asarray(grid, jnp.float32)), np.float64))
    numeric = np.sum((density_f - density_g) ** 2) * (axis[1] - axis[0]) ** 2
    closed = float(l2_distance(f, gmm_reference(g, np.zeros((1, 2)))))
    assert closed == pytest.approx(numeric, rel=1e-4)
    assert float(l2_distance(g, gmm_reference(g, np.zeros((1, 2))))) < 1e-7
    one_d = gmm_params([1.0], [[0.0]], [[[1.0]]])
    shifted = gmm_params([1.0], [[1.0]], [[[1.0]]])
    exact = 2 / np.sqrt(4 * np.pi) * (1 - np.exp(-1 / 4))  # two unit Gaussians one apart
    assert float(gaussian_overlap(one_d, one_d)) == pytest.approx(1 / np.sqrt(4 * np.pi), rel=1e-6)
    assert float(l2_distance(shifted, gmm_reference(one_d, np.zeros((1, 1))))) == pytest.approx(exact, rel=1e-5)


def test_sampler_draws_the_mixture():
    p0 = gmm_params([0.2, 0.8], [[-2.0, 1.0], [1.0, 0.0]], [[[1.0, 0.5], [0.5, 1.0]], [[0.3, 0.0], [0.0, 2.0]]])
    draws = np.asarray(sample(jax.random.key(5), p0, 200_000), np.float64)
    mean = 0.2 * np.array([-2, 1]) + 0.8 * np.array([1, 0])
    second = sum(w * (np.asarray(c) + np.outer(m, m)) for w, m, c in zip(
        [0.2, 0.8], [[-2, 1], [1, 0]], [[[1, 0.5], [0.5, 1]], [[0.3, 0], [0, 2]]]))
    cov = second - np.outer(mean, mean)
    standard_error = np.sqrt(np.diag(cov) / len(draws))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * standard_error)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.03)


@pytest.mark.slow  # on demand: the engine's mix policy runs by default in the Gaussian tests
def test_a_mixing_study_starts_at_p0_and_stays_finite():
    # replace runs in every other study test; mix exercises the resampling buffers (the
    # accumulate pool is the generic data path's, tested with the Gaussian family)
    study = gmm_study(samples=60, generations=3, iterations=4, regime="mix:0.8,0.1,0.1", heldout=50)
    result = simulate(study.program(), num_chains=16, num_generations=3, seed=0)
    for name in result.metric_names:
        assert np.all(np.isfinite(result.summary(name)["mean"])), name
    assert result.summary("l2_distance")["mean"][0] < 1e-9  # p_0 itself, up to float32 rounding
    assert np.all(result.summary("l2_distance")["mean"][1:] > 0)
    weights = result.summary("weight")["mean"]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(weights[:, 0] >= weights[:, 1])  # largest first


def test_collapse_shrinks_the_variance_and_grows_the_l2_distance():
    """M = 20 points per generation: by generation 40 the spread has fallen and the L2
    distance risen (the paper's Figure 7 in miniature). The L2 distance of a chain with a
    near-point component is enormous (integral f^2 ~ 1 / sqrt(det)), so its mean has no
    useful standard error: the test is a sign test over chains instead."""
    study = gmm_study(samples=20, generations=40, iterations=10, heldout=100)
    result = simulate(study.program(), num_chains=64, num_generations=40, seed=1, record="trajectories")
    spread = result.summary("variance")
    assert spread["mean"][0] - spread["mean"][40] > 5 * spread["se"][40]
    distance = result.trajectories["l2_distance"]
    assert np.mean(distance[40] > distance[1]) > 0.85  # chance alone: 0.5 +- 0.06
    loglik = result.trajectories["heldout_loglik"]
    assert np.mean(loglik[40] < loglik[1]) > 0.85


@pytest.mark.slow  # on demand: the other GMM runs cover fitting and sampling by default
def test_blob_p0_pads_with_empty_components_and_a_fresh_start_runs():
    # init "previous" runs in every other study test, "kmeans" in the family's fit
    study = gmm_study(samples=50, generations=2, p0="blob", components=3, iterations=3, init="kmeans++", heldout=20)
    np.testing.assert_allclose(study.initial_params().weights, [1.0, 0.0, 0.0])
    result = simulate(study.program(), num_chains=16, num_generations=2, seed=0)
    assert result.summary("collapsed")["mean"][0] == 2.0  # the padding counts as collapsed
    assert np.all(np.isfinite(result.summary("l2_distance")["mean"]))


def test_json_round_trip():
    study = gmm_study(samples=40, generations=5, components=3, covariance_type="diag", init="kmeans++",
                      p0="two-blobs:4", dim=3, regime="mix:0.5,0.25,0.25")
    assert GMMStudy.from_json(study.to_json()) == study


@pytest.mark.parametrize("kwargs, message", [
    ({"components": 0}, "components must be an integer >= 1"),
    ({"components": 3, "samples": 2}, "more components than"),
    ({"components": 1}, "components must be >= the 2 components of p0"),
    ({"covariance_type": "tied"}, "covariance_type"),
    ({"init": "random"}, "init"),
    ({"iterations": 1}, "must be an integer >= 2"),
    ({"reg_covar": 0.0}, "reg_covar must be > 0"),
    ({"p0": "three-blobs"}, "unknown GMM p0"),
    ({"p0": "two-blobs:x"}, "needs a number"),
])
def test_bad_input_names_the_parameter(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        gmm_study(**{"samples": 50, "generations": 2, **kwargs})


def test_bad_p0_mixture_is_rejected():
    with pytest.raises(ConfigError, match="sum to 1"):
        gmm_initial([0.5, 0.6], [[0.0], [1.0]], [[[1.0]], [[1.0]]])
    with pytest.raises(ConfigError, match="positive definite"):
        gmm_initial([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])


def test_vectorised_em_path_matches_scikit_learn_in_more_dimensions():
    """k d^2 = 75 > 64: the (k, d, n) form of the EM step, not the unrolled one."""
    rng = np.random.default_rng(7)
    centres = rng.normal(scale=4, size=(3, 5))
    data = np.concatenate([rng.normal(c, 1.0, (200, 5)) for c in centres])
    start = (np.full(3, 1 / 3), centres + rng.normal(scale=0.5, size=centres.shape), np.stack([np.eye(5)] * 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = sklearn_mixture.GaussianMixture(
            3, covariance_type="full", max_iter=8, tol=0, weights_init=start[0], means_init=start[1],
            precisions_init=np.stack([np.eye(5)] * 3), reg_covar=1e-4,
        ).fit(data)
    fitted = _em(jnp.asarray(data, jnp.float32), jnp.ones(len(data)), gmm_params(*start), 8, "full", 1e-4)
    np.testing.assert_allclose(fitted.weights, reference.weights_, atol=2e-6)
    np.testing.assert_allclose(fitted.means, reference.means_, atol=5e-5)
    np.testing.assert_allclose(fitted.covs, reference.covariances_, atol=5e-5)
    np.testing.assert_allclose(float(fitted.loglik), reference.lower_bound_, rtol=5e-6)


@pytest.mark.parametrize("components, dim", [(2, 5), (5, 4), (3, 2)])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_unrolled_and_vectorised_em_steps_agree(components, dim, covariance_type):
    """The two forms of the EM step, with masked points; (2, 5) runs the unrolled step with
    LAPACK factors, (5, 4) the vectorised step with written-out ones."""
    rng = np.random.default_rng(components * 10 + dim)
    data = jnp.asarray(rng.normal(scale=2.0, size=(120, dim)), jnp.float32)
    weights = jnp.asarray(rng.integers(0, 2, 120), jnp.float32)
    factors = rng.normal(size=(components, dim, dim))
    params = gmm_params(rng.dirichlet(np.ones(components)), rng.normal(size=(components, dim)),
                        factors @ np.swapaxes(factors, -1, -2) + np.eye(dim))
    unrolled = _em_step_unrolled([data[:, i] for i in range(dim)], weights, params, covariance_type, 1e-4)
    vectorised = _em_step_vectorised(data.T, weights, params, covariance_type, 1e-4)
    for a, b in zip(unrolled, vectorised):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_chains_fit_from_scratch_at_generation_one_and_refit_after():
    """data_path_program calls fit for generation 1 (D_0 is real data) and refit, with the
    previous parameters, from generation 2 on."""
    def fit(key, data, weights):
        return jnp.array([1.0, 0.0])  # (source, generations refitted)

    def refit(key, data, weights, previous):
        return jnp.array([2.0, previous[1] + 1.0])

    family = Family("stub", 1, fit, lambda key, params, n: jnp.zeros((n, 1)), None, refit=refit)
    program = data_path_program(family, DataPolicy(), np.full(4, 3), lambda key, n: jnp.zeros((n, 1)),
                                jnp.zeros(2), metrics=lambda p: {"source": p[0], "refits": p[1]},
                                metric_names=("source", "refits"))
    result = simulate(program, num_chains=16, num_generations=4, seed=0)
    np.testing.assert_array_equal(result.summary("source")["mean"], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(result.summary("refits")["mean"], [0, 0, 1, 2, 3])
