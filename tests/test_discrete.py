"""Discrete chains: exact count samplers, both paths, every formula against Monte Carlo,
bad input and the CLI end to end."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32
from scipy import stats

import jaxcollapse as jc
from jaxcollapse import ConfigError
import jaxcollapse._counts as counts_module
from jaxcollapse._counts import binomial, multinomial
from jaxcollapse._random import threefry_elementwise, uniforms_from_words
from jaxcollapse.check import absorption_time_rows, theory_table, verdicts
from jaxcollapse.cli import main
from jaxcollapse.studies.discrete import discrete_study, parse_discrete_initial, state_index
from conftest import assert_z


def test_elementwise_threefry_matches_jax():
    key = jnp.array([2024, 7], jnp.uint32)
    counts = jnp.arange(64, dtype=jnp.uint32)
    first, second = threefry_elementwise(key[0], key[1], counts[:32], counts[32:])
    np.testing.assert_array_equal(np.concatenate([first, second]), np.asarray(threefry_2x32(key, counts)))


def _pmf_check(sample, pmf, what):
    """Every value's frequency in ``sample`` against ``pmf`` (values 0 .. len(pmf) - 1, those
    of probability above 1e-4 and below 1); returns the frequencies."""
    frequencies = np.bincount(sample.astype(int), minlength=len(pmf))[: len(pmf)] / len(sample)
    keep = (pmf > 1e-4) & (pmf < 1)
    if keep.any():
        assert_z(frequencies[keep], np.sqrt(pmf[keep] * (1 - pmf[keep]) / len(sample)), pmf[keep], what)
    assert np.sum(sample >= len(pmf)) <= 5 + 10 * len(sample) * (1 - pmf.sum()), f"{what}: too many large values"
    return frequencies


@pytest.mark.parametrize("n, p", [(30, 0.3), (60, 0.3), (99, 0.49), (12, 0.97), (110, 0.5), (2000, 0.4), (500, 0.0),
                                  (7, 1.0)])
def test_binomial_pmf(n, p):
    """Every value's frequency against the binomial pmf (inversion and BTRS regimes; n q =
    48.5 is inversion from a first pmf of 2**-99 or so, n q = 55 is BTRS)."""
    draws = 200_000
    sample = np.asarray(jax.jit(jax.vmap(lambda k: binomial(k, n, p)))(jax.random.split(jax.random.key(n), draws)))
    assert np.all(sample == np.round(sample)) and sample.min() >= 0 and sample.max() <= n
    pmf = stats.binom.pmf(np.arange(n + 1), n, p)
    frequencies = _pmf_check(sample, pmf, f"Binomial({n}, {p}) pmf")
    assert np.all(frequencies[pmf == 1] == 1)
    assert np.all(frequencies[pmf == 0] == 0)


def test_multinomial_counts():
    weights = jnp.array([0.1, 0.0, 0.25, 0.05, 0.6])
    draws = jax.jit(jax.vmap(lambda k: multinomial(k, 40.0, weights)))(jax.random.split(jax.random.key(3), 50_000))
    draws = np.asarray(draws)
    assert np.all(draws.sum(1) == 40) and np.all(draws[:, 1] == 0)
    p = np.asarray(weights)
    assert_z(draws.mean(0)[p > 0], np.sqrt(40 * p * (1 - p) / 50_000)[p > 0], 40 * p[p > 0], "multinomial means")
    # unnormalised weights and large counts (BTRS at the top of the tree)
    big = np.asarray(jax.jit(jax.vmap(lambda k: multinomial(k, 1e6, 3.0 * weights)))(jax.random.split(jax.random.key(4), 4000)))
    assert np.all(big.sum(1) == 1e6)
    assert_z(big.mean(0)[p > 0], np.sqrt(1e6 * p * (1 - p) / 4000)[p > 0], 1e6 * p[p > 0], "large multinomial")


def _open_uniforms(seed, size):
    return uniforms_from_words(jax.random.bits(jax.random.key(seed), (size,)), jnp.float32)


def test_poisson_inversion_pmf():
    """Means whose search ends in the first fused trip (0.3), in blocks finished apart
    (1 % of the elements at 30 among means of 1), in whole-batch trips (all at 49), and
    from the mode (means >= 50: 0.1 % at 700.5 in blocks, or all at 50)."""
    inversion = jax.jit(counts_module._poisson_inversion)
    size = 200_000
    for mean in (0.3, 49.0):
        sample = np.asarray(inversion(_open_uniforms(1, size), jnp.full(size, mean)))
        _pmf_check(sample, stats.poisson.pmf(np.arange(120), mean), f"Poisson({mean})")
    means = np.where(np.arange(size) % 100 == 7, 30.0, 1.0)
    means[np.arange(size) % 1000 == 501] = 700.5  # from the mode, in blocks
    sample = np.asarray(inversion(_open_uniforms(2, size), jnp.asarray(means, jnp.float32)))
    _pmf_check(sample[means == 1.0], stats.poisson.pmf(np.arange(40), 1.0), "Poisson(1) beside Poisson(30)")
    _pmf_check(sample[means == 30.0], stats.poisson.pmf(np.arange(90), 30.0), "Poisson(30) in blocks")
    _pmf_check(sample[means == 700.5], stats.poisson.pmf(np.arange(1000), 700.5), "Poisson(700.5) in blocks")
    sample = np.asarray(inversion(_open_uniforms(3, size), jnp.full(size, 50.0)))  # all from the mode
    _pmf_check(sample, stats.poisson.pmf(np.arange(150), 50.0), "Poisson(50)")


def test_inversion_above_the_float32_cdf_stops_in_the_tail():
    """u above the float32 sum of the pmf (the largest uniform, 1 - 2**-24) gets the
    far tail, not the step where the pmf underflows (k ~ 40-48 for a mean of 1)."""
    largest = jnp.full(3, 1.0 - 2.0**-24, jnp.float32)
    means = jnp.array([1.0, 5.0, 20.0], jnp.float32)
    tail = np.asarray(counts_module._poisson_inversion(largest, means))
    quantiles = stats.poisson.isf(1e-7, np.asarray(means))
    assert np.all(tail >= quantiles - 2) and np.all(tail <= quantiles + 16), (tail, quantiles)
    n, q = jnp.full(1, 1e4, jnp.float32), jnp.full(1, 1e-4, jnp.float32)
    tail = float(counts_module._binomial_inversion(largest[:1], n, q)[0])
    assert stats.binom.isf(1e-7, 1e4, 1e-4) - 2 <= tail <= stats.binom.isf(1e-7, 1e4, 1e-4) + 16


def _split_weights(states):
    weights = 1.0 / (np.arange(states) + 20.0)
    weights[::7] = 0.0
    weights[1] = 0.1 * weights.sum()
    return weights / weights.sum()


def _split_draws(monkeypatch, p, samples, chains, seed):
    """M = ``samples`` draws over K = len(p) states, the Poisson split forced on."""
    monkeypatch.setattr(counts_module, "SPLIT_COST_RATIO", 0.0)
    assert counts_module._uses_split(samples, len(p))
    draw = jax.jit(jax.vmap(lambda key, p: multinomial(key, float(samples), p, samples), (0, None)))
    counts = np.asarray(draw(jax.random.split(jax.random.key(seed), chains), jnp.asarray(p, jnp.float32)))
    assert np.all(counts.sum(1) == samples) and np.all(counts[:, p == 0] == 0)
    return counts


@pytest.mark.parametrize("slack", [None, pytest.param(0.25, marks=pytest.mark.slow)])
def test_poisson_split_multinomial_is_exact(monkeypatch, slack):
    """M draws over K = M states by the Poisson split: every count of the state with
    lambda p ~ 29 (finished in blocks past the first trip) against the binomial pmf, the
    means and the covariance of two states. With the slack cut to 0.25 sd, most rows
    overshoot or overflow the top-up buffer and are drawn point by point: still exact,
    because whether a row is kept depends on its Poisson total alone."""
    states = samples = 400
    if slack is not None:
        monkeypatch.setattr(counts_module, "_SPLIT_SLACK", slack)
    p = _split_weights(states)
    rate = samples - counts_module._SPLIT_SLACK * np.sqrt(samples)
    assert 16 < rate * p.max() < counts_module.INVERSION_MEAN
    chains = 20_000
    counts = _split_draws(monkeypatch, p, samples, chains, 11 if slack is None else 12)
    first = int(np.argmax(p))
    _pmf_check(counts[:, first], stats.binom.pmf(np.arange(120), samples, p[first]), "count of the largest state")
    live = p > 0
    assert_z(counts.mean(0)[live], np.sqrt(samples * p * (1 - p) / chains)[live], samples * p[live], "split means")
    a, b = first, first + 3
    product = (counts[:, a] - samples * p[a]) * (counts[:, b] - samples * p[b])
    assert_z(product.mean(), product.std() / np.sqrt(chains), -samples * p[a] * p[b], "covariance of two states")


def test_poisson_split_with_a_large_state(monkeypatch):
    """One state with lambda p ~ 160 (its Poisson drawn from the mode) among small ones."""
    states = samples = 400
    p = np.full(states, 0.5 / (states - 1))
    p[3] = 0.5
    counts = _split_draws(monkeypatch, p, samples, 20_000, 13)
    _pmf_check(counts[:, 3], stats.binom.pmf(np.arange(samples + 1), samples, 0.5), "large state's count")
    _pmf_check(counts[:, 0], stats.binom.pmf(np.arange(20), samples, p[0]), "count of a small state")


def test_a_rows_split_draws_do_not_depend_on_its_batch(monkeypatch):
    """A row gives the same counts beside a row with large means that finish in blocks or
    whole-batch trips as alone."""
    monkeypatch.setattr(counts_module, "SPLIT_COST_RATIO", 0.0)
    states = samples = 400
    crowded = np.zeros(states)
    crowded[:20] = 1.0 / 20
    weights = jnp.asarray(np.stack([_split_weights(states), crowded]), jnp.float32)
    keys = jax.random.split(jax.random.key(15), 2)
    draw = jax.jit(jax.vmap(lambda key, p: multinomial(key, float(samples), p, samples)))
    together, alone = np.asarray(draw(keys, weights)), np.asarray(draw(keys[:1], weights[:1]))
    np.testing.assert_array_equal(together[0], alone[0])
    assert together[1].sum() == samples and np.all(together[1, 20:] == 0)


def test_large_and_small_batches_give_each_element_the_same_value():
    """Batches above SMALL_BATCH finish their stragglers in blocks, smaller ones in
    whole-batch loops: the same values, element by element (binomials by inversion and
    BTRS, Poisson searches from 0 and from the mode)."""
    size = 2 * counts_module.SMALL_BATCH + 48
    rng = np.random.default_rng(16)
    n = jnp.asarray(rng.choice([30.0, 500.0, 5000.0], size), jnp.float32)
    p = jnp.asarray(rng.uniform(0.01, 0.99, size), jnp.float32)
    source = (jnp.full(size, 7, jnp.uint32), jnp.full(size, 9, jnp.uint32), jnp.arange(size, dtype=jnp.uint32))
    binomial_core = jax.jit(counts_module._binomial_core)
    large = np.asarray(binomial_core(source, n, p))
    small = np.asarray(binomial_core(tuple(x[:1000] for x in source), n[:1000], p[:1000]))
    np.testing.assert_array_equal(large[:1000], small)
    means = jnp.asarray(rng.choice([0.5, 3.0, 25.0, 400.0], size, p=[0.5, 0.4, 0.09, 0.01]), jnp.float32)
    uniforms = _open_uniforms(17, size)
    poisson = jax.jit(counts_module._poisson_inversion)
    np.testing.assert_array_equal(np.asarray(poisson(uniforms, means))[:1000], np.asarray(poisson(uniforms[:1000], means[:1000])))


def test_cumulative_weights_are_flat_across_dead_states():
    """A state of weight 0 gets an empty interval of the inverse CDF, so it is never drawn
    (a plain XLA cumsum moves by an ulp at ~1 % of the zeros of a K = 10^4 vector)."""
    weights = np.random.default_rng(5).random((4, 10_000)).astype(np.float32)
    weights[:, ::7] = 0.0
    cdf = np.asarray(jax.jit(counts_module.cumulative_weights)(jnp.asarray(weights)))
    steps = np.diff(cdf, axis=-1)
    assert np.all(steps[weights[:, 1:] == 0] == 0) and np.all(steps >= 0)
    np.testing.assert_allclose(cdf[:, -1], weights.sum(-1), rtol=1e-5)


def test_batched_multinomial_rows_are_independent():
    """Rows of one call with a batch of weights draw from their own words."""
    draw = jax.jit(jax.vmap(lambda key, p: multinomial(key, 40.0, p, 40), (0, None)))
    counts = np.asarray(draw(jax.random.split(jax.random.key(14), 20_000), jnp.full((2, 50), 1.0 / 50)))
    assert np.all(counts.sum(-1) == 40)
    correlation = np.corrcoef(counts[:, 0, :5].ravel(), counts[:, 1, :5].ravel())[0, 1]
    assert_z(correlation, 1.0 / np.sqrt(counts[:, 0, :5].size), 0.0, "correlation between rows")


def _run(study, chains=4000, seed=0, metrics=None):
    return jc.simulate(study.program(), num_chains=chains, num_generations=study.generations, seed=seed,
                       metrics=metrics or study.summary_metrics(), final_metrics=study.final_metrics())


def test_replace_chain_against_exact_theory():
    """Heterozygosity (1 - 1/M)^n, E[p_n] = p0, loss at generation 1, the exact Markov
    chain's support, absorption and per-state absorption, and the Suresh bound."""
    study = discrete_study(samples=8, generations=25, states=3, init="probs:0.2,0.3,0.5")
    result = _run(study)
    found = {(v.quantity, v.formula): v for v in verdicts(theory_table(study, result))}
    for needed in [("E[heterozygosity]", "exact (1 - 1/M)^n"), ("E[state_p]", "exact (martingale)"),
                   ("E[state_alive]", "1 - (1 - p0)^M"), ("E[absorbed]", "exact Markov chain"),
                   ("E[state_absorbed]", "exact Markov chain"), ("E[support]", "exact Markov chain")]:
        assert found[needed].agrees and found[needed].compared > 0, found[needed]
    assert all(v.agrees for v in found.values()), [v for v in found.values() if not v.agrees]


@pytest.mark.parametrize("regime", ["accumulate-subsample", pytest.param("mix:0.6,0.2,0.2", marks=pytest.mark.slow)])
def test_counts_path_matches_data_path(regime):
    """Same law on both paths: the regime whose counts path resamples a pool (two
    multinomials a generation), and the mix (one weighted multinomial; with -m slow)."""
    means = {}
    for path in ("counts", "data"):
        study = discrete_study(samples=12, generations=6, states=4, init="probs:0.1,0.2,0.3,0.4",
                               regime=regime, path=path)
        result = _run(study, chains=6000, seed=1 if path == "data" else 2,
                      metrics=("heterozygosity", "support", "tv"))
        means[path] = [result.summary(name) for name in ("heterozygosity", "support", "tv")]
    for counts, data in zip(means["counts"], means["data"]):
        assert_z(counts["mean"][1:] - data["mean"][1:], np.hypot(counts["se"][1:], data["se"][1:]), 0.0,
                 f"{regime}: counts path against data path")


def test_real_data_prevents_absorption():
    """Fresh real data keeps every state alive (a delta is a passing event, not an absorbing
    state); pure replacement absorbs."""
    kept = _run(discrete_study(samples=20, generations=40, states=3, init="uniform", regime="fresh-real:0.2"),
                metrics=("absorbed", "support"))
    lost = _run(discrete_study(samples=20, generations=40, states=3, init="uniform"), metrics=("absorbed",))
    assert kept.summary("absorbed")["mean"][-1] < 0.01 and kept.summary("support")["mean"][-1] > 2.8
    assert lost.summary("absorbed")["mean"][-1] > 0.6


def test_absorption_time_against_fundamental_matrix():
    study = discrete_study(samples=6, generations=120, family="bernoulli", init="bernoulli:0.3")
    result = _run(study, chains=3000)
    times = result.final["absorption_generation"]
    assert np.all(times >= 1)  # every chain absorbed; T >= 1 because p0 is not a delta
    rows = absorption_time_rows(study, times)
    exact = [row for row in rows if row.formula == "fundamental matrix"][0]
    assert abs(exact.z) <= 5, exact
    states = result.final["absorbed_state"]
    assert set(np.unique(states)) <= {0.0, 1.0}
    assert_z(np.mean(states == 1), np.sqrt(0.3 * 0.7 / times.size), 0.3, "P(absorbed in state 1) = p0[1]")


def test_poisson_extinction_exact():
    study = discrete_study(samples=20, generations=30, family="poisson", init="poisson:0.15")
    found = {(v.quantity, v.formula): v for v in verdicts(theory_table(study, _run(study)))}
    assert found[("E[extinct]", "exact (Galton-Watson)")].agrees
    assert found[("E[rate]", "exact (martingale)")].agrees


def test_metrics_of_a_known_histogram():
    study = discrete_study(samples=4, generations=1, probs=[0.5, 0.25, 0.25], tail_threshold=0.3)
    program = study.program()
    values = program.metrics(program.initial_params._replace(probs=jnp.array([0.75, 0.25, 0.0])))
    assert float(values["support"]) == 2 and float(values["lost_mass"]) == 0.25
    assert float(values["tail_lost"]) == 0.25  # state 2 (p0 = 0.25 < 0.3) is gone
    assert float(values["heterozygosity"]) == pytest.approx(1 - 0.75**2 - 0.25**2)
    assert float(values["tv"]) == pytest.approx(0.25)
    assert float(values["w1"]) == pytest.approx(0.25 + 0.25)  # |CDF difference| at states 0 and 1
    assert float(values["kl"]) == pytest.approx(0.75 * np.log(1.5))


@pytest.mark.parametrize("kwargs, message", [
    (dict(probs=[0.5, -0.1, 0.6]), "non-negative"),
    (dict(probs=[0.5, float("nan"), 0.5]), "finite"),
    (dict(probs=[0.3, 0.3]), "sum to 1"),
    (dict(probs=[]), "K >= 1"),
    (dict(states=0), "states K"),
    (dict(samples=0), "samples M"),
    (dict(smoothing=-1.0), "smoothing"),
    (dict(init="zipf:-1"), "Zipf exponent"),
    (dict(regime="real-fraction:0.1", path="counts"), "needs path='data'"),
    (dict(family="poisson", init="poisson:-2"), "rate"),
    (dict(family="bernoulli", init="bernoulli:1.5"), "Bernoulli probability"),
    (dict(init="nonsense"), "unknown init"),
])
def test_bad_input(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        discrete_study(**kwargs)


def test_state_index_range():
    study = discrete_study(samples=5, generations=2, states=4)
    assert state_index(study, 3) == 3
    with pytest.raises(ConfigError, match=r"\[0, 4\)"):
        state_index(study, 4)


def test_initial_distributions():
    mixture = parse_discrete_initial("mixture", states=40)
    probs, grid = np.asarray(mixture.probs), np.asarray(mixture.grid)
    assert probs.sum() == pytest.approx(1.0) and abs(grid[np.argmax(probs)]) == pytest.approx(4.0, abs=0.3)
    fat = np.asarray(parse_discrete_initial("fat-mixture", states=40).probs)
    assert fat[0] > 100 * probs[0]  # the Student-t variant keeps far more mass in the outer bins
    zipf = np.asarray(parse_discrete_initial("zipf:1", states=3).probs)
    np.testing.assert_allclose(zipf, np.array([1, 1 / 2, 1 / 3]) / (11 / 6))


def test_cli_discrete_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["discrete", "--chains", "300", "--generations", "8", "--samples", "6", "--states", "3",
                 "--init", "probs:0.2,0.3,0.5", "--out", str(out), "--check", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Verdicts" in printed and "E[heterozygosity]" in printed
    for name in ("summary.csv", "states.csv", "chains.csv", "check.csv", "report.md", "figure3.png",
                 "collapse.png", "absorption.png", "config.json"):
        assert (out / name).is_file(), name
    with open(out / "summary.csv") as stream:
        header = next(csv.reader(stream))
    for column in ("generation", "samples", "support_mean", "support_se", "heterozygosity_mean",
                   "heterozygosity_se", "heterozygosity_exact", "absorbed_fraction"):
        assert column in header
    with open(out / "chains.csv") as stream:
        assert sum(1 for _ in stream) == 301
    assert main(["rerun", str(out), "--out", str(tmp_path / "again"), "--no-figures"]) == 0
    assert main(["discrete", "--samples", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "samples M must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.slow  # 14 s; E[p_n] per state is also checked by the fast CLI and theory tests
def test_rare_states_of_the_figure3_mixture():
    """States with p0 ~ 1e-10 that no chain ever keeps are judged with the exact variance
    of p_n (a sample standard error of 0 would fail them); mean p_n = p0 still holds."""
    study = discrete_study(samples=30, generations=8, states=20, init="mixture")
    found = {(v.quantity, v.formula): v for v in verdicts(theory_table(study, _run(study, chains=2000)))}
    assert found[("E[state_p]", "exact (martingale)")].agrees
    assert found[("E[heterozygosity]", "exact (1 - 1/M)^n")].agrees
    assert found[("E[state_p]", "exact (martingale)")].compared == 8 * 20
    # outside the replace regime: a mix run, judged with the bound Var p_n <= p0 (1 - p0)
    mixed = discrete_study(samples=30, generations=8, states=20, init="mixture", regime="mix:0.7,0.2,0.1")
    rows = [row for row in theory_table(mixed, _run(mixed, chains=2000)) if row.quantity == "E[state_p]"]
    assert rows and all(abs(row.z) <= 5 for row in rows if np.isfinite(row.z))
    assert all(row.standard_error == pytest.approx(np.sqrt(row.value * (1 - row.value) / 2000)) for row in rows)


def test_poisson_data_path_and_smoothing():
    """The Poisson chain's data path (M Poisson draws) gives the exact extinction law too;
    additive smoothing keeps every state alive, so the chain never absorbs."""
    study = discrete_study(samples=15, generations=12, family="poisson", init="poisson:0.2", path="data")
    found = {(v.quantity, v.formula): v for v in verdicts(theory_table(study, _run(study, chains=3000)))}
    assert found[("E[extinct]", "exact (Galton-Watson)")].agrees
    smoothed = _run(discrete_study(samples=6, generations=30, states=3, init="probs:0.2,0.3,0.5", smoothing=0.5))
    assert np.all(smoothed.summary("support")["mean"] == 3.0)
    assert np.all(smoothed.summary("absorbed")["mean"] == 0.0)
    assert np.all(smoothed.final["absorption_generation"] == -1)
