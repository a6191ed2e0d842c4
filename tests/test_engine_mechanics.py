"""Determinism, chunking, records, compile counts and the data policies (devices and
processes: test_distributed.py)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.summaries import merge_moments, sketch, sketch_quantiles

STUDIES = {
    "replace-data": dict(samples=10, generations=7, path="data"),
    "replace-stats": dict(samples=10, generations=7, path="sufficient"),
    "accumulate-data": dict(samples=5, generations=7, regime="accumulate", path="data"),
    "subsample": dict(samples=5, generations=7, regime="accumulate-subsample", schedule="linear:2"),
    "mix-2d": dict(samples=6, generations=7, regime="mix:0.6,0.2,0.2", dim=2),
}


def _trajectories(study, chains, **kwargs):
    result = jc.simulate(study.program(), num_chains=chains, num_generations=study.generations, seed=42,
                         record="trajectories", **kwargs)
    return result


# the data and sufficient replace paths run in the suite; the policies' buffers on demand (-m slow)
@pytest.mark.parametrize("name", [
    name if name.startswith("replace") else pytest.param(name, marks=pytest.mark.slow) for name in STUDIES
])
def test_chain_trajectories_do_not_depend_on_chunking_or_chain_count(name):
    study = jc.gaussian_study(**STUDIES[name])
    whole = _trajectories(study, 13)
    for kwargs in ({"chunk_size": 4}, {"chunk_size": 1, "segment_length": 3}):
        chunked = _trajectories(study, 13, **kwargs)
        jax.tree.map(np.testing.assert_array_equal, whole.params, chunked.params)
    fewer = _trajectories(study, 5)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[:, :5], b), whole.params, fewer.params)
    for metric in whole.metric_names:
        np.testing.assert_array_equal(whole.trajectories[metric][:, :5], fewer.trajectories[metric])


@pytest.mark.slow  # on demand: test_merge_moments_matches_numpy and the chunking tests run by default
def test_summary_merging_across_chunks_equals_one_chunk():
    study = jc.gaussian_study(samples=10, generations=6)
    one = jc.simulate(study.program(), num_chains=300, num_generations=6, seed=1)
    many = jc.simulate(study.program(), num_chains=300, num_generations=6, seed=1, chunk_size=64)
    trajectories = jc.simulate(study.program(), num_chains=300, num_generations=6, seed=1, record="trajectories")
    for metric in one.metric_names:
        for key in ("mean", "se", "var", "var_se"):
            np.testing.assert_allclose(many.summary(metric)[key], one.summary(metric)[key], rtol=2e-4, atol=1e-9)
            np.testing.assert_allclose(trajectories.summary(metric)[key], one.summary(metric)[key], rtol=2e-4, atol=1e-9)


def test_merge_moments_matches_numpy(rng):
    values = rng.gamma(2.0, size=1000) ** 2
    def moments(x):
        c = x - x.mean()
        return np.array([x.size, x.mean(), (c**2).sum(), (c**3).sum(), (c**4).sum()])
    merged = merge_moments(merge_moments(moments(values[:100]), moments(values[100:731])), moments(values[731:]))
    np.testing.assert_allclose(merged, moments(values), rtol=1e-10)


def test_quantile_sketch_is_within_its_resolution(rng):
    values = rng.lognormal(-3, 2, size=20_000)
    counts = np.asarray(sketch(jnp.asarray(values, jnp.float32), jnp.ones(values.size)))
    sketched = sketch_quantiles(counts, (0.05, 0.5, 0.95))
    exact = np.quantile(values, (0.05, 0.5, 0.95))
    np.testing.assert_allclose(sketched, exact, rtol=10**0.01 - 1)


def test_sketched_quantiles_of_a_run_match_exact_ones():
    study = jc.gaussian_study(samples=20, generations=5)
    summary = jc.simulate(study.program(), num_chains=2000, num_generations=5, seed=2, quantile_metrics=("w2_risk",))
    full = jc.simulate(study.program(), num_chains=2000, num_generations=5, seed=2, record="trajectories")
    q = (0.1, 0.5, 0.9)
    np.testing.assert_allclose(summary.quantiles("w2_risk", q)[1:], full.quantiles("w2_risk", q)[1:], rtol=0.03)


def test_compiled_once_per_configuration():
    study = jc.gaussian_study(samples=10, generations=9)
    program = study.program()
    traces = []
    counted = program._replace(step=lambda *args: (traces.append(1), program.step(*args))[1])
    jc.simulate(counted, num_chains=20, num_generations=9, seed=0, chunk_size=5, segment_length=2)
    assert len(traces) == 1  # 4 chunks x 5 segments, one trace


def test_zero_generations_and_memory_free_summaries():
    study = jc.gaussian_study(samples=10, generations=0)
    result = jc.simulate(study.program(), num_chains=3, num_generations=0, seed=0)
    assert result.summary("w2_risk")["mean"].tolist() == [0.0]
    assert result.trajectories is None and result.moments["w2_risk"].shape == (1, 5)


STUDIES_OF_EVERY_KIND = {
    "gaussian-sufficient": lambda g: jc.gaussian_study(samples=10, generations=g, path="sufficient"),
    "gaussian-data": lambda g: jc.gaussian_study(samples=10, generations=g, path="data"),
    "discrete-counts": lambda g: jc.discrete_study(samples=10, generations=g, states=4, path="counts"),
    "discrete-data": lambda g: jc.discrete_study(samples=10, generations=g, states=4, path="data"),
    "gmm": lambda g: jc.gmm_study(samples=20, generations=g, iterations=2, heldout=16),
    "kde": lambda g: jc.kde_study(samples=10, generations=g, heldout=16),
    "regression": lambda g: jc.regression_study(samples=10, dim=2, generations=g),
}


@pytest.mark.parametrize("kind", STUDIES_OF_EVERY_KIND)
def test_every_study_program_knows_its_generations(kind):
    for generations in (0, 3):  # G = 0 builds its buffers from a placeholder schedule
        assert STUDIES_OF_EVERY_KIND[kind](generations).program().num_generations == generations, generations


def test_simulate_runs_the_programs_generations_by_default():
    program = jc.gaussian_study(samples=10, generations=4).program()
    result = jc.simulate(program, num_chains=16, seed=0)
    assert result.num_generations == 4 and result.moments["w2_risk"].shape == (5, 5)
    same = jc.simulate(program, num_chains=16, num_generations=4, seed=0)  # the same G, given: fine
    np.testing.assert_array_equal(same.moments["w2_risk"], result.moments["w2_risk"])
    empty = jc.simulate(jc.gaussian_study(samples=10, generations=0).program(), num_chains=3)
    assert empty.num_generations == 0


@pytest.mark.parametrize("requested", [3, 5])
def test_a_generations_mismatch_is_refused_before_tracing(requested):
    """A longer run would reuse the schedule's last M (wrong numbers); a shorter one is a
    different study: both are ConfigErrors, raised before anything is traced."""
    def untraceable(*args):
        raise AssertionError("the program was traced")

    program = jc.gaussian_study(samples=10, generations=4).program()
    program = program._replace(step=untraceable, initial_state=untraceable, metrics=untraceable)
    with pytest.raises(jc.ConfigError, match=rf"num_generations must equal the program's G = 4 .*; got {requested}"):
        jc.simulate(program, num_chains=4, num_generations=requested)


def test_data_path_programs_take_g_from_their_schedule():
    from jaxcollapse.programs import data_path_program

    def build(sizes, **options):
        return data_path_program(
            jc.gaussian(dim=1), jc.DataPolicy(), np.asarray(sizes, np.int64), jc.normal_initial(0.0, 1.0).sampler(1),
            jc.GaussianParams(jnp.zeros(1), jnp.eye(1)), metrics=lambda p: {"sigma2": p.cov[0, 0]},
            metric_names=("sigma2",), **options)

    assert build([5, 5, 5]).num_generations == 3
    assert build([]).num_generations == 0
    assert build([5], num_generations=0).num_generations == 0  # a placeholder schedule for G = 0
    with pytest.raises(jc.ConfigError, match=r"num_generations must be <= 3 .*; got 4"):
        build([5, 5, 5], num_generations=4)


def test_a_program_without_generations_needs_them():
    program = jc.gaussian_study(samples=10, generations=3).program()._replace(num_generations=None)
    with pytest.raises(jc.ConfigError, match=r"num_generations is required.*ChainProgram.num_generations is None"):
        jc.simulate(program, num_chains=4)
    assert jc.simulate(program, num_chains=4, num_generations=3).num_generations == 3
    with pytest.raises(jc.ConfigError, match="num_generations must be an integer >= 0; got -1"):
        jc.simulate(program, num_chains=4, num_generations=-1)


def test_real_fraction_keeps_distinct_real_points():
    from jaxcollapse.policies import DataPolicy, data_program

    sizes = np.array([10, 10, 10])
    program = data_program(DataPolicy("real-fraction", fraction=0.3), sizes)
    real = jnp.arange(10.0)[:, None] + 100
    _, _, state = program.init(jax.random.key(0), real, 10)
    data, weights, _ = program.step(jax.random.key(1), state, jnp.zeros((10, 1)), 10, None)
    taken = np.asarray(data[:, 0])
    assert np.sum(taken >= 100) == 3 and len(set(taken[taken >= 100])) == 3
    assert np.all(taken[3:] == 0) and float(weights.sum()) == 10


def test_mix_draws_each_source_with_its_probability():
    from jaxcollapse.policies import DataPolicy, data_program

    sizes = np.array([4000, 4000])
    program = data_program(DataPolicy("mix", mixing=(0.5, 0.3, 0.2)), sizes)
    _, _, state = program.init(jax.random.key(0), jnp.full((4000, 1), 1.0), 4000)
    data, _, _ = program.step(jax.random.key(1), state, jnp.zeros((4000, 1)), 4000,
                              lambda key, n: jnp.full((n, 1), 2.0))
    counts = np.bincount(np.asarray(data[:, 0]).astype(int), minlength=3) / 4000
    se = np.sqrt(np.array([0.5, 0.3, 0.2]) * (1 - np.array([0.5, 0.3, 0.2])) / 4000)
    assert np.all(np.abs(counts - [0.5, 0.3, 0.2]) <= 5 * se), counts


def test_progress_meter_reports_generations_only_when_enabled():
    import io

    from jaxcollapse._progress import Progress

    stream = io.StringIO()
    meter = Progress(total_generations=10, num_chains=100, chunks=2, enabled=True, stream=stream)
    meter.compiled(1.25)
    meter.update(chunk=0, generation=5, chains_in_chunk=50, generations_done=5)
    meter.update(chunk=1, generation=10, chains_in_chunk=50, generations_done=10)
    meter.close()
    text = stream.getvalue()
    # one bar across chunks (750 of 1000 chain-generations), its ETA, compilation apart
    assert "generation 10/10, chunk 2/2" in text and "750/1.00k" in text and "chain-generations/s" in text
    assert "compiled in 1.2 s" in text and "<" in text  # tqdm's elapsed<remaining
    quiet = io.StringIO()
    meter = Progress(total_generations=10, num_chains=100, chunks=1, stream=quiet)  # not a terminal
    meter.update(chunk=0, generation=10, chains_in_chunk=100, generations_done=10)
    meter.close()
    assert quiet.getvalue() == ""


def test_metric_selection_records_only_what_is_asked():
    study = jc.gaussian_study(samples=10, generations=3)
    full = jc.simulate(study.program(), num_chains=32, num_generations=3, seed=4)
    chosen = jc.simulate(study.program(), num_chains=32, num_generations=3, seed=4, metrics=("w2_risk", "sigma"))
    assert chosen.metric_names == ("w2_risk", "sigma") and set(chosen.moments) == {"w2_risk", "sigma"}
    np.testing.assert_array_equal(chosen.moments["w2_risk"], full.moments["w2_risk"])
    with pytest.raises(jc.ConfigError, match="metrics must be a non-empty selection"):
        jc.simulate(study.program(), num_chains=4, num_generations=3, metrics=("bogus",))


@pytest.mark.parametrize("generations, options, calls", [
    (8, {}, 1),  # at least MIN_SEGMENT generations a call: one call
    (250, {}, 10),  # a tenth of the run
    (8, {"checkpoint_every": 3}, 3),  # checkpoints bound the segment: 3 + 3 + 2
])
def test_default_segments(tmp_path, monkeypatch, generations, options, calls):
    from jaxcollapse import engine

    updates = []
    monkeypatch.setattr(engine.Progress, "update", lambda self, *args: updates.append(args))
    if options:
        options = dict(options, checkpoint=tmp_path / "run.npz")
    study = jc.gaussian_study(samples=10, generations=generations, path="sufficient")
    jc.simulate(study.program(), num_chains=16, num_generations=generations, seed=0, **options)
    assert len(updates) == calls
    assert updates[-1][1] == generations


EXECUTOR_STUDIES = {
    "gaussian-sufficient": lambda: jc.gaussian_study(samples=12, generations=5),
    "gaussian-data-accumulate": lambda: jc.gaussian_study(samples=12, generations=5, path="data", regime="accumulate"),
    "discrete-counts": lambda: jc.discrete_study(samples=12, generations=5, states=5, init="uniform"),
}


# the Gaussian sufficient path fast; the data path and the discrete counts path with -m slow (17 s cold)
@pytest.mark.parametrize("name", [name if name == "gaussian-sufficient" else pytest.param(name, marks=pytest.mark.slow)
                                  for name in EXECUTOR_STUDIES])
def test_the_host_and_scan_executors_give_identical_trajectories(name):
    """One driver, two places for the generation loop: the same keys and records give the
    same parameters and metrics, bit for bit, whatever the segments and chunks."""
    program = EXECUTOR_STUDIES[name]().program()
    options = dict(num_chains=40, seed=3, record="trajectories", chunk_size=16)
    scan = jc.simulate(program, executor="scan", segment_length=2, **options)
    host = jc.simulate(program, executor="host", segment_length=3, **options)
    for metric in scan.metric_names:
        np.testing.assert_array_equal(scan.trajectories[metric], host.trajectories[metric], err_msg=metric)
    for left, right in zip(jax.tree.leaves(scan.params), jax.tree.leaves(host.params)):
        np.testing.assert_array_equal(left, right)
    summary = jc.simulate(program, executor="host", num_chains=40, seed=3)
    np.testing.assert_allclose(summary.summary(scan.metric_names[0])["mean"],
                               scan.trajectories[scan.metric_names[0]].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_the_host_executor_resumes_from_its_checkpoints_and_an_unknown_one_is_named(tmp_path, monkeypatch):
    from jaxcollapse import _checkpoint

    program = jc.gaussian_study(samples=12, generations=6).program()
    options = dict(num_chains=40, seed=3, chunk_size=16, segment_length=2, executor="host")
    whole = jc.simulate(program, **options)
    path = tmp_path / "state.npz"
    original, calls = _checkpoint.save, []

    def save_then_stop(*args):
        original(*args)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed inside the first chunk, after its second checkpoint

    monkeypatch.setattr(_checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        jc.simulate(program, checkpoint=path, checkpoint_every=2, **options)
    monkeypatch.setattr(_checkpoint, "save", original)
    resumed = jc.simulate(program, checkpoint=path, checkpoint_every=2, **options)
    for metric in whole.metric_names:
        np.testing.assert_array_equal(resumed.moments[metric], whole.moments[metric])
    with pytest.raises(jc.ConfigError, match="different run .*executor"):  # not mixed with the scan executor's
        jc.simulate(program, checkpoint=path, checkpoint_every=2, **{**options, "executor": "scan"})
    with pytest.raises(jc.ConfigError, match="unknown executor 'gpu'; choose one of scan, host"):
        jc.simulate(program, num_chains=4, executor="gpu")


def test_metric_names_the_metrics_function_does_not_return_are_named():
    program = jc.gaussian_study(samples=10, generations=2).program()
    typo = program._replace(metric_names=program.metric_names + ("w2_riks",))
    with pytest.raises(jc.ConfigError, match=r"metric_names name \['w2_riks'\]"):
        jc.simulate(typo, num_chains=4)


# every chain program: a chain's trajectory is the same bits in chunks of 16, 48, 64 and 128
# (the two that once differed in chunks of 16 and 64, the Gaussian by default and the GMM
# (16 s cold) with the rest under -m slow)
CHUNK_PROGRAMS = {
    "gaussian-accumulate-data": lambda: jc.gaussian_study(samples=10, generations=6, regime="accumulate", path="data"),
    "gmm": lambda: jc.gmm_study(samples=100, generations=2),
    "gaussian-replace-data": lambda: jc.gaussian_study(samples=10, generations=6, path="data"),
    "gaussian-sufficient": lambda: jc.gaussian_study(samples=10, generations=6, path="sufficient"),
    "gaussian-accumulate-2d": lambda: jc.gaussian_study(samples=10, generations=6, regime="accumulate", dim=2,
                                                        path="data"),
    "gaussian-mix-2d": lambda: jc.gaussian_study(samples=10, generations=6, regime="mix:0.6,0.2,0.2", dim=2),
    "subsample": lambda: jc.gaussian_study(samples=10, generations=6, regime="accumulate-subsample",
                                           schedule="linear:2"),
    "discrete": lambda: jc.discrete_study(samples=10, generations=6, states=5),
    "kde": lambda: jc.kde_study(samples=20, generations=4, heldout=32),
    "regression": lambda: jc.regression_study(samples=20, dim=4, generations=4, regime="accumulate", path="data"),
}


@pytest.mark.parametrize("name", [
    name if name == "gaussian-accumulate-data" else pytest.param(name, marks=pytest.mark.slow)
    for name in CHUNK_PROGRAMS
])
def test_every_program_is_bit_identical_across_chunk_sizes(name):
    program = CHUNK_PROGRAMS[name]().program()

    def parameters(chunk_size):
        result = jc.simulate(program, num_chains=128, seed=3, record="trajectories", chunk_size=chunk_size)
        return [np.asarray(leaf) for leaf in jax.tree.leaves(result.params)]

    reference = parameters(16)
    for chunk_size in (64,) if name in ("gaussian-accumulate-data", "gmm") else (48, 64, 128):
        for leaf, other in zip(reference, parameters(chunk_size)):
            np.testing.assert_array_equal(leaf, other, err_msg=f"{name}: chunks of {chunk_size} against 16")


def test_studies_that_differ_only_in_numbers_compile_once():
    """The Gaussian sufficient path reads its sample sizes as traced arguments: a second
    study of the same shape reuses the first's executables (nothing traced or compiled)
    and gives the numbers a fresh compilation gives; another p_0 is another program."""
    options = dict(num_chains=32, record="trajectories", chunk_size=16)
    first = jc.gaussian_study(samples=10, generations=5).program()
    jc.simulate(first, seed=0, **options)
    other = jc.gaussian_study(samples=37, generations=5, schedule="linear:3").program()
    reused = jc.simulate(other, seed=1, **options)
    assert reused.compile_seconds == 0.0
    fresh = jc.simulate(other._replace(cache_key=None), seed=1, **options)
    assert fresh.compile_seconds > 0.0
    for metric in reused.metric_names:
        np.testing.assert_array_equal(reused.trajectories[metric], fresh.trajectories[metric])
    jax.tree.map(np.testing.assert_array_equal, reused.params, fresh.params)
    # another regime, another p_0: other programs, compiled afresh
    accumulate = jc.gaussian_study(samples=10, generations=5, regime="accumulate").program()
    assert jc.simulate(accumulate, seed=0, **options).compile_seconds > 0.0
    assert jc.gaussian_study(samples=10, generations=5, sigma=2.5).program().cache_key != first.cache_key


def test_a_replaced_function_drops_the_programs_cache_key():
    program = jc.gaussian_study(samples=10, generations=3).program()
    assert program.cache_key is not None and program.bind is not None
    wrapped = program._replace(metrics=lambda params: {"x": params.mean[0]}, metric_names=("x",))
    assert wrapped.bind is None and wrapped.cache_key is None and wrapped.arguments is None
    assert program._replace(bytes_per_chain=1).cache_key == program.cache_key  # a run setting keeps it


def test_results_drop_into_pandas_and_xarray():
    study = jc.gaussian_study(samples=10, generations=3)
    result = jc.simulate(study.program(), num_chains=64, seed=2, quantile_metrics=("w2_risk",))
    frame = result.to_dataframe(theory=study.theory_curves())
    assert len(frame) == len(result.metric_names) * 4 and frame["generation"].dtype == np.int64
    risk = frame[frame["metric"] == "w2_risk"]
    np.testing.assert_array_equal(risk["mean"], result.summary("w2_risk")["mean"])
    np.testing.assert_array_equal(risk["se"], result.summary("w2_risk")["se"])
    np.testing.assert_array_equal(risk[["q0.05", "q0.5", "q0.95"]], result.quantiles("w2_risk", [0.05, 0.5, 0.95]))
    exact = next(c for c in study.theory_curves() if c.quantity == "E[w2_risk]" and c.formula == "exact")
    np.testing.assert_array_equal(risk["exact"], exact.values)
    assert frame[frame["metric"] == "kl"]["q0.5"].isna().all()  # no sketch of kl was recorded
    assert frame[frame["metric"] == "kl"]["paper eq. (4)"].isna().all()  # a formula of another metric
    trajectories = jc.simulate(study.program(), num_chains=8, seed=2, record="trajectories")
    data = trajectories.to_xarray()
    assert data["w2_risk"].dims == ("generation", "chain") and data.sizes == {"generation": 4, "chain": 8}
    np.testing.assert_array_equal(data["sigma"].values, trajectories.trajectories["sigma"])
    summaries = result.to_xarray()
    np.testing.assert_array_equal(summaries["w2_risk"].sel(statistic="se").values, result.summary("w2_risk")["se"])
