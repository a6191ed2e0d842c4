"""Reproduce the paper: every figure the families support, in one folder and one report.

``jaxcollapse reproduce --out DIR [--scale quick|paper] [--opt-checkpoint CKPT]`` runs one
section per figure group, each an ordinary run folder ``DIR/<section>`` built from the
study registry (:mod:`jaxcollapse.studies`) exactly as the command a user would type
(its command line is in the report), then writes
``DIR/report.md``: per section what the paper shows, the command, the figures, and the
theory checks (every formula against the simulation, with the ones it contradicts named)
or the per-generation numbers of the learned models.

``quick`` (the default) finishes on a laptop CPU in minutes: the same experiments with
fewer chains, generations, epochs and smaller models. ``paper`` uses the paper's sizes
(Gaussian chains over 1000 generations, GMMs over 2050, the paper's conv VAE on MNIST for
5 generations, OPT-125m on wikitext-2 for 5 runs; the last needs ``--opt-checkpoint``, a
local facebook/opt-125m folder, and a GPU in practice).

A stopped reproduction resumes where it stopped when started again: finished chain runs
are kept, VAE and language-model runs resume at their last finished generation.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import studies
from ._files import atomic_text
from ._validation import ConfigError, require_choice
from .studies.base import render_command_line

__all__ = ["SCALES", "Section", "sections", "reproduce"]

SCALES = ("quick", "paper")


@dataclass(frozen=True)
class Section:
    """One figure group: the folder name, a title, what the paper shows, the study
    command and its settings (the options of :mod:`jaxcollapse.studies`, as a sweep's
    keys), the figures it writes, and why it is skipped (None: it runs)."""

    name: str
    title: str
    paper: str
    command: str
    settings: dict = field(default_factory=dict)
    figures: tuple[str, ...] = ()
    skipped: str | None = None
    sweep: str | None = None  # a sweep's TOML: command is then "sweep" and the figure drawn from its table

    @property
    def argv(self) -> list[str]:
        """The command line a user would type (without ``--out``)."""
        return render_command_line(self.command, self.settings)


def sections(scale: str = "quick", opt_checkpoint: str | None = None) -> list[Section]:
    """The sections of a reproduction at ``scale``.

    Examples:
        >>> [s.name for s in sections("quick")][:3]
        ['figure12-gaussian-estimation', 'figure3-discrete', 'figure4-gaussian-replace']
    """
    require_choice("scale", scale, SCALES)
    quick = scale == "quick"

    def chains(quick_count, paper_count):
        return {"chains": quick_count if quick else paper_count}

    gaussian_size = {"samples": 100, "generations": 200 if quick else 1000}

    def lm(preset: str, penalty: float = 1, **quick_settings) -> dict:
        if quick:
            return {**quick_settings, "repetition_penalty": penalty, "no_progress": True}
        return {"preset": preset, "model": opt_checkpoint or "", "repetition_penalty": penalty, "no_progress": True}

    lm_skipped = None if quick or opt_checkpoint else (
        "--scale paper needs --opt-checkpoint DIR, a local facebook/opt-125m (config.json, model.safetensors, "
        "vocab.json, merges.txt), and wikitext-2-raw-v1 in the datasets cache")
    lm_quick = ("Quick scale: a tiny OPT on the built-in synthetic language, where true perplexities and the lost "
                "tail mass are exact.")
    repeats = 2000 if quick else 10_000
    sizes = "[10, 30, 100, 500, 1000, 10000, 100000, 1000000, 10000000]"
    return [
        Section("figure12-gaussian-estimation", "Figure 12: estimating N(0, 1) from M points",
                "The mean estimate and its standard deviation from 10,000 repetitions for M from 10 to 10^7: "
                "even 10^7 points leave an error of order 10^-4 (the standard deviation falls as 1/sqrt(M)).",
                "sweep", {}, ("figure12.png",), sweep=(
                    f'command = "gaussian"\n[base]\nchains = {repeats}\ngenerations = 1\nestimator = "unbiased"\n'
                    f'figure-samples = ""\n[grid]\nsamples = {sizes}\n')),
        Section("figure3-discrete", "Figure 3: discrete distributions lose their tails",
                "A histogram of a Gaussian mixture (means -4 and 4, variance 1) and a fat-tailed variant; "
                "after resampling M points, bins of probability below 1/M vanish, and chains end absorbed "
                "in one state, state i with probability p0[i].",
                "discrete", {"init": "mixture", "samples": 100, "generations": 200 if quick else 1000,
                             **chains(2000, 100_000), "check": True}, ("figure3.png", "collapse.png", "absorption.png")),
        Section("figure4-gaussian-replace", "Figure 4: 1-D Gaussian, each model fitted to its parent's samples",
                "Single chains for M in {100, 500, 1000, 10000}: mean and standard deviation drift like a "
                "random walk; the variance collapses and the W2 risk grows linearly in n.",
                "gaussian", {**gaussian_size, **chains(10_000, 100_000), "estimator": "mle", "check": True},
                ("trajectories.png", "risk.png")),
        Section("figure5-gaussian-accumulate-subsample",
                "Figure 5: 1-D Gaussian, a fixed-size sample from the pool of every generation's data",
                "The parameters jump around: the pool mixes every ancestor's samples.",
                "gaussian", {**gaussian_size, **chains(1000, 1000), "estimator": "mle",
                             "regime": "accumulate-subsample", "check": True}, ("trajectories.png", "risk.png")),
        Section("figure6-gaussian-accumulate", "Figure 6: 1-D Gaussian, fitted to the whole pool",
                "The estimates settle: the data grow linearly and the risk stays bounded.",
                "gaussian", {**gaussian_size, **chains(10_000, 100_000), "estimator": "mle",
                             "regime": "accumulate", "check": True}, ("trajectories.png", "risk.png")),
        Section("figure7-13-gmm", "Figures 7 and 13: Gaussian mixtures refitted by EM",
                "Two Gaussians separated by a 2-component GMM on 1000 points per generation: by generation 50 "
                "the fitted mixture misperceives them, by 2000 it is nearly a point; the L2 distance to "
                "GMM_0 grows (Figure 13, several sample sizes).",
                "gmm", {"samples": 1000, "generations": 100 if quick else 2050, **chains(16, 64),
                        "iterations": 20 if quick else 100, "check": True}, ("figure7.png", "figure13.png", "metrics.png")),
        Section("figure8-9-vae", "Figures 8 and 9: VAEs trained on their predecessor's samples",
                "Under the generation-0 encoder the latents of later generations' samples concentrate at the "
                "mean (Figure 8); the digits get entangled into one blurred mode (Figure 9).",
                "vae", ({"dataset": "digits", "generations": 3, "runs": 2, "epochs": 10} if quick
                        else {"dataset": "mnist5k", "generations": 5, "runs": 5, "epochs": 30}),
                ("figure8.png", "figure9.png")),
        Section("figure10-11-15-lm", "Figures 10(a), 11 and 15: a language model fine-tuned on its own text",
                "OPT-125m on wikitext-2, 5 epochs, no original data kept: test perplexity rises from about 20 to "
                "28 over generations (Figure 10(a)); the generation-0 model finds later generations' text more "
                "likely yet with a longer tail (Figures 11, 15). " + lm_quick,
                "lm", lm("paper-no-real"), ("figure10_test_perplexity.png", "figure11_synthetic_perplexity.png",
                                      "figure15_synthetic_perplexity_3d.png"), skipped=lm_skipped),
        Section("figure10b-lm-10pct-real", "Figure 10(b): 10 % of the original data kept",
                "10 epochs with a random 10 % of the real blocks in every generation: only minor degradation. "
                + lm_quick, "lm", lm("paper-10pct-real", real_fraction=0.1),
                ("figure10_test_perplexity.png",), skipped=lm_skipped),
        Section("figure14-lm-penalty", "Figure 14: with a repetition penalty of 2",
                "Discouraging repeats makes the models write lower-scored text: perplexity doubles, collapse "
                "stays. " + lm_quick, "lm", lm("paper-no-real", penalty=2), ("figure14_synthetic_perplexity.png",),
                skipped=lm_skipped),
    ]


def reproduce(out, *, scale: str = "quick", opt_checkpoint: str | None = None, only: tuple[str, ...] = (),
              stream=None) -> Path:
    """Run every section (or the ``only`` ones, by name prefix) into ``out`` and write
    ``out/report.md``; returns its path."""
    from .sweep import run_sweep

    stream = sys.stderr if stream is None else stream
    out = Path(out)
    chosen = [s for s in sections(scale, opt_checkpoint) if not only or s.name.startswith(tuple(only))]
    if not chosen:
        raise ConfigError(f"no section starts with {', '.join(only)}; sections: "
                          f"{', '.join(s.name for s in sections(scale, opt_checkpoint))}")
    out.mkdir(parents=True, exist_ok=True)
    outcomes = {}
    for index, section in enumerate(chosen):
        folder = out / section.name
        head = f"[reproduce {index + 1}/{len(chosen)}] {section.name}"
        if section.skipped:
            print(f"{head}: skipped ({section.skipped})", file=stream, flush=True)
            outcomes[section.name] = section.skipped
            continue
        tick = time.perf_counter()
        if section.sweep is not None:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_text(folder / "sweep.toml", section.sweep)
            table = run_sweep(folder / "sweep.toml", folder, figures=False, stream=io.StringIO())
            _estimation_figure(table, folder / "figure12.png")
        else:
            study_command = studies.command(section.command)
            if study_command.run is None and (folder / "summary.csv").is_file():
                print(f"{head}: finished earlier", file=stream, flush=True)
                outcomes[section.name] = None
                continue
            atomic_text(folder / "printed.txt", _run_section(study_command, section, folder))
        print(f"{head}: done in {time.perf_counter() - tick:.0f} s", file=stream, flush=True)
        outcomes[section.name] = None
    report = out / "report.md"
    atomic_text(report, _report(chosen, out, scale, outcomes))
    return report


def _run_section(study_command, section: Section, folder: Path) -> str:
    """Run a section's study into ``folder`` as its command line would (quietly); returns
    what that command prints."""
    from .check import format_check
    from .runs import run_from_settings

    try:
        outcome, values = run_from_settings(study_command, section.settings, folder)
    except ConfigError as error:
        raise ConfigError(f"section {section.name} failed: {error}: {' '.join(section.argv)}") from None
    printed = list(outcome.lines) + ([format_check(outcome.rows)] if values.get("check") else [])
    return "".join(line + "\n" for line in printed)


def _generation_one(table: Path) -> list[tuple[int, float, float]]:
    """(M, E[(mu_hat - mu)^2], its standard error) at generation 1 of every sweep cell."""
    rows = [row for row in _rows(table) if row["generation"] == "1"]
    return sorted((int(row["cell_samples"]), float(row["mean_error_mean"]), float(row["mean_error_se"])) for row in rows)


def _estimation_figure(table: Path, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = _generation_one(table)
    sizes = np.array([m for m, _, _ in points], float)
    rms = np.sqrt([value for _, value, _ in points])
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.loglog(sizes, rms, "o", label="simulation: sqrt(E[(mu_hat - mu)^2])")
    axis.loglog(sizes, 1 / np.sqrt(sizes), "-", label="exact: 1 / sqrt(M)")
    axis.set_xlabel("M, points drawn from N(0, 1)")
    axis.set_ylabel("standard deviation of the mean estimate")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _estimation_numbers(folder: Path) -> list[str]:
    points = _generation_one(folder / "summary.csv")
    if not points:
        return []
    lines = ["| M | sqrt(E[(mu_hat - mu)^2]) | exact 1/sqrt(M) | z of E[(mu_hat - mu)^2] against 1/M |",
             "|---|---|---|---|"]
    for m, value, se in points:
        lines.append(f"| {m} | {value ** 0.5:.4g} | {m ** -0.5:.4g} | {(value - 1 / m) / se:.1f} |")
    return lines + ["", "Every cell has the same seed: the sufficient-statistics path then draws the same standard "
                        "normals for every M (common random numbers), so the relative errors coincide across rows."]


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _checks(folder: Path) -> list[str]:
    """Every formula's verdict (``jaxcollapse.check.verdicts``: bounds one-sided, the
    worst generation named) from the run's check.csv."""
    from .check import TheoryRow, verdicts

    def value(text):
        return float(text) if text not in ("", None) else float("nan")

    rows = [TheoryRow(int(row["generation"]), row["quantity"], row["formula"], row["kind"], value(row["monte_carlo"]),
                      value(row["standard_error"]), value(row["formula_value"]), value(row["z"]),
                      int(row["state"]) if row.get("state") else -1)
            for row in _rows(folder / "check.csv")]
    if not rows:
        return []
    found = verdicts(rows)
    lines = [f"Theory against simulation: {sum(v.agrees for v in found)} of {len(found)} formulas agree within 5 "
             f"standard errors at every generation (`{folder.name}/check.csv` has every comparison).", "",
             "| quantity | formula | kind | verdict | worst z (generation) |", "|---|---|---|---|---|"]
    for v in found:
        lines.append(f"| {v.quantity} | {v.formula} | {v.kind} | {'agrees' if v.agrees else '**contradicted**'} | "
                     f"{v.worst_z:.1f} ({v.worst_generation}) |")
    return lines


def _number(text: str) -> str:
    return "" if text in ("", None) else f"{float(text):.4g}"


def _learned_numbers(section: Section, folder: Path) -> list[str]:
    if section.command == "vae":
        rows = _rows(folder / "summary.csv")
        if not rows:
            return []
        first, last = rows[0], rows[-1]
        keys = [k for k in first if k.endswith("_mean") and any(w in k for w in ("latent", "elbo", "entropy"))]
        return ["| generation | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)] + [
            f"| {row['generation']} | " + " | ".join(_number(row[k]) for k in keys) + " |" for row in (first, last)]
    if section.command == "lm":
        rows = _rows(folder / "summary_by_generation.csv")
        keys = [k for k in ("test_perplexity_mean", "synthetic_ppl_q50_mean", "synthetic_true_ppl_q50_mean",
                            "lost_trigram_mass_mean") if rows and k in rows[0]]
        if not keys:
            return []
        return ["| generation | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)] + [
            f"| {row['generation']} | " + " | ".join(_number(row[k]) for k in keys) + " |" for row in rows]
    return []


def _report(chosen: list[Section], out: Path, scale: str, outcomes: dict) -> str:
    lines = [f"# jaxcollapse reproduction of Shumailov et al. (scale: {scale})", "",
             "Each section is a run folder made by the command shown; compare its figures with the paper's. "
             "Where the simulation contradicts a published formula, docs/theory.md and docs/discrete.md "
             "explain why.", ""]
    for section in chosen:
        folder = out / section.name
        lines += [f"## {section.title}", "", f"**The paper:** {section.paper}", ""]
        if outcomes.get(section.name):
            lines += [f"**Skipped:** {outcomes[section.name]}.", ""]
            continue
        command = (f"jaxcollapse sweep {folder / 'sweep.toml'} --out {folder} --no-figures" if section.sweep else
                   "jaxcollapse " + " ".join(section.argv) + f" --out {folder}")
        lines += ["```", command, "```", ""]
        lines += [f"![{name}]({section.name}/{name})" for name in section.figures if (folder / name).is_file()]
        lines.append("")
        extra = _estimation_numbers(folder) if section.sweep else _checks(folder) or _learned_numbers(section, folder)
        lines += extra + ([""] if extra else [])
    return "\n".join(lines)
