"""Linear-regression chains: the closed forms against a numpy Monte Carlo of the recursion,
the JAX chains (both designs, both paths, both regimes) against the closed forms, the two
paths against each other, bad input and the JSON round trip."""

import itertools
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxcollapse as jc
from jaxcollapse import ConfigError
from jaxcollapse.families.regression import METRICS, RegressionParams
from jaxcollapse.studies.regression import RegressionStudy, regression_study
from jaxcollapse.theory import regression as theory
from jaxcollapse.theory.gaussian import sample_variance_standard_error
from conftest import assert_z

KS_P = 1e-4  # the project's threshold for two-sample KS tests (tests/test_gaussian_family.py)


# -- the closed forms against numpy ---------------------------------------------------


def numpy_chains(designs, weights_star, noise, generations, regime, rng):
    """The recursion itself, in float64: materialised labels, OLS on the newest block
    (replace) or on every block so far (accumulate). ``designs`` is (chains, T, d)."""
    chains, samples, dim = designs.shape
    gram = np.einsum("cti,ctj->cij", designs, designs)
    weights = np.broadcast_to(weights_star, (chains, dim)).copy()
    moment_sum = np.zeros((chains, dim))
    records = {name: np.zeros((generations + 1, chains)) for name in METRICS}
    records["weight_norm"][0] = weights_star @ weights_star
    for n in range(generations):
        labels = np.einsum("ctd,cd->ct", designs, weights) + noise * rng.standard_normal((chains, samples))
        moment = np.einsum("ctd,ct->cd", designs, labels)
        moment_sum += moment
        target = moment_sum / (n + 1) if regime == "accumulate" else moment
        weights = np.linalg.solve(gram, target[..., None])[..., 0]
        error = weights - weights_star
        records["test_error"][n + 1] = np.sum(error**2, axis=1)
        records["weight_norm"][n + 1] = np.sum(weights**2, axis=1)
        records["train_error"][n + 1] = np.sum(np.einsum("ctd,cd->ct", designs, error) ** 2, axis=1) / samples
    return records


def compare_moments(records, exact, chains, what, variances=("test_error", "train_error")):
    """Means with the exact standard error; variances with the exact standard error of a
    sample variance (from the exact fourth central moment)."""
    for name in METRICS:
        values = records[name][1:]
        assert_z(values.mean(1), np.sqrt(exact[f"{name}_var"][1:] / chains), exact[name][1:], f"{what}: E[{name}]")
    for name in variances:
        values = records[name][1:]
        error = sample_variance_standard_error(exact[f"{name}_var"][1:], exact[f"{name}_central4"][1:], chains)
        assert_z(values.var(1, ddof=1), error, exact[f"{name}_var"][1:], f"{what}: Var[{name}]")
        fourth = (values - values.mean(1, keepdims=True)) ** 4
        assert_z(fourth.mean(1), fourth.std(1) / np.sqrt(chains), exact[f"{name}_central4"][1:],
                 f"{what}: fourth central moment of {name}")
    # weight_norm's variance: no fourth moment derived, so the sample's own standard error
    values = records["weight_norm"][1:]
    centred = values - values.mean(1, keepdims=True)
    m2, m4 = (centred**2).mean(1), (centred**4).mean(1)
    error = np.sqrt((m4 - m2**2 * (chains - 3) / (chains - 1)) / chains)
    assert_z(values.var(1, ddof=1), error, exact["weight_norm_var"][1:], f"{what}: Var[weight_norm]")


def test_regime_factor():
    np.testing.assert_allclose(theory.regime_factor(4, "replace"), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(theory.regime_factor(3, "accumulate"), [0, 1, 1.25, 1.25 + 1 / 9])
    assert theory.regime_factor(10_000, "accumulate")[-1] < np.pi**2 / 6
    with pytest.raises(ValueError, match="replace, accumulate"):
        theory.regime_factor(3, "mix")


def test_accumulate_is_the_stacked_least_squares_fit(rng):
    """The running-mean recursion equals least squares on all blocks stacked."""
    design = rng.standard_normal((9, 3))
    weights = truth = np.array([0.5, -1.0, 2.0])
    blocks = []
    for n in range(5):
        blocks.append(design @ weights + 0.7 * rng.standard_normal(9))
        stacked = np.linalg.lstsq(np.vstack([design] * len(blocks)), np.concatenate(blocks), rcond=None)[0]
        weights = np.linalg.solve(design.T @ design, design.T @ np.mean(blocks, axis=0))
        np.testing.assert_allclose(weights, stacked, rtol=1e-10, atol=1e-12)
    assert not np.allclose(weights, truth)


@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_fixed_design_theory_against_numpy_recursion(regime, rng):
    chains, generations, noise = 40_000, 6, 0.8
    design = rng.standard_normal((12, 4)) * np.array([1.0, 0.5, 2.0, 1.0])
    weights_star = np.array([1.0, -0.5, 0.25, 2.0])
    records = numpy_chains(np.broadcast_to(design, (chains,) + design.shape), weights_star, noise, generations,
                           regime, rng)
    exact = theory.fixed_design_exact(design, noise, generations, regime, weights_star)
    compare_moments(records, exact, chains, f"fixed design, {regime}")
    # the exact value is far from the published random-design one for this design
    published = theory.published_test_error(12, 4, noise, generations, regime)
    assert abs(exact["test_error"][1] / published[1] - 1) > 0.2


@pytest.mark.parametrize("regime", ["replace", "accumulate"])
def test_random_design_theory_against_numpy_recursion(regime, rng):
    """Per-chain Gaussian designs: moments, and the exact law s chi^2_d / chi^2_{T-d+1}."""
    chains, generations, samples, dim, noise = 40_000, 4, 24, 3, 1.3
    designs = rng.standard_normal((chains, samples, dim))
    weights_star = np.array([0.3, 1.0, -0.7])
    records = numpy_chains(designs, weights_star, noise, generations, regime, rng)
    exact = theory.random_design_exact(samples, dim, noise, generations, regime, weights_star)
    compare_moments(records, exact, chains, f"random design, {regime}")
    scale = theory.regime_factor(generations, regime) * noise**2
    law = stats.f(dim, samples - dim + 1)
    for g in (1, generations):
        scaled = records["test_error"][g] / scale[g] * (samples - dim + 1) / dim
        assert stats.kstest(scaled, law.cdf).pvalue > KS_P, f"generation {g}: test_error is not s d/(T-d+1) F"
    np.testing.assert_allclose(exact["test_error"], theory.published_test_error(samples, dim, noise, generations, regime))


def test_inverse_wishart_moments(rng):
    """The second moments behind the random-design variance, against numpy Wisharts."""
    draws, samples, dim = 100_000, 20, 4
    designs = rng.standard_normal((draws, samples, dim))
    inverse = np.linalg.inv(np.einsum("cti,ctj->cij", designs, designs))
    trace = np.trace(inverse, axis1=1, axis2=2)
    trace_square = np.einsum("cij,cji->c", inverse, inverse)
    a = samples - dim
    assert_z(trace.mean(), trace.std() / np.sqrt(draws), dim / (a - 1), "E tr W^-1")
    expected_square = dim * (samples - 1) / (a * (a - 1) * (a - 3))
    assert_z(trace_square.mean(), trace_square.std() / np.sqrt(draws), expected_square, "E tr W^-2")
    centred = trace - trace.mean()
    m2, m4 = (centred**2).mean(), (centred**4).mean()
    expected_var = 2 * dim * (samples - 1) / (a * (a - 1) ** 2 * (a - 3))
    assert_z(trace.var(ddof=1), np.sqrt((m4 - m2**2) / draws), expected_var, "Var tr W^-1")


def _weighted_chi_square_raw_moment(weights, order):
    """E[(sum_i w_i Z_i^2)^r] exactly: the multinomial expansion with E Z^{2k} = (2k - 1)!!."""
    total = 0.0
    for powers in itertools.product(range(order + 1), repeat=len(weights)):
        if sum(powers) != order:
            continue
        term = math.factorial(order)
        for weight, power in zip(weights, powers):
            term *= weight**power * math.prod(range(1, 2 * power, 2)) / math.factorial(power)
        total += term
    return total


def test_fourth_central_moments_against_independent_closed_forms(rng):
    """The fourth central moments (they set the standard errors of sample variances):
    fixed design from the exact multinomial expansion, random design and train_error from
    scipy's F and chi-square kurtosis. Monte Carlo could not pin them down to 10 %."""
    design = rng.standard_normal((9, 4))
    weights = 1.0 / np.linalg.eigvalsh(design.T @ design)
    exact = theory.fixed_design_exact(design, 1.0, 1, "replace")
    raw = [1.0] + [_weighted_chi_square_raw_moment(weights, r) for r in (1, 2, 3, 4)]
    central4 = raw[4] - 4 * raw[3] * raw[1] + 6 * raw[2] * raw[1] ** 2 - 3 * raw[1] ** 4
    np.testing.assert_allclose(exact["test_error_central4"][1], central4, rtol=1e-10)
    np.testing.assert_allclose(exact["test_error_var"][1], raw[2] - raw[1] ** 2, rtol=1e-10)
    for samples, dim in ((24, 3), (40, 10), (1000, 50)):
        exact = theory.random_design_exact(samples, dim, 1.0, 1, "replace")
        degrees = samples - dim + 1
        _, variance, _, kurtosis = stats.f(dim, degrees).stats(moments="mvsk")
        unit = dim / degrees  # test_error = (d / k) F(d, k) at s = 1
        np.testing.assert_allclose(exact["test_error_var"][1], unit**2 * variance, rtol=1e-10)
        np.testing.assert_allclose(exact["test_error_central4"][1], unit**4 * (kurtosis + 3) * variance**2, rtol=1e-9)
        _, variance, _, kurtosis = stats.chi2(dim).stats(moments="mvsk")
        np.testing.assert_allclose(exact["train_error_central4"][1], (kurtosis + 3) * variance**2 / samples**4,
                                   rtol=1e-10)


def test_random_design_moments_need_enough_samples():
    exact = theory.random_design_exact(7, 4, 1.0, 2, "replace")  # T = d + 3: the mean only
    assert np.all(np.isfinite(exact["test_error"])) and np.isinf(exact["test_error_var"][1])
    assert exact["test_error_var"][0] == 0.0
    with pytest.raises(ValueError, match="T > dim \\+ 1"):
        theory.random_design_exact(5, 4, 1.0, 2, "replace")


# -- the JAX chains against the closed forms -----------------------------------------

CHAINS, GENERATIONS, SAMPLES, DIM, NOISE = 4000, 8, 30, 5, 0.9
CONFIGS = [(design, regime) for design in ("per-chain", "shared") for regime in ("replace", "accumulate")]
SEEDS = {"data": 1, "sufficient": 2}  # different seeds: the paths' samples must be independent


@pytest.fixture(scope="module")
def runs():
    """Every design x regime x path, run once for the whole module (trajectories)."""
    results = {}
    for design, regime in CONFIGS:
        for path, seed in SEEDS.items():
            study = regression_study(SAMPLES, DIM, GENERATIONS, noise=NOISE, regime=regime, design=design, path=path)
            result = jc.simulate(study.program(), num_chains=CHAINS, num_generations=GENERATIONS, seed=seed,
                                 record="trajectories")
            results[design, regime, path] = study, result
    return results


@pytest.mark.parametrize("path", ["data", "sufficient"])
@pytest.mark.parametrize("design, regime", CONFIGS)
def test_simulation_against_exact_theory(runs, design, regime, path):
    """Every exact curve: means with the exact standard error, variances with the exact
    standard error of a sample variance."""
    study, result = runs[design, regime, path]
    exact_curves = [curve for curve in study.theory_curves() if curve.kind == "exact"]
    assert {curve.column for curve in exact_curves} >= {"test_error_exact", "weight_norm_exact", "train_error_exact",
                                                          "test_error_var_exact", "train_error_var_exact"}
    for curve in exact_curves:
        statistic, metric = curve.quantity[:-1].split("[")
        summary = result.summary(metric)
        if statistic == "E":
            assert curve.variance is not None, curve.quantity
            error = np.sqrt(curve.variance / CHAINS)
            assert_z(summary["mean"][1:], error[1:], curve.values[1:], f"{design} {regime} {path}: {curve.quantity}")
            assert summary["mean"][0] == pytest.approx(curve.values[0], rel=1e-6, abs=0.0)  # generation 0 is w*
        else:
            error = sample_variance_standard_error(curve.values, curve.central4, CHAINS)
            assert_z(summary["var"][1:], error[1:], curve.values[1:], f"{design} {regime} {path}: {curve.quantity}")


@pytest.mark.parametrize("design, regime", CONFIGS)
def test_data_and_sufficient_paths_agree_in_distribution(runs, design, regime):
    """Two-sample KS tests of every metric at three generations; train_error against its
    exact law (s / T) chi^2_d, and for per-chain designs test_error against s d/(T-d+1) F."""
    data, sufficient = (runs[design, regime, path][1] for path in ("data", "sufficient"))
    scale = theory.regime_factor(GENERATIONS, regime) * NOISE**2
    for g in (1, 4, GENERATIONS):
        for name in METRICS:
            pvalue = stats.ks_2samp(data.trajectories[name][g], sufficient.trajectories[name][g]).pvalue
            assert pvalue > KS_P, f"{design} {regime}, generation {g}: {name} differs between paths (p = {pvalue:.2g})"
        for result in (data, sufficient):
            train = result.trajectories["train_error"][g] * SAMPLES / scale[g]
            assert stats.kstest(train, stats.chi2(DIM).cdf).pvalue > KS_P, f"{design} {regime} g={g}: train_error law"
            if design == "per-chain":
                ratio = result.trajectories["test_error"][g] / scale[g] * (SAMPLES - DIM + 1) / DIM
                law = stats.f(DIM, SAMPLES - DIM + 1)
                assert stats.kstest(ratio, law.cdf).pvalue > KS_P, f"{design} {regime} g={g}: test_error law"
    # the comparison has power: a 10 % larger noise (21 % larger test error) is told apart
    rescaled = 1.21 * sufficient.trajectories["test_error"][GENERATIONS]
    assert stats.ks_2samp(data.trajectories["test_error"][GENERATIONS], rescaled).pvalue < KS_P


@pytest.mark.parametrize("path", ["data", "sufficient"])
def test_per_chain_design_is_drawn_once_and_cached(runs, path):
    study, result = runs["per-chain", "replace", path]
    factors = np.asarray(result.params.gram_cholesky)  # (G + 1, chains, d, d)
    assert np.all(factors[0] == 0)  # generation 0: not drawn yet
    assert np.all(factors[1:] == factors[1])  # never refactorised
    assert np.all(np.triu(factors[1], 1) == 0) and np.all(np.diagonal(factors[1], axis1=1, axis2=2) > 0)
    assert len({factor.tobytes() for factor in factors[1]}) == CHAINS  # each chain its own design
    # the diagonal of L L^T = X^T X holds chi^2_T column norms
    norms = np.einsum("cij,cij->ci", factors[1], factors[1])
    assert_z(norms.mean(0), np.sqrt(2 * SAMPLES / CHAINS), SAMPLES, "diag X^T X")
    np.testing.assert_array_equal(result.params.weights[0], np.broadcast_to(study.weights_star, (CHAINS, DIM)).astype(np.float32))
    shared = runs["shared", "replace", path][1]
    assert shared.params.gram_cholesky is None


def test_accumulate_stays_bounded_while_replace_grows_linearly():
    chains, generations, samples, dim = 2000, 40, SAMPLES, DIM
    limit = theory.accumulate_limit(samples, dim, 1.0)
    per_generation = dim / (samples - dim - 1)
    means = {}
    for regime in ("replace", "accumulate"):
        study = regression_study(samples, dim, generations, regime=regime)
        result = jc.simulate(study.program(), num_chains=chains, num_generations=generations, seed=3)
        means[regime] = summary = result.summary("test_error")
        exact = study.theory_curves()[0]
        assert_z(summary["mean"][1:], np.sqrt(exact.variance[1:] / chains), exact.values[1:], f"{regime} E[test_error]")
    n = np.arange(generations + 1)
    accumulate = means["accumulate"]
    assert np.all(theory.random_design_exact(samples, dim, 1.0, generations, "accumulate")["test_error"] < limit)
    assert np.all((accumulate["mean"][1:] - limit) / accumulate["se"][1:] <= 5.0)  # never above the bound
    assert accumulate["mean"][generations] - accumulate["mean"][generations // 2] < 0.05 * limit  # it has levelled off
    replace = means["replace"]
    assert_z(replace["mean"][1:] / n[1:], replace["se"][1:] / n[1:], per_generation, "replace: E[test_error] / n")
    assert replace["mean"][generations] > 20 * limit


# -- the study ------------------------------------------------------------------------


def test_theory_curves_shapes_and_columns():
    study = regression_study(40, 4, 6, design="shared", design_seed=5)
    curves = study.theory_curves()
    columns = {curve.column for curve in curves}
    assert columns == {"test_error_exact", "weight_norm_exact", "train_error_exact", "test_error_var_exact",
                       "train_error_var_exact", "test_error_published"}
    for curve in curves:
        assert curve.values.shape == (7,) and curve.values.dtype == np.float64
        assert curve.kind in ("exact", "expansion")
        if curve.column != "weight_norm_exact":
            assert curve.values[0] == 0.0
    by_column = {curve.column: curve for curve in curves}
    assert by_column["weight_norm_exact"].values[0] == pytest.approx(1.0)
    published = by_column["test_error_published"]
    assert published.kind == "expansion" and published.formula == "published (random design)"
    design = study.design_array()
    ratio = np.trace(np.linalg.inv(design.T @ design)) / (4 / (40 - 4 - 1))
    np.testing.assert_allclose(by_column["test_error_exact"].values[1:] / published.values[1:], ratio, rtol=1e-10)
    # per-chain: the exact value is the published formula; accumulate adds the pi^2/6 bound
    per_chain = regression_study(40, 4, 6, regime="accumulate").theory_curves()
    assert [c.column for c in per_chain if c.kind == "upper bound"] == ["test_error_limit"]
    assert "test_error_published" not in {c.column for c in per_chain}
    # no generations: generation 0 only; few samples: the means without their variances
    assert all(curve.values.shape == (1,) for curve in regression_study(40, 4, 0).theory_curves())
    few = regression_study(8, 5, 3).theory_curves()  # T = d + 3: the variance is infinite
    assert {c.column for c in few} == {"test_error_exact", "weight_norm_exact", "train_error_exact",
                                       "train_error_var_exact"}
    assert [c.variance is None for c in few[:3]] == [True, True, False]


def test_json_round_trip_and_describe(rng):
    design = rng.standard_normal((15, 3))
    studies = [
        regression_study(),
        regression_study(15, 3, 7, noise=0.5, regime="accumulate", design=design, true_weights=[1.0, 2.0, -3.0],
                         path="data"),
        regression_study(20, 2, 3, regime=jc.DataPolicy("accumulate"), design="shared", design_seed=11),
    ]
    for study in studies:
        blob = json.loads(json.dumps(study.to_json()))
        again = RegressionStudy.from_json(blob)
        assert again == study and hash(again) == hash(study)
        assert again.program().metric_names == METRICS == study.summary_metrics()
        lines = study.describe()
        assert all(isinstance(line, str) and "\n" not in line for line in lines)
    assert RegressionStudy.command == "regression"
    numpy_numbers = RegressionStudy(generations=np.int64(3), samples=np.int64(20), dim=np.int32(2), noise=np.float32(2),
                                    policy="accumulate", design_seed=np.int64(4))
    assert json.loads(json.dumps(numpy_numbers.to_json()))["samples"] == 20
    assert numpy_numbers == regression_study(20, 2, 3, noise=2.0, regime="accumulate", design_seed=4)
    np.testing.assert_array_equal(studies[1].design_array(), design)
    assert studies[1].sizes.tolist() == [15] * 7 and studies[1].resolved_path == "data"
    assert studies[0].resolved_path == "sufficient"
    text = " ".join(studies[1].describe())
    for fact in ("T = 15", "d = 3", "sigma = 0.5", "given by the user", "accumulate", "data"):
        assert fact in text
    assert "per-chain" in " ".join(studies[0].describe())


def test_user_design_gives_its_fixed_design_theory(rng):
    design = rng.standard_normal((25, 4))
    study = regression_study(25, 4, 3, design=design, true_weights=[1, 0, 0, 0])
    exact = theory.fixed_design_exact(design, 1.0, 3, "replace", [1, 0, 0, 0])
    np.testing.assert_allclose(study.theory_curves()[0].values, exact["test_error"])
    assert isinstance(study.program().initial_params, RegressionParams)


def _ill_conditioned(rng, scale):
    design = rng.standard_normal((20, 3))
    design[:, 2] = design[:, 0] + scale * rng.standard_normal(20)  # nearly column 0
    return design


BAD_INPUTS = [
    (dict(dim=0), "dim d must be an integer >= 1"),
    (dict(samples=4, dim=5, design="shared"), "samples T must be >= dim d = 5"),
    (dict(samples=6, dim=5), "T > dim \\+ 1 = 6"),
    (dict(samples=6, dim=5, design="shared"), None),  # a fixed design needs only T >= d
    (dict(noise=0.0), "noise sigma must be > 0"),
    (dict(noise=-1.0), "noise sigma must be > 0"),
    (dict(noise=float("nan")), "noise sigma must be finite"),
    (dict(noise=float("inf")), "noise sigma must be finite"),
    (dict(generations=-1), "generations must be an integer >= 0"),
    (dict(regime="mix:0.5,0.25,0.25"), "'replace', 'accumulate'"),
    (dict(regime="fresh-real:0.1"), "'replace', 'accumulate'"),
    (dict(regime="nonsense"), "'replace', 'accumulate'"),
    (dict(regime=jc.DataPolicy("accumulate-subsample")), "'replace', 'accumulate'"),
    (dict(design="everywhere"), "design 'everywhere'; choose one of 'per-chain', 'shared'"),
    (dict(path="counts"), "path 'counts'"),
    (dict(design_seed=-3), "design_seed must be an integer >= 0"),
    (dict(true_weights=[1.0, 2.0]), "true_weights must be a vector of d = 10 numbers; got shape \\(2,\\)"),
    (dict(true_weights=np.ones((10, 1))), "true_weights must be a vector of d = 10"),
    (dict(true_weights=[np.nan] + [1.0] * 9), "true_weights must be finite"),
    (dict(design=np.ones((100, 9))), "design must have shape \\(samples T, dim d\\) = \\(100, 10\\)"),
    (dict(design=np.ones(100)), "design must be a \\(samples T, dim d\\) matrix"),
    (dict(design=np.full((100, 10), np.inf)), "design must be finite"),
    (dict(samples=20, dim=3, design=np.ones((20, 3))), "singular or ill-conditioned.*rank 1 of d = 3"),
]


@pytest.mark.parametrize("kwargs, message", BAD_INPUTS)
def test_bad_input_raises_config_error(kwargs, message):
    if message is None:
        regression_study(**kwargs)
        return
    with pytest.raises(ConfigError, match=message):
        regression_study(**kwargs)


def test_ill_conditioned_designs(rng):
    with pytest.raises(ConfigError, match="cond\\(X\\^T X\\) = .* > 1e\\+10 in float64"):
        regression_study(20, 3, design=_ill_conditioned(rng, 1e-7))
    with pytest.raises(ConfigError, match="pass design='shared'"):
        RegressionStudy(generations=2, samples=20, dim=3, design_matrix=np.ones((20, 3)))
    # cond ~ 1e8: a fine fit in float64, but not in float32, where the program refuses it
    study = regression_study(20, 3, design=_ill_conditioned(rng, 1e-4))
    assert 1e6 < study.design_condition < 1e10
    if jnp.result_type(float) == jnp.float32:
        with pytest.raises(ConfigError, match="float32.*jax_enable_x64"):
            study.program()
