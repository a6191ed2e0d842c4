"""Family rows of any shape and dtype (``Family.row``): blocks of integer tokens and 2-D
float rows run through every data policy of the engine."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcollapse as jc
from conftest import assert_z
from jaxcollapse.families import Family
from jaxcollapse.policies import REGIMES, parse_policy
from jaxcollapse.programs import data_path_program

# one spelling per regime of the engine; the test below checks none is missing
POLICIES = ("replace", "accumulate", "accumulate-subsample", "real-fraction:0.25", "fresh-real:0.25", "mix:0.6,0.2,0.2")
VOCAB, BLOCK = 5, 4
P0 = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
TOKEN_ROW = jax.ShapeDtypeStruct((BLOCK,), jnp.int32)


def test_the_policies_cover_every_regime():
    assert sorted(parse_policy(text).kind for text in POLICIES) == sorted(REGIMES)


# ----------------------------------------------------------------- a token family


def _draw_tokens(key, probs, n):
    """n blocks of BLOCK int32 tokens; position j draws from ``probs[j]``."""
    logits = jnp.log(jnp.broadcast_to(probs, (BLOCK, VOCAB)))
    return jax.random.categorical(key, logits, shape=(n, BLOCK)).astype(jnp.int32)


def token_family() -> Family:
    """Per-position token frequencies: fit = weighted frequencies, sample = categorical
    draws. Every policy keeps E[frequency] = p_0 at every generation (each source of
    D_n has the current model's or p_0's expected frequencies, and the fit is linear)."""

    def fit(key, data, weights):
        del key
        one_hot = jax.nn.one_hot(data, VOCAB, dtype=weights.dtype)  # (n, BLOCK, VOCAB)
        return jnp.einsum("n,npv->pv", weights, one_hot) / jnp.sum(weights)

    def metrics(probs, reference):
        return {
            "freq0": jnp.mean(probs[:, 0]),
            "tv": 0.5 * jnp.mean(jnp.sum(jnp.abs(probs - reference), axis=-1)),
        }

    return Family(name="tokens", row=TOKEN_ROW, fit=fit, sample=_draw_tokens, metrics=metrics)


def token_program(regime: str, sizes) -> jc.ChainProgram:
    family = token_family()
    p0 = jnp.asarray(P0, jnp.float32)
    return data_path_program(
        family, parse_policy(regime), np.asarray(sizes), lambda key, n: _draw_tokens(key, p0, n),
        jnp.broadcast_to(p0, (BLOCK, VOCAB)), metrics=lambda probs: family.metrics(probs, p0),
        metric_names=("freq0", "tv"),
    )


@pytest.mark.parametrize("regime", POLICIES)
def test_integer_tokens_run_under_every_policy(regime):
    result = jc.simulate(token_program(regime, [30, 20, 25]), num_chains=400, seed=3)
    assert result.num_generations == 3
    for name in ("freq0", "tv"):
        summary = result.summary(name)
        assert np.all(np.isfinite(summary["mean"])) and np.all(np.isfinite(summary["var"][1:])), (regime, name)
    freq0 = result.summary("freq0")
    # generation 0 is p_0 itself; every later generation is an unbiased estimate of it
    assert freq0["mean"][0] == pytest.approx(P0[0])
    assert_z(freq0["mean"][1:], freq0["se"][1:], P0[0], f"{regime}: E[frequency of token 0]")
    assert np.all(result.summary("tv")["mean"][1:] > 0)


def test_one_generation_of_tokens_has_the_binomial_moments():
    """Generation 1 is fitted to D_0: the frequency of token 0, averaged over the BLOCK
    positions of M blocks, has mean p_0 and variance p_0 (1 - p_0) / (BLOCK M)."""
    m = 50
    result = jc.simulate(token_program("replace", [m]), num_chains=4000, seed=5)
    freq0 = result.summary("freq0")
    assert_z(freq0["mean"][1], freq0["se"][1], P0[0], "mean frequency")
    assert_z(freq0["var"][1], freq0["var_se"][1], P0[0] * (1 - P0[0]) / (BLOCK * m), "variance of the frequency")


# ------------------------------------------------------- a family with 2-D float rows

SHAPE = (2, 3)


class CellParams(NamedTuple):
    mean: jax.Array  # SHAPE
    var: jax.Array  # SHAPE


def cell_family() -> Family:
    """Each of the 2 x 3 cells of a row is an independent normal, fitted by its weighted
    mean and (unbiased) variance."""

    def fit(key, data, weights):
        del key
        count = jnp.sum(weights)
        w = weights[:, None, None]
        mean = jnp.sum(w * data, axis=0) / count
        return CellParams(mean, jnp.sum(w * (data - mean) ** 2, axis=0) / (count - 1))

    def sample(key, params, n):
        return params.mean + jnp.sqrt(params.var) * jax.random.normal(key, (n, *SHAPE))

    def metrics(params, reference):
        del reference
        return {"mean": jnp.mean(params.mean), "var": jnp.mean(params.var)}

    return Family(name="cells", row=jax.ShapeDtypeStruct(SHAPE, jnp.float32), fit=fit, sample=sample, metrics=metrics)


@pytest.mark.parametrize("regime", ["accumulate", "mix:0.6,0.2,0.2"])
def test_two_dimensional_rows(regime):
    family = cell_family()
    p0 = CellParams(jnp.zeros(SHAPE), jnp.ones(SHAPE))
    program = data_path_program(
        family, parse_policy(regime), np.array([10, 5, 5]), lambda key, n: family.sample(key, p0, n), p0,
        metrics=lambda params: family.metrics(params, None), metric_names=("mean", "var"),
    )
    result = jc.simulate(program, num_chains=300, seed=1, record="trajectories")
    assert result.params.mean.shape == (4, 300, *SHAPE)
    assert np.all(np.isfinite(result.trajectories["var"]))
    mean = result.summary("mean")
    assert_z(mean["mean"][1:], mean["se"][1:], 0.0, f"{regime}: E[mean]")
    if regime == "accumulate":  # D_1 = D_0 + 5 model draws of generation 1: never a point mass
        assert np.all(result.trajectories["var"] > 0)


# ----------------------------------------------------------- the row and its checks


def test_dim_keyword_and_legacy_positional_dim_build_float_rows():
    def fit(key, data, weights):
        return data[0]

    sample = metrics = None
    by_keyword = Family(name="legacy", dim=3, fit=fit, sample=sample, metrics=metrics)
    positional = Family("legacy", 3, fit, sample, metrics)
    for family in (by_keyword, positional):
        assert family.row == jax.ShapeDtypeStruct((3,), jnp.result_type(float))
        assert family.dim == 3 and family.fit is fit
    tokens = token_family()
    assert tokens.row.dtype == jnp.int32 and tokens.dim == BLOCK
    assert cell_family().dim == 6
    assert jc.gaussian(dim=2).row == jax.ShapeDtypeStruct((2,), jnp.result_type(float))
    assert tokens._replace(name="renamed").row == TOKEN_ROW


@pytest.mark.parametrize("arguments, message", [
    (dict(dim=2, row=jax.ShapeDtypeStruct((2,), jnp.float32)), "row or dim, not both"),
    (dict(), "row"),
    (dict(dim=0), r"dim must be an integer >= 1; got 0"),
    (dict(row=(2, 3)), r"row must be a jax.ShapeDtypeStruct"),
])
def test_bad_rows_are_config_errors(arguments, message):
    with pytest.raises(jc.ConfigError, match=message):
        Family(name="bad", fit=None, sample=None, metrics=None, **arguments)


def test_a_sampler_that_disagrees_with_the_row_is_refused_before_tracing():
    family = token_family()
    p0 = jnp.asarray(P0, jnp.float32)
    params = jnp.broadcast_to(p0, (BLOCK, VOCAB))

    def floats(key, n):
        return jnp.zeros((n, BLOCK))

    def build(family, sample_initial):
        return data_path_program(family, parse_policy("accumulate"), np.array([3, 3]), sample_initial, params,
                                 metrics=lambda probs: {}, metric_names=("freq0",))

    with pytest.raises(jc.ConfigError, match=r"sample_initial.*\(3, 4\) int32.*; got \(3, 4\) float32"):
        build(family, floats)
    with pytest.raises(jc.ConfigError, match=r"family.sample.*\(3, 4\) int32.*; got \(3, 4\) float32"):
        build(family._replace(sample=lambda key, params, n: floats(key, n)), lambda key, n: _draw_tokens(key, p0, n))
