"""Figures that reproduce the paper's Gaussian plots (Figures 4-6) and the risk curves.

Examples:
    >>> import jaxcollapse as jc
    >>> from jaxcollapse.plots import plot_risk
    >>> study = jc.gaussian_study(samples=100, generations=10)
    >>> result = jc.simulate(study.program(), num_chains=500, num_generations=10, seed=0)
    >>> figure = plot_risk(study, result)
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files; never open a window
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np

from .check import theory_curves
from .engine import simulate

__all__ = [
    "plot_risk", "plot_trajectories", "trajectory_runs", "FIGURE_REGIMES", "plot_resampled_histogram",
    "plot_discrete_collapse", "plot_absorption_times", "write_discrete_figures", "plot_metrics",
    "plot_gmm_snapshots", "plot_gmm_l2", "write_study_figures", "GMM_SNAPSHOTS", "write_vae_figures",
]

FIGURE_REGIMES = ("replace", "accumulate-subsample", "accumulate")
_STYLES = {"exact": "-", "expansion": "--", "lower bound": ":", "upper bound": "-."}
_COLOURS = ("black", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive")


def integer_generations(axis) -> None:
    """Whole-number ticks on a generation axis (matplotlib would place 0.5 between two)."""
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _theory_lines(axis, study, quantity, generations):
    matching = [curve for curve in theory_curves(study) if curve.quantity == quantity]
    for curve, colour in zip(matching, _COLOURS):
        # one legend entry per curve, its kind said once ("exact", not "exact (exact)");
        # drawn under the Monte Carlo line, which must stay visible where they agree
        label = curve.formula if curve.formula == curve.kind else f"{curve.formula} ({curve.kind})"
        axis.plot(generations[1:], curve.values[1:], _STYLES[curve.kind], color=colour, lw=1.2, zorder=2,
                  label=label)


def plot_risk(study, result, quantiles=(0.05, 0.95)):
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
        axis.plot(generations[1:], mean[1:], color="tab:blue", lw=2.5, alpha=0.8, zorder=3,
                  label=f"Monte Carlo ({result.num_chains} chains) +-2 s.e.")
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
        axis.plot(generations[1:], variance[1:], color="tab:orange", lw=2.5, alpha=0.8, zorder=3,
                  label="Monte Carlo +-2 s.e.")
        _theory_lines(axis, study, "Var[w2_risk]", generations)
        axis.set_xscale("log")
        axis.set_yscale("log")
    axis.set_xlabel("generation")
    axis.set_ylabel(r"Var$[R_{W_2}]$")
    axis.set_title("variance of the W2 risk across chains")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def trajectory_runs(study, sample_sizes, seed: int = 0, regimes=FIGURE_REGIMES):
    """One chain per (regime, M), as in the authors' notebook: {regime: {M: params}}."""
    import dataclasses

    from .policies import parse_policy
    from .schedules import constant

    runs = {}
    for regime in regimes:
        runs[regime] = {}
        for index, m in enumerate(sample_sizes):
            variant = dataclasses.replace(study, schedule=constant(m), policy=parse_policy(regime), path="auto")
            # independent chains per M (one seed each), as in the paper's figures; the same
            # seed for every M would show the same path scaled by 1/sqrt(M)
            result = simulate(variant.program(), num_chains=1, num_generations=study.generations, seed=seed + 1 + index,
                              record="trajectories", progress=False)
            runs[regime][m] = result.params
    return runs


def plot_trajectories(study, runs):
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


def plot_resampled_histogram(study, seed: int = 0):
    """The paper's Figure 3: p_0 and one resampled histogram of M_0 draws, as counts on a
    log axis, with the cut-off 1/M below which a state expects less than one draw."""
    p0 = study.p0
    m = int(study.sizes[0])
    counts = np.random.default_rng(seed).multinomial(m, p0)
    grid = np.asarray(study.initial.grid)
    width = float(np.min(np.diff(grid))) if len(grid) > 1 else 1.0
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True, sharey=True)
    for ax, values, title in ((axes[0], m * p0, "p0 (expected counts of M draws)"),
                              (axes[1], counts.astype(float), f"after resampling M = {m} draws")):
        ax.bar(grid, np.where(values > 0, values, np.nan), width=width, color="C0")
        ax.axhline(1.0, color="C3", linestyle="--", label="p = 1/M (one expected draw)")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("state")
    axes[0].set_ylabel("count")
    axes[0].legend()
    lost = np.sum(p0[(counts == 0) & (p0 > 0)])
    figure.suptitle(f"{study.initial.describe()}: {int(np.sum((counts == 0) & (p0 > 0)))} states lost, p0-mass {lost:.3g}")
    figure.tight_layout()
    return figure


def plot_discrete_collapse(study, result):
    """Support size and heterozygosity (rate and extinction for Poisson) per generation,
    Monte Carlo mean +- 2 standard errors against every scalar formula."""
    names = ("rate", "extinct") if study.kind == "poisson" else ("support", "heterozygosity", "absorbed")
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4))
    generations = np.arange(result.num_generations + 1)
    curves = [c for c in theory_curves(study) if c.values.ndim == 1]
    for ax, name in zip(axes, names):
        summary = result.summary(name)
        ax.plot(generations, summary["mean"], color="C0", label="Monte Carlo")
        ax.fill_between(generations, summary["mean"] - 2 * summary["se"], summary["mean"] + 2 * summary["se"],
                        color="C0", alpha=0.3)
        for index, curve in enumerate(c for c in curves if c.quantity == f"E[{name}]"):
            ax.plot(generations, curve.values, linestyle="--", marker="." if np.isnan(curve.values).any() else None,
                    color=f"C{index + 1}", label=f"{curve.formula} ({curve.kind})")
        ax.set_xlabel("generation")
        ax.set_title(f"E[{name}]")
        ax.legend(fontsize=7)
    figure.suptitle(f"{study.kind} chain, {study.initial.describe()}, regime {study.policy.describe()}, "
                    f"{result.num_chains} chains")
    figure.tight_layout()
    return figure


def plot_absorption_times(study, times: np.ndarray):
    """Histogram of the chains' absorption generations against the exact law (small
    problems) and Kimura's mean."""
    from .theory import discrete as theory

    figure, ax = plt.subplots(figsize=(7, 4))
    absorbed = times[times >= 0]
    top = study.generations
    ax.hist(absorbed, bins=np.arange(top + 2) - 0.5, density=False, color="C0", alpha=0.6,
            label=f"Monte Carlo ({absorbed.size} of {times.size} chains absorbed)")
    sizes = study.sizes
    if study.kind != "poisson" and len(sizes) and np.all(sizes == sizes[0]) and not study.smoothing \
            and study.policy.kind == "replace":
        m = int(sizes[0])
        live = int(np.sum(study.p0 > 0))
        if math.comb(m + live - 1, live - 1) <= 5_000:
            exact = theory.absorption_time_exact(study.p0, m, g_max=top)
            ax.plot(np.arange(top + 1), exact["pmf"] * times.size, color="C3", label="exact (fundamental matrix)")
            ax.axvline(exact["mean"], color="C3", linestyle=":", label=f"exact mean {exact['mean']:.1f}")
        ax.axvline(theory.kimura_mean_absorption_time(study.p0, m), color="C2", linestyle="--",
                   label="Kimura diffusion mean")
    ax.set_xlabel("absorption generation")
    ax.set_ylabel("chains")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def write_discrete_figures(study, settings, result, folder) -> list[str]:
    names = []
    figures = []
    if study.kind != "poisson" and study.generations:
        figures.append(("figure3.png", plot_resampled_histogram(study, settings.seed)))
    figures.append(("collapse.png", plot_discrete_collapse(study, result)))
    figures.append(("absorption.png", plot_absorption_times(study, result.final["absorption_generation"])))
    for name, figure in figures:
        figure.savefig(Path(folder) / name, dpi=110)
        plt.close(figure)
        names.append(name)
    return names


def plot_metrics(study, result, metrics=None):
    """Every scalar metric's mean over generations with a +-2 standard-error band, and
    each formula for its mean (solid: exact, dashed: expansion)."""
    names = [m for m in (metrics or result.metric_names) if result.summary(m)["mean"].ndim == 1][:6]
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    generations = np.arange(result.num_generations + 1)
    for axis, name in zip(axes.flat, names):
        # from generation 1, the first fitted model: generation 0 is p_0 itself, where a
        # metric of a fit is a placeholder (a spike at the start of every curve)
        summary = {key: value[1:] for key, value in result.summary(name).items()}
        axis.plot(generations[1:], summary["mean"], color="tab:blue", lw=2, zorder=3, label="Monte Carlo mean")
        axis.fill_between(generations[1:], summary["mean"] - 2 * summary["se"], summary["mean"] + 2 * summary["se"],
                          color="tab:blue", alpha=0.25, lw=0)
        _theory_lines(axis, study, f"E[{name}]", generations)
        integer_generations(axis)
        axis.set_xlabel("generation")
        axis.set_title(name)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    figure.suptitle(f"{study.command}: {result.num_chains} chains")
    figure.tight_layout()
    return figure


GMM_SNAPSHOTS = (0, 50, 100, 150, 200, 350, 2000)  # the paper's Figure 7
GMM_FIGURE_SAMPLES = (100, 300)  # extra M of Figure 13 (64 chains each)


def component_colours(means, labels) -> np.ndarray:
    """A colour index per point: the rank of its component's mean along the first
    coordinate. EM numbers its components in no fixed order (and may swap them between
    generations); ranked by position, a component keeps its colour from panel to panel.

    Examples:
        >>> component_colours(np.array([[3.0, 0.0], [-3.0, 0.0]]), np.array([0, 1, 1])).tolist()
        [1, 0, 0]
    """
    rank = np.argsort(np.argsort(np.asarray(means)[:, 0]))
    return rank[np.asarray(labels)]


def plot_gmm_snapshots(study, seed: int = 0, points: int = 1000, snapshots=GMM_SNAPSHOTS):
    """Figure 7: one chain's model at the snapshot generations (those <= G), drawn as
    ``points`` samples coloured by component, first two coordinates."""
    import dataclasses

    import jax

    from .families.gmm import sample_with_components

    shown = [g for g in snapshots if g <= study.generations] or [0]
    first_generations = dataclasses.replace(study, generations=max(shown))  # the same chain, up to the last snapshot
    result = simulate(first_generations.program(), num_chains=1, seed=seed, record="trajectories",
                      metrics=("l2_distance",))
    figure, axes = plt.subplots(1, len(shown), figsize=(2.6 * len(shown), 2.8), squeeze=False, sharex=True, sharey=True)
    key = jax.random.key(seed)
    for axis, generation in zip(axes[0], shown):
        params = jax.tree.map(lambda leaf: leaf[generation, 0], result.params)
        draws, labels = map(np.asarray, sample_with_components(jax.random.fold_in(key, generation), params, points))
        axis.scatter(draws[:, 0], draws[:, min(1, draws.shape[1] - 1)], c=component_colours(params.means, labels),
                     cmap="coolwarm", s=3, alpha=0.6, vmin=0, vmax=max(len(params.means) - 1, 1))
        axis.set_title(f"generation {generation}", fontsize=9)
    figure.suptitle(f"GMM samples over generations (M = {int(study.sizes[0]) if study.generations else '-'})", fontsize=10)
    figure.tight_layout()
    return figure


def plot_gmm_l2(runs: dict, quantiles=(0.05, 0.5, 0.95)):
    """Figure 13: log L2 distance to p_0 against generation, one line per sample size M
    (median over chains) with its 5-95 % band."""
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for (m, result), colour in zip(sorted(runs.items()), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        band = result.quantiles("l2_distance", quantiles)[1:]
        generations = np.arange(1, result.num_generations + 1)
        with np.errstate(divide="ignore"):
            axis.plot(generations, np.log(band[:, 1]), color=colour, label=f"M = {m}")
            axis.fill_between(generations, np.log(band[:, 0]), np.log(band[:, 2]), color=colour, alpha=0.2, lw=0)
    axis.set_xlabel("generation")
    axis.set_ylabel("log L2 distance to p_0 (median, 5-95 %)")
    axis.legend()
    figure.tight_layout()
    return figure


def write_study_figures(study, settings, result, folder) -> list[str]:
    """The figures of a GMM, KDE or regression run."""
    figures = [("metrics.png", plot_metrics(study, result))]
    if study.command == "gmm":
        import dataclasses

        from .schedules import parse_schedule

        figures.append(("figure7.png", plot_gmm_snapshots(study, settings.seed)))
        runs = {int(study.sizes[0]): result} if study.generations else {}
        for m in settings.figure_sizes(GMM_FIGURE_SAMPLES):
            if m in runs or m < study.components or not study.generations:
                continue
            other = dataclasses.replace(study, schedule=parse_schedule("constant", m))
            runs[m] = simulate(other.program(), num_chains=min(settings.chains, 64), num_generations=study.generations,
                               seed=settings.seed, metrics=("l2_distance",), quantile_metrics=("l2_distance",))
        if runs and all(r.sketches for r in runs.values()):
            figures.append(("figure13.png", plot_gmm_l2(runs)))
    names = []
    for name, figure in figures:
        figure.savefig(Path(folder) / name, dpi=110)
        plt.close(figure)
        names.append(name)
    return names


def write_vae_figures(folder, latents: dict, grids: dict) -> list[str]:
    """Figure 8 (density of latent means under the first model's encoder, per generation)
    and Figure 9 (a 6x6 grid of samples per generation, run 0)."""
    folder = Path(folder)
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    generations = sorted(int(name.split("_")[1]) for name in latents)
    colours = plt.cm.viridis(np.linspace(0, 1, len(generations)))
    for generation, colour in zip(generations, colours):
        values = np.asarray(latents[f"generation_{generation}"]).reshape(-1)
        axis.hist(values, bins=120, density=True, histtype="step", color=colour,
                  label="real data" if generation == 0 else f"generation {generation}")
    axis.set_xlabel("latent mean under the first model's encoder (all dimensions)")
    axis.set_ylabel("density")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "figure8.png", dpi=110)
    plt.close(figure)
    shown = sorted(grids)
    figure, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.4), squeeze=False)
    for axis, generation in zip(axes[0], shown):
        images = np.asarray(grids[generation])[..., 0]
        side = int(np.sqrt(len(images)))
        height, width = images.shape[1:]
        tiled = images[: side * side].reshape(side, side, height, width).transpose(0, 2, 1, 3).reshape(
            side * height, side * width)
        axis.imshow(tiled, cmap="gray", vmin=0, vmax=1)
        axis.set_title("real" if generation == 0 else f"generation {generation}", fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(folder / "figure9.png", dpi=110)
    plt.close(figure)
    return ["figure8.png", "figure9.png"]
