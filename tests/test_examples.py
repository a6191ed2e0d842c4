"""The scripts of docs/own_family.md (examples/*_family.py) run and their numbers say what
the page claims: each script's ``main(argv)`` prints its table and returns its numbers.
The page's Python excerpts are checked to be the scripts' own code, verbatim."""

import importlib.util
import json
import re
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcollapse as jc
from conftest import assert_z
from jaxcollapse import studies

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = ("laplace_family", "nnx_family", "token_family", "host_family")


def load(name):
    """An example script as a module (not run as __main__). It is entered in sys.modules
    under its own name first, as an import would, so a dataclass defined in it resolves."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def laplace():
    return load("laplace_family")


# ----------------------------------------------------------------- the Laplace family


def test_weighted_median_respects_frequency_weights(laplace, rng):
    for size in (7, 8, 9):
        x = rng.normal(size=size)
        for weights in (np.ones(size), (rng.uniform(size=size) < 0.6).astype(float), np.eye(size)[2]):
            weights[0] = 1.0  # at least one row
            median = laplace.weighted_median(jnp.asarray(x, jnp.float32), jnp.asarray(weights, jnp.float32))
            assert float(median) == pytest.approx(np.median(x[weights > 0]), abs=1e-6), (size, weights)
    # weight 2 is a row that appears twice
    x, weights = np.array([3.0, 1.0, 2.0, 10.0]), np.array([2.0, 1.0, 0.0, 1.0])
    assert float(laplace.weighted_median(jnp.asarray(x), jnp.asarray(weights))) == np.median([3.0, 3.0, 1.0, 10.0])
    # a padded slot may hold anything
    data = jnp.array([[1.0], [2.0], [4.0], [np.nan], [1e30]])
    params = laplace.fit(None, data, jnp.array([1.0, 1.0, 1.0, 0.0, 0.0]))
    assert (float(params.loc), float(params.scale)) == pytest.approx((2.0, 1.0))


def test_scale_ratio_is_the_monte_carlo_ratio(laplace, rng):
    """c(M) by quadrature against numpy's own median, independent of the family's code."""
    for m in (2, 5, 20):
        x = rng.laplace(size=(100_000, m))
        ratio = np.mean(np.abs(x - np.median(x, axis=1, keepdims=True)), axis=1)
        assert_z(ratio.mean(), ratio.std() / np.sqrt(ratio.size), laplace.scale_ratio(m), f"c({m})")
    assert laplace.scale_ratio(2) == pytest.approx(0.75)  # E|X1 - X2| / 2 for two standard Laplace draws


def test_laplace_example_agrees_with_what_is_known(laplace, tmp_path, capsys, monkeypatch):
    # the script registers its command for the whole process: keep it out of other tests'
    # registry (tests/test_studies.py lists the commands exactly)
    monkeypatch.setattr(studies, "_REGISTERED", {})
    out = laplace.main(["--chains", "400", "--generations", "10", "--samples", "20", "--out", str(tmp_path / "run")])
    assert "E[b_n]" in capsys.readouterr().out
    loc, scale, exact = out["loc"], out["scale"], out["exact"]
    # the weighted median of a symmetric sample is unbiased, generation after generation
    assert_z(loc["mean"][1:], loc["se"][1:], 2.0, "E[mu_n] = mu_0")
    # E[b_n] = b_0 c(M)^n shrinks every generation, and the chains agree with it (and
    # see it shrink: E[b_10] = 0.76, about 8 standard errors below b_0)
    assert np.all(np.diff(exact["scale_exact"]) < 0)
    assert_z(scale["mean"][1:], scale["se"][1:], exact["scale_exact"][1:], "E[b_n]")
    assert scale["mean"][-1] < scale["mean"][0] - 5 * scale["se"][-1]
    # the run folder of the published study: its check agrees and config.json rebuilds it
    folder = tmp_path / "run"
    for name in ("summary.csv", "check.csv", "report.md", "config.json"):
        assert (folder / name).is_file(), name
    assert out["rows"] and all(abs(row.z) <= 5 for row in out["rows"])
    assert "AGREES" in (folder / "report.md").read_text()
    config = json.loads((folder / "config.json").read_text())
    assert config["command"] == "laplace"
    assert laplace.LaplaceStudy.from_json(config["study"]) == out["study"]
    assert "laplace" in studies.commands()


def test_laplace_accumulate_keeps_the_location_and_masks_padding(laplace):
    """Under accumulate the fit sees a pool buffer with zero rows past the data (weight 0):
    counted, they would drag the median from mu_0 = 2 towards 0."""
    program = laplace.laplace_program(jc.DataPolicy("accumulate"), np.full(5, 20), laplace.laplace_p0(2.0, 1.0))
    result = jc.simulate(program, num_chains=400, seed=1)
    loc = result.summary("loc")
    assert_z(loc["mean"][1:], loc["se"][1:], 2.0, "accumulate: E[mu_n] = mu_0")


# ----------------------------------------------------------------- the NNX family


def test_nnx_example_trains_inside_fit(capsys):
    nnx_family = load("nnx_family")
    out = nnx_family.main(["--chains", "16", "--generations", "2", "--samples", "200"])
    assert "heldout_nll" in capsys.readouterr().out
    nll, gain = out["heldout_nll"]["mean"], out["fit_gain"]["mean"]
    # training lowers the loss from the starting network's (measured: by 1.51 +- 0.02 nats
    # at generation 1 with 32 chains)
    assert gain[1] > 1.0
    # and the trained model is close to p_0 on held-out points: 0.09 +- 0.01 nats above
    # p_0's own NLL at generation 1 (the estimation error of ~340 parameters from 200
    # points); a network trained for 1 step instead of 300 is 1.7 nats above
    assert nll[0] < nll[1] < nll[0] + 0.3
    assert np.all(np.isfinite(nll))

    # one fit, outside the engine: the sample mean matches the data's
    family, _ = nnx_family.density_family()
    data = nnx_family.sample_p0(jax.random.key(7), 2000)
    weights = jnp.ones(2000).at[1900:].set(0.0)
    params = jax.jit(family.fit)(None, data, weights)
    draws = family.sample(jax.random.key(8), params, 20_000)
    kept = np.asarray(data[:1900])
    # x1's Gaussian is fitted in closed form: its mean is the data's, up to the draws'
    # standard error (sd ~ 1 over 20,000 draws: 0.007)
    assert float(draws[:, 0].mean()) == pytest.approx(kept[:, 0].mean(), abs=5 * kept[:, 0].std() / np.sqrt(20_000))
    # x2's mean comes through the trained network: it differs from the data's by the
    # draws' error (0.77 / sqrt(20,000) = 0.005), by the gap between the fitted Gaussian's
    # and the data's own average of sin(2 x1) (sd 0.68 / sqrt(1900) = 0.016) and by what
    # 300 Adam steps leave of the fit: 0.1 is 5 of those 0.02 (measured: up to 0.04 over
    # 6 seeds); p_0's mean is 1 and a network trained for 1 step has a mean near 0.1
    assert float(draws[:, 1].mean()) == pytest.approx(kept[:, 1].mean(), abs=0.1)
    # a weight-0 row does not count: the fit without the padded rows ends at the same loss
    # (up to summation order, which 300 Adam steps carry to ~1e-3; the 100 padded rows,
    # read as (0, 0), move it by ~0.03 if counted)
    alone = jax.jit(family.fit)(None, data[:1900], jnp.ones(1900))
    np.testing.assert_allclose(np.asarray(params.losses), np.asarray(alone.losses), atol=0.01)
    # and whatever a padded slot holds, the fit is the same, bit for bit
    garbage = data.at[1900:].set(jnp.nan).at[1950:, 1].set(1e30)
    again = jax.jit(family.fit)(None, garbage, weights)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------- a family trained from Python


def test_host_example_trains_from_python_and_resumes(capsys):
    host_family = load("host_family")
    out = host_family.main(["--runs", "2", "--generations", "1", "--samples", "300"])  # asserts the resume itself
    printed = capsys.readouterr().out
    assert "resume:" in printed and "generation 1" in printed
    nll = out.trajectories["heldout_nll"]
    assert np.isnan(nll[0]).all() and np.isfinite(nll[1:]).all()
    # p_0's own held-out NLL is 1.42 (x1) + 0.21 (x2 | x1) = 1.63 nats; a trained curve is
    # within ~0.2 of it at generation 1 (measured 1.78 +- 0.02), an untrained one (f ~ 0,
    # residual sd ~ 1.2) near 3.0
    assert np.all(nll[1] < 2.0)
    epochs = out.trajectories["best_epoch"][1:]
    assert np.all((epochs >= 1) & (epochs <= 30))
    # the host fit drops weight-0 rows: padding changes nothing, bit for bit
    family, _ = host_family.curve_family(epochs=2)
    data = host_family.sample_p0(jax.random.key(3), 200)
    keys = jax.random.split(jax.random.key(4), 1)
    plain = family.fit_runs(keys, data[None], jnp.ones((1, 200)), None)
    padded = family.fit_runs(keys, jnp.concatenate([data, jnp.full((40, 2), jnp.nan)])[None],
                             jnp.concatenate([jnp.ones(200), jnp.zeros(40)])[None], None)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(padded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------- the token family


def test_token_example_tail_dies_under_replace_and_lives_under_accumulate(capsys):
    token_family = load("token_family")
    out = token_family.main(["--chains", "64", "--generations", "6"])
    assert "accumulate seen" in capsys.readouterr().out
    replace, accumulate = out["replace"]["seen"]["mean"], out["accumulate"]["seen"]["mean"]
    assert replace[0] == accumulate[0] == 32  # p_0 gives every token probability > 0
    assert np.all(np.diff(replace) <= 0) and replace[-1] < replace[1] - 2
    # generation 1 is fitted to the same D_0 under both policies (same seed): a padded
    # pool row (token 0, the rarest) counted by accumulate would show here
    assert accumulate[1] == replace[1]
    np.testing.assert_array_equal(accumulate[1:], accumulate[1])
    # per chain, not only on average: a token lost under replace never returns
    program = token_family.token_program("replace", 6, 32, 32, 8)
    seen = jc.simulate(program, num_chains=64, seed=0, record="trajectories").trajectories["seen"]
    assert np.all(np.diff(seen, axis=0) <= 0)


# ----------------------------------------------------------------- the page


def _excerpt_of(block: str, source: str) -> bool:
    """``block`` is a run of ``source``'s lines, up to a common indentation (a page shows
    the body of a function dedented)."""
    want = textwrap.dedent(block).strip("\n").splitlines()
    lines = source.splitlines()
    return any(textwrap.dedent("\n".join(lines[i:i + len(want)])).splitlines() == want
               for i in range(len(lines) - len(want) + 1))


def test_the_page_shows_the_scripts_own_code():
    """Every Python block of docs/own_family.md is a verbatim excerpt of an example, so
    the page cannot drift from the code that the tests above run."""
    page = (ROOT / "docs" / "own_family.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 8
    sources = [(EXAMPLES / f"{name}.py").read_text() for name in SCRIPTS]
    for block in blocks:
        assert any(_excerpt_of(block, source) for source in sources), f"not in any example:\n{block}"
    for name in SCRIPTS:
        assert f"examples/{name}.py" in page
