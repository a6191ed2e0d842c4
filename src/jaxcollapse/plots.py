"""Figures that reproduce the paper's Gaussian plots (Figures 4-6) and the risk curves.

Example:
    >>> import jaxcollapse as jc
    >>> from jaxcollapse.plots import plot_risk
    >>> study = jc.gaussian_study(samples=100, generations=10)
    >>> result = jc.simulate(study.program(), num_chains=500, num_generations=10, seed=0)
    >>> figure = plot_risk(study, result)
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # figures are written to files; never open a window
import matplotlib.pyplot as plt
import numpy as np

from .check import theory_curves
from .engine import simulate
from .study import GaussianStudy

__all__ = ["plot_risk", "plot_trajectories", "trajectory_runs", "FIGURE_REGIMES"]

FIGURE_REGIMES = ("replace", "accumulate-subsample", "accumulate")
_STYLES = {"exact": "-", "expansion": "--", "lower bound": ":"}
_COLOURS = ("black", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive")


def _theory_lines(axis, study, quantity, generations):
    matching = [curve for curve in theory_curves(study) if curve.quantity == quantity]
    for curve, colour in zip(matching, _COLOURS):
        axis.plot(generations[1:], curve.values[1:], _STYLES[curve.kind], color=colour, lw=1.5,
                  label=f"{curve.formula} ({curve.kind})")


def plot_risk(study: GaussianStudy, result, quantiles=(0.05, 0.95)):
    """E[R_W2] and Var[R_W2] per generation: Monte Carlo with a +-2 s.e. band, the chains'
    5-95 % band where recorded, and every theory curve that applies."""
    generations = np.arange(result.num_generations + 1)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    summary = result.summary("w2_risk")
    axis = axes[0]
    if result.num_generations:
        try:
            band = result.quantiles("w2_risk", quantiles)
            axis.fill_between(generations[1:], band[1:, 0], band[1:, -1], color="tab:blue", alpha=0.12,
                              label=f"chains {quantiles[0]:.0%}-{quantiles[-1]:.0%}")
        except ValueError:
            pass
        mean, se = summary["mean"], summary["se"]
        axis.fill_between(generations[1:], (mean - 2 * se)[1:], (mean + 2 * se)[1:], color="tab:blue", alpha=0.35)
        axis.plot(generations[1:], mean[1:], color="tab:blue", lw=2, label=f"Monte Carlo ({result.num_chains} chains) +-2 s.e.")
        _theory_lines(axis, study, "E[w2_risk]", generations)
        axis.set_xscale("log")
        axis.set_yscale("log")
    axis.set_xlabel("generation")
    axis.set_ylabel(r"$E[R_{W_2}]$")
    axis.set_title(f"W2 risk: {study.policy.describe()}, {study.schedule.describe()}, {study.estimator}")
    axis.legend(fontsize=7)
    axis = axes[1]
    if result.num_generations:
        variance, variance_se = summary["var"], summary["var_se"]
        axis.fill_between(generations[1:], (variance - 2 * variance_se)[1:], (variance + 2 * variance_se)[1:],
                          color="tab:orange", alpha=0.35)
        axis.plot(generations[1:], variance[1:], color="tab:orange", lw=2, label="Monte Carlo +-2 s.e.")
        _theory_lines(axis, study, "Var[w2_risk]", generations)
        axis.set_xscale("log")
        axis.set_yscale("log")
    axis.set_xlabel("generation")
    axis.set_ylabel(r"Var$[R_{W_2}]$")
    axis.set_title("variance of the W2 risk across chains")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def trajectory_runs(study: GaussianStudy, sample_sizes, seed: int = 0, regimes=FIGURE_REGIMES):
    """One chain per (regime, M), as in the authors' notebook: {regime: {M: params}}."""
    from .policies import parse_policy
    from .schedules import constant

    runs = {}
    for regime in regimes:
        runs[regime] = {}
        for index, m in enumerate(sample_sizes):
            variant = GaussianStudy(
                generations=study.generations, schedule=constant(m), policy=parse_policy(regime),
                estimator=study.estimator, initial=study.initial, path="auto",
            )
            # independent chains per M (one seed each), as in the paper's figures; the same
            # seed for every M would show the same path scaled by 1/sqrt(M)
            result = simulate(variant.program(), num_chains=1, num_generations=study.generations, seed=seed + 1 + index,
                              record="trajectories", progress=False)
            runs[regime][m] = result.params
    return runs


def plot_trajectories(study: GaussianStudy, runs):
    """Figures 4-6 analogue: mu_n and sigma_n of single chains, one column per regime."""
    regimes = list(runs)
    figure, axes = plt.subplots(2, len(regimes), figsize=(5 * len(regimes), 7), sharex=True, squeeze=False)
    mean0 = float(study.initial.mean[0])
    sigma0 = float(np.sqrt(study.initial.cov[0, 0]))
    for column, regime in enumerate(regimes):
        for m, params in runs[regime].items():
            generations = np.arange(params.mean.shape[0])
            axes[0, column].plot(generations + 1, params.mean[:, 0, 0], lw=1, label=f"M = {m}")
            axes[1, column].plot(generations + 1, np.sqrt(params.cov[:, 0, 0, 0]), lw=1, label=f"M = {m}")
        axes[0, column].axhline(mean0, color="k", lw=0.8, ls=":")
        axes[1, column].axhline(sigma0, color="k", lw=0.8, ls=":")
        axes[0, column].set_title(regime)
        axes[1, column].set_xlabel("generation + 1")
        axes[1, column].set_xscale("log")
    axes[0, 0].set_ylabel(r"$\mu_n$")
    axes[1, 0].set_ylabel(r"$\sigma_n$")
    axes[0, -1].legend(fontsize=8)
    figure.suptitle(f"Single chains, {study.estimator} estimator (paper Figures 4-6)")
    figure.tight_layout()
    return figure
