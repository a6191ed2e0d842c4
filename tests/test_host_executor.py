"""The host executor: chains of host-trained families (the VAE, OPT, a researcher's own
model) through ``simulate`` with the engine's keys and data policies, one artefact per
stage, and resume after a kill.

One table of host families (a traceable Gaussian run by the host executor, integer token
blocks, the VAE and OPT) passes the same generic tests: zero-weight rows change nothing
(where the fit is exact about padding), the batched sampler keeps the row's shape and
dtype, every data policy runs, and a run killed after any stage resumes bit for bit."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcollapse import ConfigError, DataPolicy, Family, GaussianParams, gaussian, normal_initial, parse_policy, simulate
from jaxcollapse.programs import data_path_program, host_program

POLICIES = ("replace", "accumulate", "accumulate-subsample", "real-fraction:0.3", "fresh-real:0.3", "mix:0.5,0.3,0.2")


# ---------------------------------------------------------------------------- the table

class HostCase(NamedTuple):
    family: Family
    sample_initial: Callable  # (key, n) -> D_0 rows
    rows: int  # M_n
    metrics: Callable  # Generation -> dict with "score"
    params_shape: Any = None
    exact_padding: bool = True  # False: minibatch training draws its order over the whole buffer
    chains_per_call: int | None = None


def _first_leaf_score(generation):
    leaf = jax.tree.leaves(generation.samples)[0]
    return {"score": np.asarray(jnp.mean(jnp.asarray(leaf, jnp.float32).reshape(leaf.shape[0], -1), axis=1))}


def token_family(vocab: int = 5, block: int = 4) -> Family:
    """Blocks of int32 tokens; the fit is each position's weighted token frequencies and
    the number of rows it saw."""

    def fit(key, data, weights):
        counts = jnp.einsum("n,nbv->bv", weights, jax.nn.one_hot(data, vocab))
        return {"probs": (counts + 1e-3) / (jnp.sum(weights) + vocab * 1e-3), "rows": jnp.sum(weights)}

    def sample(key, params, n):
        return jax.random.categorical(key, jnp.log(params["probs"]), shape=(n, block)).astype(jnp.int32)

    return Family(name="tokens", row=jax.ShapeDtypeStruct((block,), jnp.int32), fit=fit, sample=sample,
                  metrics=lambda params, reference: {"p0": params["probs"][0, 0]})


def _gaussian_case():
    sampler = normal_initial(jnp.zeros(2), jnp.eye(2)).sampler(2)
    return HostCase(gaussian(dim=2), sampler, 24, _first_leaf_score)


def _token_case():
    def sample_initial(key, n):
        return jax.random.randint(key, (n, 4), 0, 5).astype(jnp.int32)

    return HostCase(token_family(), sample_initial, 24,
                    lambda g: {**_first_leaf_score(g), "rows": np.full(len(g.chains), np.nan) if g.params is None
                               else np.asarray(g.params["rows"])})


def _vae_case():
    from jaxcollapse.vae import TrainConfig, VAEConfig, vae_family

    config = VAEConfig(image_shape=(4, 4), latent=2, architecture="mlp", hidden=(8,))

    def sample_initial(key, n):
        return jax.random.uniform(key, (n, 16))

    return HostCase(vae_family(config, TrainConfig(epochs=1, batch_size=8)), sample_initial, 16, _first_leaf_score,
                    exact_padding=False)


def _opt_case():
    from jaxcollapse.lm.runs import LMStudy, _params_shape, _Setup, opt_family

    study = LMStudy(generations=2, epochs=1, train_blocks=8, eval_blocks=4, block_size=8, new_tokens=8, vocab=12,
                    beams=1, batch_size=4, generation_batch=8)
    setup = _Setup(study)
    real = jnp.asarray(setup.splits.train)

    def sample_initial(key, n):
        return real[jax.random.permutation(key, len(real))[:n]]

    return HostCase(opt_family(study, setup, progress=False), sample_initial, 8, _first_leaf_score,
                    params_shape=_params_shape(study, setup), chains_per_call=1)


CASES = {"gaussian": _gaussian_case, "tokens": _token_case, "vae": _vae_case, "opt": _opt_case}
SLOW = ("vae", "opt")  # compilation and training dominate; their fast runs: tests/test_vae.py, tests/test_lm_runs.py


def _cases(names=tuple(CASES), slow=SLOW):
    return [pytest.param(name, marks=pytest.mark.slow) if name in slow else name for name in names]


def _program(case: HostCase, policy: str, generations: int = 3, on_stage=None):
    return host_program(case.family, parse_policy(policy), np.full(generations, case.rows), case.sample_initial,
                        metrics=case.metrics, metric_names=("score",),
                        params_shape=case.params_shape, chains_per_call=case.chains_per_call, on_stage=on_stage)


def _run(case, policy, checkpoint=None, on_stage=None, generations=3, chains=3, seed=1):
    return simulate(_program(case, policy, generations, on_stage), num_chains=chains, seed=seed,
                    record="trajectories", checkpoint=checkpoint, identity={"policy": policy})


# ---------------------------------------------------------------------------- generic tests

@pytest.mark.parametrize("name", _cases())
def test_zero_weight_rows_change_no_fit(name):
    case = CASES[name]()
    if not case.exact_padding:
        pytest.skip("minibatch training draws its order over the whole buffer: equal in distribution only")
    data = case.sample_initial(jax.random.key(0), case.rows)
    padded = jnp.concatenate([data, case.sample_initial(jax.random.key(1), 5)])
    weights = jnp.concatenate([jnp.ones(case.rows), jnp.zeros(5)])
    fit = case.family.fit_runs or (lambda keys, d, w, previous: jax.vmap(case.family.fit)(keys, d, w))
    keys = jax.random.split(jax.random.key(2), 1)
    plain = fit(keys, data[None], jnp.ones((1, case.rows)), None)
    masked = fit(keys, padded[None], weights[None], None)
    for a, b, path in zip(jax.tree.leaves(plain), jax.tree.leaves(masked), jax.tree_util.tree_flatten_with_path(plain)[0]):
        if "seconds" not in str(path[0]):  # a fit's wall-clock time aside
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


# the Gaussian's policies are the tokens' (and the data path's, tested against the scan above)
@pytest.mark.parametrize("name", _cases(slow=SLOW + ("gaussian",)))
def test_every_policy_runs_and_samples_keep_the_row(name, tmp_path):
    case = CASES[name]()
    policies = ("replace", "accumulate", "mix:0.5,0.3,0.2")  # the other three: the scan comparison (-m slow)
    for policy in policies:
        result = _run(case, policy, checkpoint=tmp_path / policy.replace(":", "_"))
        assert result.trajectories["score"].shape == (4, 3)
        assert np.all(np.isfinite(result.trajectories["score"])), policy
        samples = np.load(tmp_path / policy.replace(":", "_") / "generation_2" /
                          f"samples_0-{1 if case.chains_per_call == 1 else 3}.npz")["samples"]
        row = case.family.row
        assert samples.shape[1:] == (case.rows, *row.shape)
        assert samples.dtype == jax.dtypes.canonicalize_dtype(row.dtype)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("name", _cases())
@pytest.mark.parametrize("stage", ["fit", "sample", "score"])
def test_a_run_killed_after_a_stage_resumes_bit_for_bit(name, stage, tmp_path):
    case = CASES[name]()
    whole = _run(case, "accumulate", checkpoint=tmp_path / "whole")
    calls = []

    def kill(generation, stage_name, first, end):
        calls.append((generation, stage_name))
        if (generation, stage_name) == (2, stage):
            raise _Killed

    with pytest.raises(_Killed):
        _run(case, "accumulate", checkpoint=tmp_path / "parts", on_stage=kill)
    calls.clear()
    resumed = _run(case, "accumulate", checkpoint=tmp_path / "parts",
                   on_stage=lambda generation, stage_name, first, end: calls.append((generation, stage_name, first)))
    np.testing.assert_array_equal(resumed.trajectories["score"], whole.trajectories["score"])
    # finished stages are loaded, not redone: generation 1, and the stage the kill followed
    # (its first group of runs; later groups had not run yet)
    assert not [call for call in calls if call[0] == 1] and (2, stage, 0) not in calls
    assert (3, "fit", 0) in calls
    for generation in (1, 2, 3):
        for artefact in sorted((tmp_path / "whole" / f"generation_{generation}").glob("samples_*.npz")):
            with np.load(artefact) as a, np.load(tmp_path / "parts" / artefact.relative_to(tmp_path / "whole")) as b:
                np.testing.assert_array_equal(a["samples"], b["samples"])


# ---------------------------------------------------------------------------- the executor itself

@pytest.mark.parametrize("policy", [policy if policy in ("replace",)
                                    else pytest.param(policy, marks=pytest.mark.slow) for policy in POLICIES])
def test_a_traceable_family_follows_the_data_path_on_the_host(policy):
    """The same keys and policies as the scan executor's data path: every generation's
    parameters equal to float32 rounding (the host runs sampling, the policy and the fit
    as separate compiled calls, whose arithmetic XLA fuses and rounds otherwise; a wrong
    key or policy would give other draws, far outside this tolerance)."""
    family, sizes = gaussian(dim=2), np.array([20, 30, 25, 20])
    sampler = normal_initial(jnp.zeros(2), jnp.eye(2)).sampler(2)
    initial = GaussianParams(jnp.zeros(2), jnp.eye(2))
    scan = simulate(data_path_program(family, parse_policy(policy), sizes, sampler, initial,
                                      metrics=lambda p: {"tr": jnp.trace(p.cov)}, metric_names=("tr",)),
                    num_chains=16, record="trajectories", seed=3)
    host = simulate(host_program(family, parse_policy(policy), sizes, sampler, initial_params=initial,
                                 metrics=lambda g: {"tr": np.zeros(len(g.chains)) if g.params is None
                                                    else np.trace(np.asarray(g.params.cov), axis1=1, axis2=2)},
                                 metric_names=("tr",)),
                    num_chains=16, record="trajectories", seed=3)
    for a, b in zip(jax.tree.leaves(scan.params), jax.tree.leaves(host.params)):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(host.trajectories["tr"], scan.trajectories["tr"], rtol=2e-5)


def test_accumulate_pools_integer_token_rows():
    """The fit of generation n + 1 sees M_0 + ... + M_n rows under accumulate."""
    case = _token_case()
    program = host_program(case.family, DataPolicy("accumulate"), np.array([10, 20, 30]), case.sample_initial,
                           metrics=case.metrics, metric_names=("rows",))
    result = simulate(program, num_chains=2, record="trajectories")
    np.testing.assert_array_equal(result.trajectories["rows"][1:], [[10, 10], [30, 30], [60, 60]])


def test_summaries_and_quantiles_from_a_host_run():
    case = _token_case()
    program = _program(case, "replace")
    result = simulate(program, num_chains=5, quantile_metrics=("score",))
    trajectories = simulate(program, num_chains=5, record="trajectories").trajectories["score"]
    np.testing.assert_allclose(result.summary("score")["mean"], trajectories.mean(axis=1), rtol=1e-6)
    assert result.quantiles("score", [0.5]).shape == (4, 1)


def test_bad_host_programs_are_named(tmp_path):
    case = _token_case()
    program = _program(case, "replace")
    with pytest.raises(ConfigError, match="executor='host' only"):
        simulate(program, num_chains=2, executor="scan")
    simulate(program, num_chains=2, checkpoint=tmp_path / "run")
    with pytest.raises(ConfigError, match="belongs to a different run"):
        simulate(program, num_chains=2, seed=5, checkpoint=tmp_path / "run")
    wrong = case.family._replace(sample_runs=lambda keys, params, n: jnp.zeros((len(keys), n, 3), jnp.int32))
    with pytest.raises(ConfigError, match=r"sample_runs must return \(2, 24, 4\) int32"):
        simulate(host_program(wrong, DataPolicy(), np.full(2, 24), case.sample_initial, metrics=case.metrics,
                              metric_names=("score",)), num_chains=2)
    host_only = case.family._replace(fit=None, fit_runs=lambda keys, data, weights, previous: None)
    with pytest.raises(ConfigError, match="params_shape"):
        host_program(host_only, DataPolicy(), np.full(2, 24), case.sample_initial, metrics=case.metrics,
                     metric_names=("score",))
    with pytest.raises(ConfigError, match="host_program"):
        data_path_program(host_only, DataPolicy(), np.full(2, 24), case.sample_initial, None,
                          metrics=lambda p: {}, metric_names=())
    with pytest.raises(ConfigError, match="real-fraction 0.5 needs 10 distinct real points"):
        host_program(case.family, DataPolicy("real-fraction", 0.5), np.array([4, 20]), case.sample_initial,
                     metrics=case.metrics, metric_names=("score",))
