"""Figures of the recursive language-model runs (paper Figures 10, 11, 14 and 15).

* ``figure10_test_perplexity.png``: perplexity on the real test set per generation, every
  run and the mean over runs (Figure 10);
* ``figure11_synthetic_perplexity.png`` (``figure14_...`` when a repetition penalty was
  used): histograms of the perplexity, under the generation-0 model, of every block each
  generation wrote (Figures 11 and 14);
* ``figure15_synthetic_perplexity_3d.png``: the same densities as a 3-D surface over
  generation and perplexity (Figure 15);
* on the synthetic language, ``true_perplexity.png`` (exact perplexity of the written
  tokens under the true source, against the source's own) and ``lost_mass.png``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ..plots import integer_generations

__all__ = ["write_lm_figures"]


def _by_generation(rows, name):
    generations = sorted({row["generation"] for row in rows})
    runs = sorted({row["run"] for row in rows})
    table = np.full((len(runs), len(generations)), np.nan)
    for row in rows:
        if name in row:
            table[runs.index(row["run"]), generations.index(row["generation"])] = row[name]
    return np.array(generations), table


def _run_mean(table: np.ndarray) -> np.ndarray:
    """Mean over runs (rows), ignoring missing values; NaN where a generation has none."""
    finite = np.isfinite(table)
    counts = finite.sum(axis=0)
    return np.where(counts > 0, np.where(finite, table, 0).sum(axis=0) / np.maximum(counts, 1), np.nan)


def _bins(scored: dict) -> np.ndarray:
    values = np.concatenate([np.asarray(v) for v in scored.values()])
    low, high = np.quantile(values, 0.001), np.quantile(values, 0.999)
    return np.geomspace(max(low, 1e-3), max(high, low * 1.01), 60)


def _decoding(study) -> str:
    """How the blocks were written, as the figures' titles say it."""
    if study.decoding == "sample":
        return f"sampled at temperature {study.temperature:g}"
    if study.decoding == "beam" and study.beams > 1:
        return f"beam search, {study.beams} beams"
    return "greedy decoding"


def write_lm_figures(folder, rows: list[dict], scored: dict, study) -> list[str]:
    """Write the figures listed in the module docstring into ``folder``; returns their names."""
    folder = Path(folder)
    written = []

    generations, test = _by_generation(rows, "test_perplexity")
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for line in test:
        axis.plot(generations, line, color="tab:blue", alpha=0.35, lw=1)
    axis.plot(generations, _run_mean(test), "o-", color="tab:blue", lw=2, label=f"mean of {len(test)} runs")
    axis.set_xlabel("generation")
    integer_generations(axis)
    axis.set_ylabel("perplexity on the real test set")
    axis.set_title(f"{study.corpus}: {int(round(study.real_fraction * 100))}% real data kept, {study.epochs} epochs",
                   fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "figure10_test_perplexity.png", dpi=110)
    plt.close(figure)
    written.append("figure10_test_perplexity.png")

    bins = _bins(scored)
    colours = plt.cm.viridis(np.linspace(0, 1, len(scored)))
    name = "figure14_synthetic_perplexity.png" if study.repetition_penalty != 1 else "figure11_synthetic_perplexity.png"
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for (generation, values), colour in zip(sorted(scored.items()), colours):
        axis.hist(values, bins=bins, density=True, histtype="step", color=colour, label=f"generation {generation}")
    axis.set_xscale("log")
    axis.set_xlabel("perplexity of a written block under the generation-0 model")
    axis.set_ylabel("density")
    axis.set_title(f"repetition penalty {study.repetition_penalty:g}, {_decoding(study)}", fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / name, dpi=110)
    plt.close(figure)
    written.append(name)

    figure = plt.figure(figsize=(7, 5))
    axis = figure.add_subplot(projection="3d")
    centres = np.sqrt(bins[1:] * bins[:-1])
    for (generation, values), colour in zip(sorted(scored.items()), colours):
        density, _ = np.histogram(values, bins=bins, density=True)
        axis.plot(np.log10(centres), np.full_like(centres, generation), density, color=colour)
    axis.set_xlabel("log10 perplexity (generation-0 model)")
    axis.set_ylabel("generation")
    axis.set_zlabel("density")
    figure.tight_layout()
    figure.savefig(folder / "figure15_synthetic_perplexity_3d.png", dpi=110)
    plt.close(figure)
    written.append("figure15_synthetic_perplexity_3d.png")

    if any("synthetic_true_ppl_q50" in row for row in rows):
        _, median = _by_generation(rows, "synthetic_true_ppl_q50")
        _, mean = _by_generation(rows, "synthetic_true_ppl_mean")
        source = rows[0]["source_perplexity"]
        figure, axis = plt.subplots(figsize=(6.4, 4.2))
        axis.plot(generations, _run_mean(median), "o-", label="median over written blocks")
        if np.isfinite(mean).any():  # means leave out blocks with ids the source never emits
            axis.plot(generations, _run_mean(mean), "s--", label="mean over written blocks")
        axis.axhline(source, color="black", lw=1, label=f"the source itself ({source:.1f})")
        axis.set_xlabel("generation (model that wrote the blocks)")
        integer_generations(axis)
        axis.set_ylabel("exact perplexity under the true source")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(folder / "true_perplexity.png", dpi=110)
        plt.close(figure)
        figure, axis = plt.subplots(figsize=(6.4, 4.2))
        for column, label in (("lost_unigram_mass", "symbols never written"),
                              ("lost_trigram_mass", "trigrams never written"),
                              ("lost_tail_fraction", "share of the rarest 10% of trigram mass lost")):
            _, table = _by_generation(rows, column)
            axis.plot(generations, _run_mean(table), "o-", label=label)
        axis.set_xlabel("generation (model that wrote the blocks)")
        integer_generations(axis)
        axis.set_ylabel("true probability mass")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(folder / "lost_mass.png", dpi=110)
        plt.close(figure)
        written += ["true_perplexity.png", "lost_mass.png"]
    return written
