"""Monte Carlo estimates against exact and published formulas, with z-scores.

For every formula that applies to a study, :func:`theory_table` lists per generation the
Monte Carlo estimate, its standard error, the formula's value and
z = (estimate - formula) / standard error. :func:`verdicts` condenses each formula: an
exact result or an expansion *agrees* when every |z| <= 5; a lower bound agrees when no
z < -5, an upper bound when no z > 5. A generation whose estimate or standard error is not finite (NaN, inf, a single
chain) counts against the formula; a formula with nothing comparable is "NO CHECK".
With independent chains the standard error is sd / sqrt(chains).

Examples:
    >>> import jaxcollapse as jc
    >>> study = jc.gaussian_study(samples=100, generations=5)
    >>> result = jc.simulate(study.program(), num_chains=2000, num_generations=5, seed=0)
    >>> rows = theory_table(study, result)
    >>> [v.agrees for v in verdicts(rows) if v.formula == "exact"]
    [True, True, True, True, True, True]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .engine import SimulationResult
from .tables import csv_text, number
from .theory import gaussian as theory

__all__ = ["Curve", "TheoryRow", "Verdict", "theory_curves", "theory_table", "verdicts", "format_check", "check_csv",
           "Z_LIMIT"]

Z_LIMIT = 5.0


class TheoryRow(NamedTuple):
    generation: int
    quantity: str  # e.g. "E[w2_risk]", "Var[w2_risk]"
    formula: str  # "exact", "paper eq. (4)", ...
    kind: str  # "exact", "expansion" or "lower bound"
    estimate: float
    standard_error: float
    value: float
    z: float
    state: int = -1  # the state of a per-state quantity (discrete chains); -1 for a scalar


class Verdict(NamedTuple):
    quantity: str
    formula: str
    kind: str
    agrees: bool
    worst_z: float
    worst_generation: int
    worst_relative_error: float
    compared: int  # generations with a finite z-score
    generations: int = 0  # generations with a formula value


class Curve(NamedTuple):
    quantity: str  # "E[metric]" or "Var[metric]" of the per-chain metric
    formula: str
    kind: str  # "exact", "expansion", "lower bound" or "upper bound"
    column: str  # its column in summary.csv (states.csv for a per-state curve)
    values: np.ndarray  # over g = 0..G, or (G + 1, K) per state; NaN where it says nothing
    # for an exact variance: the fourth central moment, which gives the exact standard
    # error of a sample variance (see theory_table)
    central4: np.ndarray | None = None
    # for an exact mean: the metric's exact variance across chains, which gives the exact
    # standard error of the Monte Carlo mean (for a 0/1 metric: v (1 - v) of the value v)
    variance: np.ndarray | None = None
    # where no exact variance is known: an upper bound on it, which gives a conservative
    # standard error. The chains' own standard error is not used for such a mean: for a
    # rare state a few chains carry all its mass, the sample mean is skewed and its
    # estimated standard error far too small (a mix run at M = 50 gave z = -5.4 for the
    # exact E[p_n] = p_0 that way)
    variance_bound: np.ndarray | None = None


def theory_curves(study) -> list[Curve]:
    """Every formula that applies to ``study``, evaluated over generations 0..G (each study
    maps the closed forms of ``jaxcollapse.theory`` to its curves: ``study.theory_curves()``)."""
    return list(study.theory_curves())


def absorption_time_rows(study, absorption_generation: np.ndarray) -> list[TheoryRow]:
    """E[T] of a discrete study's chains against its exact and approximate laws
    (``DiscreteStudy.absorption_time_rows``)."""
    return study.absorption_time_rows(absorption_generation)


def _estimate(result: SimulationResult, quantity: str):
    statistic, metric = quantity[:-1].split("[")
    summary = result.summary(metric)
    if statistic == "E":
        return summary["mean"], summary["se"]
    return summary["var"], summary["var_se"]


def theory_table(study, result: SimulationResult) -> list[TheoryRow]:
    """Per generation and formula: estimate, standard error, value and z.

    Where the exact theory gives a variance's fourth central moment (the 1-D replace
    chain), every formula for that variance is judged with the exact standard error of a
    sample variance: R grows heavy tails as sum 1/M_i grows, and the standard error
    estimated from the chains' own fourth moment then falls short of the truth by orders
    of magnitude (once sum 1/M_i ~ 1), which would make the z-test meaningless."""
    rows = []
    curves = theory_curves(study)
    exact_variance_error = {
        curve.quantity: theory.sample_variance_standard_error(curve.values, curve.central4, result.num_chains)
        for curve in curves if curve.central4 is not None
    }
    for quantity, formula, kind, _, values, _, variance, variance_bound in curves:
        estimate, error = _estimate(result, quantity)
        error = exact_variance_error.get(quantity, error)
        with np.errstate(invalid="ignore"):
            if variance is not None:
                error = np.sqrt(variance / result.num_chains)
            elif variance_bound is not None:
                error = np.sqrt(variance_bound / result.num_chains)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where((error > 0) & np.isfinite(error), (estimate - values) / error, np.nan)
        for g in range(1, values.shape[0]):  # generation 0 is p_0 itself: nothing to estimate
            for state in (range(values.shape[1]) if values.ndim == 2 else (-1,)):
                at = (g, state) if state >= 0 else g
                if np.isnan(values[at]):
                    continue
                rows.append(TheoryRow(g, quantity, formula, kind, float(estimate[at]), float(error[at]),
                                      float(values[at]), float(z[at]), state))
    return rows


def verdicts(rows: list[TheoryRow], z_limit: float = Z_LIMIT) -> list[Verdict]:
    grouped: dict[tuple[str, str], list[TheoryRow]] = {}
    for row in rows:
        grouped.setdefault((row.quantity, row.formula), []).append(row)
    results = []
    for (quantity, formula), group in grouped.items():
        compared = [row for row in group if np.isfinite(row.z)]
        # a non-finite estimate or standard error is a failure, never a pass: only an
        # estimate exactly equal to the formula with zero spread is skipped
        failed = [row for row in group if not np.isfinite(row.z) and not (
            np.isfinite(row.estimate) and row.standard_error == 0 and row.estimate == row.value)]
        kind = group[0].kind
        if not compared:
            results.append(Verdict(quantity, formula, kind, False, float("nan"), -1, float("nan"), 0, len(group)))
            continue
        if kind == "lower bound":
            worst = min(compared, key=lambda row: row.z)
            agrees = worst.z >= -z_limit
        elif kind == "upper bound":
            worst = max(compared, key=lambda row: row.z)
            agrees = worst.z <= z_limit
        else:
            worst = max(compared, key=lambda row: abs(row.z))
            agrees = abs(worst.z) <= z_limit
        if failed:
            agrees = False
            worst = failed[0]._replace(z=float("nan"))
        relative = max(abs(row.estimate - row.value) / abs(row.value) for row in compared if row.value != 0) if any(
            row.value != 0 for row in compared) else float("nan")
        results.append(Verdict(quantity, formula, kind, bool(agrees), worst.z, worst.generation, relative,
                               len(compared), len(group)))
    return results


def format_check(rows: list[TheoryRow], shown_generations=None, z_limit: float = Z_LIMIT) -> str:
    """A plain-text report: selected generations per formula, then one verdict each."""
    if not rows:
        return "No closed form applies to this study.\n"
    last = max(row.generation for row in rows)
    if shown_generations is None:
        first = min(row.generation for row in rows)  # 0 where a row judges p_0's own data
        shown_generations = sorted({first, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, last} & set(range(first, last + 1)))
    lines = [f"{'gen':>5}  {'quantity':<16} {'formula':<22} {'monte carlo':>13} {'std err':>10} {'formula':>13} {'z':>8}"]
    for row in rows:
        if row.generation in shown_generations and row.state < 3:  # per-state rows: the first three states
            quantity = row.quantity if row.state < 0 else f"{row.quantity[:-1]}[{row.state}]]"
            lines.append(
                f"{row.generation:>5}  {quantity:<16} {row.formula:<22} {row.estimate:>13.6g} "
                f"{row.standard_error:>10.3g} {row.value:>13.6g} {row.z:>8.2f}"
            )
    lines.append("")
    lines.append(f"Verdicts (agree: every |z| <= {z_limit:g}; a lower bound: no z < -{z_limit:g}; "
                 f"an upper bound: no z > {z_limit:g}):")
    for verdict in verdicts(rows, z_limit):
        word = "AGREES  " if verdict.agrees else ("NO CHECK " if verdict.compared == 0 else "DISAGREES")
        lines.append(
            f"  {word} {verdict.quantity:<16} {verdict.formula:<22} ({verdict.kind}): worst z = "
            f"{verdict.worst_z:+.2f} at generation {verdict.worst_generation}, largest relative gap "
            f"{verdict.worst_relative_error:.3g}, {verdict.compared} of {verdict.generations} generations compared"
        )
    return "\n".join(lines) + "\n"


def check_csv(rows: list[TheoryRow], per_state: bool = False) -> str:
    """check.csv: one line per row (generation, [state,] quantity, formula, kind, Monte
    Carlo estimate, standard error, the formula's value, z)."""
    state = ["state"] if per_state else []
    return csv_text(
        ["generation"] + state + ["quantity", "formula", "kind", "monte_carlo", "standard_error", "formula_value", "z"],
        [[str(r.generation)] + (["" if r.state < 0 else str(r.state)] if per_state else [])
         + [r.quantity, r.formula, r.kind, number(r.estimate), number(r.standard_error), number(r.value), number(r.z)]
         for r in rows],
    )
