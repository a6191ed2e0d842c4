"""Monte Carlo estimates against exact and published formulas, with z-scores.

For every formula that applies to a study, :func:`theory_table` lists per generation the
Monte Carlo estimate, its standard error, the formula's value and
z = (estimate - formula) / standard error. :func:`verdicts` condenses each formula: an
exact result or an expansion *agrees* when every |z| <= 5; a lower bound agrees when no
z < -5, an upper bound when no z > 5. A generation whose estimate or standard error is not finite (NaN, inf, a single
chain) counts against the formula; a formula with nothing comparable is "NO CHECK".
With independent chains the standard error is sd / sqrt(chains).

Example:
    >>> import jaxcollapse as jc
    >>> study = jc.gaussian_study(samples=100, generations=5)
    >>> result = jc.simulate(study.program(), num_chains=2000, num_generations=5, seed=0)
    >>> rows = theory_table(study, result)
    >>> [v.agrees for v in verdicts(rows) if v.formula == "exact"]
    [True, True, True, True, True, True]
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from .engine import SimulationResult
from .families.gaussian import ESTIMATORS
from .discrete import DiscreteStudy
from .theory import discrete as discrete_theory
from .theory import gaussian as theory

__all__ = ["Curve", "TheoryRow", "Verdict", "theory_curves", "theory_table", "verdicts", "format_check", "Z_LIMIT"]

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
    """Every formula that applies to ``study``, evaluated over generations 0..G."""
    if hasattr(study, "theory_curves"):  # the classical families carry their own formulas
        return list(study.theory_curves())
    if isinstance(study, DiscreteStudy):
        return discrete_theory_curves(study)
    if not study.initial.is_gaussian:
        return []  # every formula here assumes a Gaussian p_0
    sizes = study.sizes
    ddof = ESTIMATORS[study.estimator]
    trace = float(np.trace(study.initial.cov))
    one_d = study.dim == 1
    kind = study.policy.kind
    curves = []

    def add(quantity, formula, kind_, column, values, central4=None):
        curves.append(Curve(quantity, formula, kind_, column, np.asarray(values, np.float64), central4))

    if kind == "replace":
        if one_d:
            sigma = float(np.sqrt(study.initial.cov[0, 0]))
            exact = theory.replace_exact(sizes, sigma, ddof)
            for metric in ("w2_risk", "mean_error", "sigma", "sigma2", "var_x"):
                add(f"E[{metric}]", "exact", "exact", f"{metric}_exact", exact[metric])
            add("Var[w2_risk]", "exact", "exact", "w2_risk_var_exact", exact["w2_risk_var"], exact["w2_risk_central4"])
            add("E[w2_risk]", "paper eq. (4)", "expansion", "w2_risk_paper", theory.paper_w2_risk(sizes, sigma))
            add("Var[w2_risk]", "paper eq. (5)", "expansion", "w2_risk_var_paper", theory.paper_w2_risk_var(sizes, sigma))
            add("E[var_x]", "paper sec. 4.2", "expansion", "var_x_paper", theory.paper_var_x(sizes, sigma))
            if study.estimator == "unbiased":
                add("E[w2_risk]", "first order (3/2M)", "expansion", "w2_risk_first_order",
                    theory.w2_first_order(sizes, sigma))
                add("Var[w2_risk]", "first order (5/2 S^2)", "expansion", "w2_risk_var_first_order",
                    theory.w2_var_first_order(sizes, sigma))
        else:
            exact = theory.replace_exact_nd(sizes, trace, ddof)
            for metric in ("mean_error", "cov_trace", "var_x"):
                add(f"E[{metric}]", "exact", "exact", f"{metric}_exact", exact[metric])
        add("E[w2_risk]", "paper eq. (15) bound", "lower bound", "w2_risk_lower_bound",
            theory.w2_lower_bound(sizes, trace))
    elif kind == "accumulate":
        exact = theory.accumulate_exact(sizes, trace, ddof)
        spread = "sigma2" if one_d else "cov_trace"
        add("E[mean_error]", "exact", "exact", "mean_error_exact", exact["mean_error"])
        add(f"E[{spread}]", "exact", "exact", f"{spread}_exact", exact["cov_trace"])
        add("E[var_x]", "exact", "exact", "var_x_exact", exact["var_x"])
        add("E[mean_error]", "fixed-variance sum", "expansion", "mean_error_fixed_variance",
            theory.accumulate_mean_error_published(sizes, trace))
    return curves


INDICATOR_METRICS = ("absorbed", "extinct", "state_alive", "state_absorbed")
EXACT_SOLVER_STATES = 20_000  # count vectors the exact forward propagation may carry


def discrete_theory_curves(study: DiscreteStudy) -> list[Curve]:
    """Formulas for a discrete chain (see docs/discrete.md)."""
    return list(_discrete_theory_curves(study))


@functools.lru_cache(maxsize=8)  # a run asks for them four times; the exact solver can take a second
def _discrete_theory_curves(study: DiscreteStudy) -> tuple[Curve, ...]:
    sizes = study.sizes
    generations = study.generations
    if not generations:
        return ()
    curves = []
    constant = bool(np.all(sizes == sizes[0]))

    def add(quantity, formula, kind, column, values, variance=None, variance_bound=None):
        values = np.asarray(values, np.float64)
        if quantity[2:-1] in INDICATOR_METRICS:
            # the mean of a 0/1 metric is a binomial proportion: the formula's value gives its
            # exact standard error, which stays meaningful when no chain (or every chain) hit
            variance = np.clip(values, 0.0, 1.0) * (1.0 - np.clip(values, 0.0, 1.0))
        curves.append(Curve(quantity, formula, kind, column, values, variance=variance, variance_bound=variance_bound))

    def at_first_generation(value):
        values = np.full((generations + 1,) + np.shape(value), np.nan)
        values[1] = value
        return values

    regime = study.policy.kind
    if study.kind == "poisson":
        rate = study.initial.rate
        add("E[rate]", "exact (martingale)", "exact", "rate_exact", np.full(generations + 1, rate))
        if regime == "replace":
            add("E[extinct]", "exact (Galton-Watson)", "exact", "extinct_exact",
                discrete_theory.poisson_extinction_exact(rate, sizes))
            if constant:
                g = np.arange(generations + 1, dtype=float)
                with np.errstate(divide="ignore"):
                    bound = np.exp(-sizes[0] * rate / g)
                add("E[extinct]", "Suresh et al. form", "upper bound", "extinct_suresh_bound", bound)
        return tuple(curves)
    if study.smoothing:
        return tuple(curves)  # smoothing is a deliberate approximation error: no closed form here
    p0 = study.p0
    live = p0[p0 > 0]
    # p in [0, 1] bounds Var p_n[i] by p0 (1 - p0) in every regime; replace has it exactly:
    # Var p_n[i] = p0 (1 - p0) (1 - prod_{j<n} (1 - 1/M_j)), from the heterozygosity recursion
    spread = np.broadcast_to(p0 * (1.0 - p0), (generations + 1, len(p0)))
    exact_spread = None
    if regime == "replace":
        exact_spread = (1.0 - np.concatenate([[1.0], np.cumprod(1.0 - 1.0 / sizes)]))[:, None] * spread
    add("E[state_p]", "exact (martingale)", "exact", "p_exact", np.broadcast_to(p0, (generations + 1, len(p0))),
        variance=exact_spread, variance_bound=spread)
    alive_first = 1.0 - discrete_theory.loss_probability_first_generation(p0, int(sizes[0]))
    add("E[state_alive]", "1 - (1 - p0)^M", "exact", "alive_first_exact", at_first_generation(alive_first))
    add("E[support]", "sum 1 - (1 - p0)^M", "exact", "support_first_exact",
        at_first_generation(discrete_theory.expected_support_first_generation(p0, int(sizes[0]))))
    if regime != "replace":
        return tuple(curves)
    add("E[heterozygosity]", "exact (1 - 1/M)^n", "exact", "heterozygosity_exact",
        discrete_theory.heterozygosity_exact(sizes, p0))
    compositions = math.comb(int(np.max(sizes)) + len(live) - 1, len(live) - 1)
    if compositions <= EXACT_SOLVER_STATES:
        exact = discrete_theory.categorical_chain_exact(p0, sizes)
        add("E[support]", "exact Markov chain", "exact", "support_exact", exact["support"])
        add("E[absorbed]", "exact Markov chain", "exact", "absorbed_exact", exact["absorbed"])
        add("E[state_absorbed]", "exact Markov chain", "exact", "absorbed_in_exact", exact["absorbed_in"])
        add("E[state_alive]", "exact Markov chain", "exact", "alive_exact", exact["alive"])
    add("E[state_absorbed]", "p0 (its limit)", "upper bound", "absorbed_in_limit",
        np.broadcast_to(p0, (generations + 1, len(p0))))
    if constant:
        add("E[state_alive]", "Suresh et al. 1 - exp(-M p0 / n)", "lower bound", "alive_suresh_bound",
            discrete_theory.suresh_unigram_survival_bound(p0, int(sizes[0]), generations))
    return tuple(curves)


def absorption_time_rows(study: DiscreteStudy, absorption_generation: np.ndarray) -> list[TheoryRow]:
    """E[T] of the chains against the exact fundamental-matrix mean and Kimura's diffusion
    approximation (replace, constant M, no smoothing); only when every chain has absorbed
    by the last generation (otherwise T is censored and its mean is not estimable)."""
    sizes = study.sizes
    times = np.asarray(absorption_generation, np.float64)
    if (study.kind == "poisson" or study.smoothing or study.policy.kind != "replace" or not len(sizes)
            or not np.all(sizes == sizes[0]) or times.size < 2 or np.any(times < 0)):
        return []
    m = int(sizes[0])
    estimate = float(times.mean())
    error = float(times.std(ddof=1) / np.sqrt(times.size))
    p0 = study.p0
    formulas = []
    live = int(np.sum(p0 > 0))
    if math.comb(m + live - 1, live - 1) <= 5_000:
        formulas.append(("fundamental matrix", "exact", discrete_theory.absorption_time_exact(p0, m)["mean"]))
    formulas.append(("Kimura diffusion", "expansion", discrete_theory.kimura_mean_absorption_time(p0, m)))
    rows = []
    for formula, kind, value in formulas:
        z = (estimate - value) / error if error > 0 else float("nan")
        rows.append(TheoryRow(study.generations, "E[absorption time]", formula, kind, estimate, error, float(value), z))
    return rows


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
        shown_generations = sorted({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, last} & set(range(1, last + 1)))
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
