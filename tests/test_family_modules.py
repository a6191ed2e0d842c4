"""The discrete and regression families as :class:`Family` objects (one module per family
under ``jaxcollapse.families``), run on the generic data path, and the old study modules
that re-export the studies from their new homes."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcollapse import ConfigError, simulate
from jaxcollapse.families import Family, discrete, discrete_reference, regression
from jaxcollapse.families.discrete import CATEGORICAL_METRICS, count_fit, histogram
from jaxcollapse.policies import DataPolicy
from jaxcollapse.programs import data_path_program
from jaxcollapse.theory import regression as regression_theory
from conftest import assert_z


def test_the_discrete_family_fits_frequencies():
    family = discrete("categorical", states=4, smoothing=0.5)
    assert isinstance(family, Family) and family.row.shape == (1,)
    data = jnp.array([[0.0], [2.0], [2.0], [3.0], [1.0]])
    weights = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])  # the last slot is padding
    counts = np.array([1.0, 0.0, 2.0, 1.0])
    expected = (counts + 0.5) / (counts.sum() + 4 * 0.5)
    np.testing.assert_allclose(family.fit(jax.random.key(0), data, weights), expected, rtol=1e-6)
    np.testing.assert_allclose(count_fit("categorical", 4, 0.5)(histogram("categorical", 4, data, weights, jnp.float32)),
                               expected, rtol=1e-6)
    poisson = discrete("poisson")
    rate = poisson.fit(jax.random.key(0), jnp.array([[1.0], [4.0], [0.0]]), jnp.ones(3))
    np.testing.assert_allclose(rate, [5.0 / 3.0], rtol=1e-6)
    with pytest.raises(ConfigError, match="K = 2"):
        discrete("bernoulli", states=3)
    with pytest.raises(ConfigError, match="smoothing"):
        discrete("poisson", smoothing=1.0)


def test_the_discrete_family_on_the_data_path_is_a_martingale():
    """Wright-Fisher under replace: E[p_n] = p_0 in every state and generation."""
    p0 = np.array([0.5, 0.3, 0.15, 0.05])
    family = discrete("categorical", states=4)
    reference = discrete_reference(p0, np.arange(4.0), 0.1)

    def metrics(probs):
        return {"p": probs} | family.metrics(probs, reference)

    program = data_path_program(
        family, DataPolicy("replace"), np.full(6, 20), lambda key, n: family.sample(key, jnp.asarray(p0, jnp.float32), n),
        jnp.asarray(p0, jnp.float32), metrics=metrics, metric_names=("p",) + CATEGORICAL_METRICS,
    )
    result = simulate(program, num_chains=4000, seed=7)
    summary = result.summary("p")
    assert_z(summary["mean"][1:], summary["se"][1:], np.broadcast_to(p0, (6, 4)), "E[p_n]")
    np.testing.assert_allclose(summary["mean"][0], p0, rtol=1e-6)
    # heterozygosity decays exactly as (1 - 1/M)^n
    hetero = result.summary("heterozygosity")
    expected = (1.0 - np.sum(p0**2)) * (1.0 - 1.0 / 20) ** np.arange(7)
    assert_z(hetero["mean"][1:], hetero["se"][1:], expected[1:], "E[heterozygosity]")


def test_the_poisson_family_keeps_its_mean_rate():
    family = discrete("poisson")
    rate0 = 2.0
    program = data_path_program(
        family, DataPolicy("replace"), np.full(4, 15), lambda key, n: family.sample(key, jnp.array([rate0]), n),
        jnp.array([rate0]), metrics=lambda rate: family.metrics(rate, rate0), metric_names=("rate", "extinct"),
    )
    summary = simulate(program, num_chains=4000, seed=3).summary("rate")
    assert_z(summary["mean"][1:], summary["se"][1:], rate0, "E[rate_n]")


@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_the_regression_family_matches_the_fixed_design_law(regime):
    """Weighted least squares on (x, y) rows through the generic data path (accumulate
    pools the labelled blocks) has the exact fixed-design moments."""
    samples, dim, noise, generations = 20, 3, 0.7, 3
    design = np.random.default_rng(0).standard_normal((samples, dim))
    family = regression(design, noise)
    w_star = jnp.ones(dim) / np.sqrt(dim)
    program = data_path_program(
        family, DataPolicy(regime), np.full(generations, samples), lambda key, n: family.sample(key, w_star, n),
        w_star, metrics=lambda w: family.metrics(w, w_star), metric_names=("test_error", "weight_norm", "train_error"),
    )
    result = simulate(program, num_chains=4000, seed=11)
    exact = regression_theory.fixed_design_exact(design, noise, generations, regime, np.asarray(w_star))
    for metric in ("test_error", "train_error"):
        summary = result.summary(metric)
        assert_z(summary["mean"][1:], summary["se"][1:], exact[metric][1:], f"E[{metric}] ({regime})")
    with pytest.raises(ConfigError, match="T >= d"):
        regression(design.T)


@pytest.mark.parametrize("old, new", [
    ("jaxcollapse.study", "jaxcollapse.studies.gaussian"),
    ("jaxcollapse.discrete", "jaxcollapse.studies.discrete"),
    ("jaxcollapse.gmm", "jaxcollapse.studies.gmm"),
    ("jaxcollapse.kde", "jaxcollapse.studies.kde"),
    ("jaxcollapse.regression", "jaxcollapse.studies.regression"),
])
def test_the_old_study_modules_re_export_the_new_homes(old, new):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    for name in old_module.__all__:
        assert getattr(old_module, name) is getattr(new_module, name), f"{old}.{name}"
