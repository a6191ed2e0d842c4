"""The gmm, kde and regression commands end to end on small runs."""

import csv
import json

import numpy as np
import pytest

from jaxcollapse.cli import main


def _read(path):
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_gmm_run_writes_its_folder_and_reruns_bit_for_bit(tmp_path, capsys):
    out = tmp_path / "gmm"
    flags = ["gmm", "--chains", "16", "--generations", "4", "--samples", "60", "--iterations", "3",
             "--heldout", "50", "--figure-samples", "60", "--no-progress", "--out", str(out)]
    assert main(flags) == 0
    for name in ("summary.csv", "config.json", "check.csv", "report.md", "figure7.png", "figure13.png", "metrics.png"):
        assert (out / name).is_file(), name
    rows = _read(out / "summary.csv")
    assert len(rows) == 5
    for column in ("l2_distance_mean", "l2_distance_se", "l2_distance_q0.5", "heldout_loglik_mean", "loglik_change_mean",
                   "collapsed_mean", "weight_0_mean", "weight_1_mean", "cov_logdet_0_mean"):
        assert column in rows[0], column
    assert float(rows[0]["l2_distance_mean"]) < 1e-9 and float(rows[4]["l2_distance_mean"]) > 1e-6
    assert json.loads((out / "config.json").read_text())["command"] == "gmm"
    capsys.readouterr()
    assert main(["rerun", str(out), "--no-figures"]) == 0
    assert "identical" in capsys.readouterr().out


def test_regression_check_agrees_with_the_published_formula(tmp_path, capsys):
    out = tmp_path / "regression"
    assert main(["regression", "--chains", "2000", "--generations", "5", "--samples", "30", "--dim", "4",
                 "--regime", "accumulate", "--no-progress", "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "AGREES   E[test_error]" in printed
    rows = _read(out / "summary.csv")
    exact = [float(r["test_error_exact"]) for r in rows]
    # sigma^2 d / (T - d - 1) * sum_{i <= n} 1 / i^2, the published accumulate formula
    expected = [4 / 25 * sum(1 / i**2 for i in range(1, n + 1)) for n in range(6)]
    np.testing.assert_allclose(exact, expected, rtol=1e-12)


def test_regression_reads_a_design_file(tmp_path, capsys):
    design = np.random.default_rng(0).normal(size=(20, 3))
    np.savetxt(tmp_path / "x.csv", design, delimiter=",")
    out = tmp_path / "fixed"
    assert main(["regression", "--chains", "500", "--generations", "3", "--design-file", str(tmp_path / "x.csv"),
                 "--no-progress", "--no-figures", "--out", str(out)]) == 0
    rows = _read(out / "summary.csv")
    trace = np.trace(np.linalg.inv(design.T @ design))
    assert float(rows[3]["test_error_exact"]) == pytest.approx(3 * trace, rel=1e-6)


@pytest.mark.parametrize("flags, match", [
    (["gmm", "--components", "0"], "components must be an integer >= 1"),
    (["gmm", "--samples", "1", "--components", "2"], "samples must be >= components"),
    (["gmm", "--covariance", "tied"], "covariance_type"),
    (["regression", "--samples", "5", "--dim", "4"], "T"),
    (["regression", "--regime", "mix:0.5,0.5,0"], "replace"),
    (["regression", "--design-file", "/nonexistent.csv"], "design-file"),
])
def test_bad_flags_give_clear_errors(tmp_path, capsys, flags, match):
    assert main([*flags, "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert match in capsys.readouterr().err


def test_kde_check_agrees_with_the_exact_variance_and_not_with_adding_h2(tmp_path, capsys):
    out = tmp_path / "kde"
    assert main(["kde", "--chains", "2000", "--generations", "6", "--samples", "10", "--bandwidth", "0.5",
                 "--no-progress", "--no-figures", "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "AGREES   E[variance]" in printed
    assert "DISAGREES E[variance]" in printed  # the naive V_0 + n h^2 ignores the (1 - 1/M) shrink
    rows = _read(out / "summary.csv")
    assert {"variance_mean", "variance_se", "variance_exact", "heldout_nll_mean", "w2_mean"} <= set(rows[0])


def test_figures_start_at_the_first_fitted_model_and_keep_component_colours():
    import matplotlib

    matplotlib.use("Agg")
    import jaxcollapse as jc
    from jaxcollapse.plots import component_colours, plot_metrics

    study = jc.kde_study(samples=20, generations=2, heldout=32)
    result = jc.simulate(study.program(), num_chains=16, seed=0)
    figure = plot_metrics(study, result)
    for axis in figure.axes:
        if not axis.get_title():
            continue
        line = next(line for line in axis.get_lines() if line.get_label() == "Monte Carlo mean")
        np.testing.assert_array_equal(line.get_xdata(), [1, 2])  # generation 0 (p_0 itself) not drawn
        np.testing.assert_array_equal(line.get_ydata(), result.summary(axis.get_title())["mean"][1:])
    # GMM snapshots colour a component by its position: the same two components numbered
    # either way get the same colours (plot_gmm_snapshots draws with component_colours)
    labels = np.array([0, 0, 1])
    assert component_colours(np.array([[-2.0, 0.0], [2.0, 1.0]]), labels).tolist() == [0, 0, 1]
    assert component_colours(np.array([[2.0, 1.0], [-2.0, 0.0]]), 1 - labels).tolist() == [0, 0, 1]
