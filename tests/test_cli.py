"""The command line end to end on small runs."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from jaxcollapse.cli import main

SMALL = ["--chains", "300", "--generations", "6", "--samples", "20", "--figure-samples", "20", "--no-progress"]


def _read(path):
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_gaussian_run_writes_a_complete_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["gaussian", *SMALL, "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "AGREES   E[w2_risk]       exact" in printed and "Verdicts" in printed
    for name in ("summary.csv", "config.json", "check.csv", "report.md", "risk.png", "trajectories.png"):
        assert (out / name).is_file(), name
    rows = _read(out / "summary.csv")
    assert len(rows) == 7
    required = ["generation", "samples", "w2_risk_mean", "w2_risk_se", "w2_risk_exact", "w2_risk_paper",
                "w2_risk_lower_bound", "var_x_mean", "var_x_se", "var_x_exact", "sigma2_mean", "sigma2_se", "sigma2_exact"]
    assert all(column in rows[0] for column in required)
    assert rows[0]["samples"] == "" and rows[3]["samples"] == "20"
    assert float(rows[0]["w2_risk_mean"]) == 0.0
    assert float(rows[6]["w2_risk_exact"]) == pytest.approx(1.5 * 6 / 20, rel=0.05)
    z = (float(rows[6]["w2_risk_mean"]) - float(rows[6]["w2_risk_exact"])) / float(rows[6]["w2_risk_se"])
    assert abs(z) <= 5
    config = json.loads((out / "config.json").read_text())
    assert config["study"]["regime"]["kind"] == "replace" and config["run"]["chains"] == 300


def test_refuses_to_overwrite_a_finished_run(tmp_path, capsys):
    out = tmp_path / "run"
    arguments = ["gaussian", *SMALL, "--no-figures", "--out", str(out)]
    assert main(arguments) == 0
    assert main(arguments) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(arguments + ["--force"]) == 0


# on demand (-m slow): the GMM CLI test and the resume tests check bit-for-bit reruns in the default run
@pytest.mark.slow
def test_rerun_reproduces_bit_for_bit(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["gaussian", *SMALL, "--no-figures", "--regime", "mix:0.7,0.2,0.1", "--schedule", "linear:3",
                 "--estimator", "mle", "--seed", "5", "--out", str(out)]) == 0
    assert main(["rerun", str(out), "--out", str(tmp_path / "again"), "--no-figures"]) == 0
    assert "identical" in capsys.readouterr().out
    assert (out / "summary.csv").read_bytes() == (tmp_path / "again" / "summary.csv").read_bytes()


@pytest.mark.parametrize("flags, match", [
    (["--samples", "1"], "samples must be >= 2"),
    (["--sigma", "-1"], "sigma must be > 0"),
    (["--regime", "bogus"], "unknown regime"),
    (["--estimator", "bogus"], "unknown estimator"),
    (["--chains", "0"], "chains must be an integer >= 1"),
    (["--generations", "-1"], "generations must be an integer >= 0"),
    (["--p0", "student-t:1.5"], "df must be > 2"),
    (["--schedule", "power:x"], "needs a number"),
])
def test_bad_flags_give_clear_errors(tmp_path, capsys, flags, match):
    assert main(["gaussian", "--no-figures", "--out", str(tmp_path / "x"), *flags]) == 2
    error = capsys.readouterr().err
    assert "jaxcollapse: error:" in error and __import__("re").search(match, error), error
    assert "Traceback" not in error


def test_zero_generations_and_console_script(tmp_path):
    out = tmp_path / "zero"
    completed = subprocess.run(
        [sys.executable, "-m", "jaxcollapse.cli", "gaussian", "--generations", "0", "--chains", "5", "--no-figures",
         "--out", str(out)], capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    rows = _read(out / "summary.csv")
    assert len(rows) == 1 and rows[0]["generation"] == "0"


def test_non_gaussian_p0_runs_on_the_data_path(tmp_path):
    out = tmp_path / "t"
    assert main(["gaussian", *SMALL, "--no-figures", "--p0", "mixture:8", "--out", str(out)]) == 0
    rows = _read(out / "summary.csv")
    assert rows[1]["w2_risk_exact"] == ""  # no formula for a non-Gaussian p0
    assert json.loads((out / "config.json").read_text())["study"]["initial"]["kind"] == "mixture"
    # p0's variance is 1 + 16 = 17; generation 1 fits it without bias
    assert float(rows[1]["sigma2_mean"]) == pytest.approx(17, abs=5 * float(rows[1]["sigma2_se"]))


def test_rerun_refuses_its_own_folder_and_force_clears_old_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["gaussian", *SMALL, "--figure-samples", "", "--out", str(out)]) == 0  # risk.png only
    assert (out / "risk.png").is_file()
    assert main(["rerun", str(out), "--out", str(out), "--force", "--no-figures"]) == 2
    assert "must differ" in capsys.readouterr().err
    assert main(["gaussian", *SMALL, "--no-figures", "--force", "--out", str(out)]) == 0
    assert not (out / "risk.png").exists()  # no stale figure from the earlier run


def test_config_keeps_mixing_proportions_exactly(tmp_path):
    from jaxcollapse.runs import load_config

    out = tmp_path / "mix"
    assert main(["gaussian", *SMALL, "--no-figures", "--regime", "mix:0.3333333,0.3333333,0.3333334",
                 "--out", str(out)]) == 0
    study, _, _ = load_config(out)
    assert study.policy.mixing == (0.3333333, 0.3333333, 0.3333334)


def test_help_shows_every_default():
    from jaxcollapse import studies

    for command in studies.commands().values():
        for option in command.options:
            if option.default is not None and option.parse is not None:
                assert "default" in option.help_text, (command.name, option.name)
    seed = next(option for option in studies.command("gaussian").options if option.name == "seed")
    assert seed.help_text.endswith("(default 0)")


def test_the_risk_figure_draws_the_monte_carlo_over_theory_with_one_entry_per_curve():
    import matplotlib

    matplotlib.use("Agg")
    import jaxcollapse as jc
    from jaxcollapse.plots import plot_risk

    study = jc.gaussian_study(samples=10, generations=4)
    result = jc.simulate(study.program(), num_chains=256, seed=0, quantile_metrics=("w2_risk",))
    figure = plot_risk(study, result)
    mean_axis = figure.axes[0]
    lines = {line.get_label(): line for line in mean_axis.get_lines()}
    monte_carlo = next(line for label, line in lines.items() if label.startswith("Monte Carlo"))
    np.testing.assert_array_equal(monte_carlo.get_ydata(), result.summary("w2_risk")["mean"][1:])
    theory = [line for label, line in lines.items() if not label.startswith("Monte Carlo")]
    assert theory and all(line.get_zorder() < monte_carlo.get_zorder() for line in theory)
    labels = [line.get_label() for line in theory]
    assert "exact" in labels and not any(label.endswith("(exact)") for label in labels)
    exact = next(c for c in study.theory_curves() if c.quantity == "E[w2_risk]" and c.formula == "exact")
    np.testing.assert_array_equal(lines["exact"].get_ydata(), exact.values[1:])
