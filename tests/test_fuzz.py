"""Fuzzing (hypothesis): the study factories and every command's settings, given random
types and values, either build a study or raise a ConfigError naming what is wrong;
never a raw traceback (TypeError, ValueError, AttributeError, OverflowError, numpy's). The examples are
derandomized (a fixed seed, as every statistical test here): CI sees the same cases each run;
run with ``--hypothesis-seed=N`` to explore others.

The settings are drawn as the CLI hands them over (text) and as Python callers do
(numbers, None, lists, dicts, NaN, inf, huge integers). Building a study is checked, not
running it: the runs' own limits (memory, ranges) are tested in test_integrity.py."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxcollapse as jc
from jaxcollapse import ConfigError, studies

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([0, 1, 2, 3, 10, 2**31, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 0.5, 1e-300, 1e300, math.nan]),
    st.text(max_size=12), st.sampled_from(["replace", "accumulate", "mix:1,0,0", "list:5,6", "linear:2", "uniform",
                                           "two-blobs:3", "scott", "fixed", "zipf:1.1", "probs:0.5,0.5", "auto"]),
    st.lists(st.integers(-5, 60), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

FACTORIES = {
    "gaussian_study": ("samples", "generations", "schedule", "regime", "estimator", "dim", "mean", "sigma", "cov",
                       "path"),
    "discrete_study": ("samples", "generations", "family", "states", "init", "schedule", "regime", "smoothing",
                       "tail_threshold", "path", "per_state"),
    "gmm_study": ("samples", "generations", "components", "covariance_type", "iterations", "init", "reg_covar",
                  "kmeans_iterations", "dim", "schedule", "regime", "heldout", "weight_threshold",
                  "variance_threshold"),
    "kde_study": ("samples", "generations", "bandwidth", "schedule", "regime", "dim", "sigma", "heldout",
                  "heldout_seed"),
    "regression_study": ("samples", "dim", "generations", "noise", "regime", "design", "design_seed", "path"),
}
SMALL = {"samples": 10, "generations": 2}  # a fuzzed call starts from a small study


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_study_factories_build_or_name_the_problem(data):
    name = data.draw(st.sampled_from(sorted(FACTORIES)))
    keys = data.draw(st.lists(st.sampled_from(FACTORIES[name]), unique=True, min_size=1, max_size=3))
    kwargs = {**SMALL, **{key: data.draw(VALUES, label=key) for key in keys}}
    try:
        study = getattr(jc, name)(**kwargs)
    except ConfigError:
        return
    assert type(study).from_json(study.to_json()) == study  # what was accepted is a study


CHAIN_COMMANDS = ("gaussian", "discrete", "gmm", "kde", "regression")


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_command_settings_as_text_build_or_name_the_problem(data):
    command = studies.command(data.draw(st.sampled_from(CHAIN_COMMANDS + ("vae", "lm"))))
    names = [option.name for option in command.options if option.name not in ("out", "force")]
    keys = data.draw(st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=3))
    given_values = {key: data.draw(st.one_of(st.text(max_size=10), VALUES.map(str)), label=key) for key in keys}
    try:
        values = command.values({**({"chains": "16", "generations": "2"} if command.chains else {}), **given_values})
        command.build(values)
    except ConfigError:
        return


@pytest.mark.parametrize("value", [None, "x", 3.5, -1, [1, 2], {"a": 1}, math.nan, 2**70])
def test_simulate_names_wrong_arguments(value):
    program = jc.gaussian_study(samples=10, generations=2).program()
    names = ("num_chains", "seed") if value is None or value == 2**70 else (
        "num_chains", "seed", "chunk_size", "segment_length", "checkpoint_every")  # None, or more than needed: fine
    for name in names:
        with pytest.raises(ConfigError):
            jc.simulate(program, **{"num_chains": 16, name: value})


# The command line run end to end: flags of random text, numbers, specs and junk. Values are
# either refused by name or small enough to run (no valid size that would run for minutes).
FLAG_VALUES = st.one_of(
    st.text(max_size=8), st.integers(-3, 6).map(str), st.floats(-10, 10).map(str),
    st.sampled_from(["", " ", "-1", "0", "nan", "inf", "-inf", "1e300", "1e-300", "2.5", "4294967296", "2**31",
                     "[1, 2]", "none", "replace", "accumulate", "accumulate-subsample", "mix:0.5,0.5,0",
                     "real-fraction:0.5", "fresh-real:2", "list:4,5,6", "linear:1", "geometric:2", "power:0.5",
                     "uniform", "zipf:1.2", "probs:0.2,0.8", "two-blobs:3", "student-t:3", "mixture:4", "shared",
                     "per-chain", "data", "sufficient", "auto", "mle", "unbiased", "scott", "previous", "full",
                     "host", "scan", "0.1,0.9"]))
SKIPPED_FLAGS = {"out", "force", "distributed", "coordinator", "num_processes", "process_id", "progress", "x64",
                 "design_file"}


def _command_line_fuzz(data, tmp_path, capsys):
    from jaxcollapse.cli import main

    command = studies.command(data.draw(st.sampled_from(CHAIN_COMMANDS)))
    options = {option.name: option for option in command.options if option.name not in SKIPPED_FLAGS}
    chosen = data.draw(st.lists(st.sampled_from(sorted(options)), unique=True, min_size=1, max_size=2))
    argv = [command.name, "--chains", "16", "--generations", "2", "--samples", "20", "--no-figures", "--no-progress"]
    for name in chosen:
        flag = "--" + name.replace("_", "-")
        if options[name].parse is None:  # an on/off switch
            argv.append(flag)
        else:
            argv += [flag, data.draw(FLAG_VALUES, label=name)]
    folder = tmp_path / f"run-{_command_line_fuzz.count}"
    _command_line_fuzz.count += 1
    try:
        code = main(argv + ["--out", str(folder)])
    except SystemExit as exit:  # argparse's own refusals (a flag without its value)
        code = exit.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, err)  # 1 is "a bug", with a traceback in error.log
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert err.startswith("jaxcollapse: error: ") or "usage:" in err, (argv, err)


_command_line_fuzz.count = 0


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_command_line_runs_or_names_the_problem(data, tmp_path, capsys):
    _command_line_fuzz(data, tmp_path, capsys)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_command_line_runs_or_names_the_problem_many_times(data, tmp_path, capsys):
    _command_line_fuzz(data, tmp_path, capsys)
