"""Every bad input is refused on the host with a message that names the parameter."""

import math

import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse import ConfigError


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples=1), "samples must be >= 2 \\(the unbiased estimator divides by M - 1\\)"),
    (dict(samples=0, estimator="mle"), "samples must be an integer >= 1"),
    (dict(samples=3, dim=3), "samples must be >= 4"),
    (dict(sigma=0.0), "sigma must be > 0"),
    (dict(sigma=-1.0), "sigma must be > 0"),
    (dict(sigma=math.nan), "sigma must be finite"),
    (dict(mean=math.inf), "mean must be finite"),
    (dict(dim=2, cov=[[1.0, 0.5], [0.4, 1.0]]), "cov must be symmetric"),
    (dict(dim=2, cov=[[1.0, 2.0], [2.0, 1.0]]), "cov must be positive definite"),
    (dict(dim=2, cov=[[1.0, math.nan], [math.nan, 1.0]]), "cov must be finite"),
    (dict(dim=2, cov=np.eye(3)), "cov must be 2x2"),
    (dict(regime="mix:0.5,0.6,-0.1"), "mixing proportions .* non-negative"),
    (dict(regime="mix:0.5,0.2,0.2"), "must sum to 1"),
    (dict(regime="mix:0.5,0.5"), "three proportions"),
    (dict(regime="mix:a,b,c"), "could not read"),
    (dict(regime="fresh-real:1.5"), "fraction must lie in \\[0, 1\\]"),
    (dict(regime="real-fraction"), "needs a fraction"),
    (dict(regime="real-fraction:0.9", schedule="linear:10"), "needs .* distinct real points"),
    (dict(regime="recycle"), "unknown regime 'recycle'"),
    (dict(estimator="bayes"), "unknown estimator 'bayes'"),
    (dict(path="fast"), "unknown path 'fast'"),
    (dict(generations=-1), "generations must be an integer >= 0"),
    (dict(generations=2.5), "generations must be an integer >= 0"),
    (dict(regime="accumulate-subsample", path="sufficient"), "needs path='data'"),
    (dict(initial=jc.student_t_initial(5.0), path="sufficient", regime="fresh-real:0.5"),
     "with a non-Gaussian p0 runs the regimes replace, accumulate"),
])
def test_bad_study(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        jc.gaussian_study(**{"samples": 10, "generations": 3, **kwargs})


def test_initial_distributions_refuse_bad_parameters():
    with pytest.raises(ConfigError, match="df must be > 2"):
        jc.student_t_initial(2.0)
    with pytest.raises(ConfigError, match="weights must sum to 1"):
        jc.mixture_initial([0.5, 0.6], [-4, 4], [1, 1])
    with pytest.raises(ConfigError, match="sds must be positive"):
        jc.mixture_initial([0.5, 0.5], [-4, 4], [1, -1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_chains=0), "chains must be an integer >= 1"),
    (dict(num_generations=-2), "generations must be an integer >= 0"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(record="everything"), "unknown record"),
    (dict(chunk_size=0), "chunk_size must be an integer >= 1"),
    (dict(num_devices=99), "devices must be <= 1"),
    (dict(quantile_metrics=("nope",)), "quantile metric 'nope'"),
])
def test_bad_run_settings(kwargs, match):
    program = jc.gaussian_study(samples=10, generations=2).program()
    with pytest.raises(ConfigError, match=match):
        jc.simulate(program, **{"num_chains": 4, "num_generations": 2, **kwargs})


def test_mle_with_one_sample_is_valid_and_collapses_at_once():
    study = jc.gaussian_study(samples=1, generations=2, estimator="mle")
    result = jc.simulate(study.program(), num_chains=8, num_generations=2, seed=0, record="trajectories")
    assert np.all(result.params.cov[1:] == 0)
    assert np.all(np.isinf(result.trajectories["kl"][1:]))  # infinite, not NaN
    assert not np.any(np.isnan(result.trajectories["w2_risk"]))


def test_seed_and_schedule_arguments_are_checked():
    program = jc.gaussian_study(samples=10, generations=2).program()
    with pytest.raises(ConfigError, match="seed must be an integer in \\[0, 2\\*\\*32\\)"):
        jc.simulate(program, num_chains=4, num_generations=2, seed=2**32 + 5)
    with pytest.raises(ConfigError, match="constant takes no argument"):
        jc.gaussian_study(samples=10, generations=2, schedule="constant:500")


@pytest.mark.parametrize("args, match", [
    (("normal", 0.0, -2.0, 1), "sigma must be > 0"),  # sigma**2 would otherwise hide the sign
    (("laplace", 0.0, 0.0, 1), "sigma must be > 0"),
    (("normal", 0.0, 1.0, 0), "dim must be an integer >= 1"),
    (("student-t:5", 0.0, 1.0, 2), "one-dimensional"),
])
def test_parse_initial_validates_its_own_arguments(args, match):
    from jaxcollapse.initial import parse_initial

    with pytest.raises(ConfigError, match=match):
        parse_initial(*args)
