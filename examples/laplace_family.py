"""Write your own family: a Laplace(mu, b) from nothing to a run folder (docs/own_family.md).

The family is fitted by maximum likelihood, which for a Laplace has a closed form: mu is
the weighted median, b the weighted mean absolute deviation about it. The script chains
it with ``data_path_program`` under a data policy, runs many chains with ``simulate``,
prints E[b_n] and E|mu_n - mu_0| per generation next to what is known exactly, and
publishes the family as a study command whose run folder ``run_study`` writes.

What is known (derived below, checked here and in tests/test_examples.py):

* E[mu_n] = mu_0 under every data policy: p_0 is symmetric about mu_0 and the fit and the
  sampler commute with the reflection x -> 2 mu_0 - x, so mu_n is symmetric about mu_0.
* Under replace, E[b_n] = b_0 c(M_0) ... c(M_{n-1}) with c(M) < 1: the fit and the sampler
  are location-scale equivariant, so b_{n+1} / b_n is independent of the past and
  distributed as b_1 / b_0; and the median minimises the sum of absolute deviations, so
  E[b_1] <= E[mean |x - mu_0|] = b_0. c(M) is computed exactly by :func:`scale_ratio`.

Run: python examples/laplace_family.py [--chains 2000] [--generations 20] [--samples 20]
     [--regime replace] [--out DIR]
"""

import argparse
import tempfile
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

import jaxcollapse as jc
from jaxcollapse.check import Curve, verdicts
from jaxcollapse.families import Family, float_row
from jaxcollapse.programs import data_path_program
from jaxcollapse.runs import run_study
from jaxcollapse.studies import Option, StudyCommand, register
from jaxcollapse.studies.base import ChainStudy, chain_options, run_options, run_settings


# ---------------------------------------------------------------- 1. the family

class LaplaceParams(NamedTuple):
    loc: jax.Array  # (): mu
    scale: jax.Array  # (): b


def weighted_median(x, weights):
    """The median of ``x`` under frequency weights: the midpoint of the values where the
    cumulative weight reaches and passes half the total (the usual median of the sample
    in which row i appears weights[i] times). A row of weight 0 never moves either
    crossing, so a padded row is ignored; the midpoint keeps the median of an even
    sample symmetric, which E[mu_n] = mu_0 needs (the lower median is biased)."""
    xs, ws = jax.lax.sort((x, weights), num_keys=1)
    cumulative = jnp.cumsum(ws)
    half = 0.5 * cumulative[-1]
    # cumulative is non-decreasing, so counting the entries below a level finds the
    # first entry at or above it
    first = jnp.sum(cumulative < half)  # first index whose cumulative weight reaches half
    last = jnp.minimum(jnp.sum(cumulative <= half), x.shape[0] - 1)  # first that passes it
    return 0.5 * (xs[first] + xs[last])


def fit(key, data, weights):
    """Maximum likelihood: the weighted median, then the weighted mean absolute deviation
    about it. Deterministic, so the key is unused."""
    del key
    # a weight-0 row is a padded slot and may hold anything: read it as 0, or a NaN
    # there would make 0 * NaN = NaN of the scale
    x = jnp.where(weights > 0, data[:, 0], 0.0)
    loc = weighted_median(x, weights)
    scale = jnp.sum(weights * jnp.abs(x - loc)) / jnp.sum(weights)
    return LaplaceParams(loc, scale)


def sample(key, params, n):
    """n exact draws, as rows of one float (the family's ``row``)."""
    return params.loc + params.scale * jax.random.laplace(key, (n, 1))


def metrics(params, reference):
    """Per-generation scalars against p_0 (``reference``, its LaplaceParams)."""
    return {"loc": params.loc, "scale": params.scale, "loc_error": jnp.abs(params.loc - reference.loc)}


METRIC_NAMES = ("loc", "scale", "loc_error")
LAPLACE = Family(name="laplace", row=float_row(1), fit=fit, sample=sample, metrics=metrics)


# ---------------------------------------------------------------- 2. the chain

def laplace_program(policy, sizes, p0, generations=None):
    """The chain: draw D_0 from p_0 (a member of the family: generation 0 is p_0 itself),
    then sample, build D_n with ``policy`` and refit, for the sample sizes ``sizes``."""
    return data_path_program(
        LAPLACE, policy, sizes, lambda key, n: sample(key, p0, n), p0,
        metrics=lambda params: metrics(params, p0), metric_names=METRIC_NAMES,
        num_generations=generations,
    )


def laplace_p0(loc, scale):
    return LaplaceParams(jnp.asarray(loc, jnp.result_type(float)), jnp.asarray(scale, jnp.result_type(float)))


# ---------------------------------------------------------------- 3. what is known

def scale_ratio(m):
    """c(M) = E[b_1] / b_0 for M points, exactly (quadrature in float64).

    With k = floor(M / 2), the absolute deviations about the median sum to the k largest
    points minus the k smallest, so by symmetry E[sum] = 2 E[sum of the k largest]
    = 2 M E[X; X is among the k largest], and X is among them when at least M - k of the
    other M - 1 points lie below it: c(M) = 2 int x f(x) P(Bin(M - 1, F(x)) >= M - k) dx
    for the standard Laplace density f and distribution function F."""
    k = m // 2

    def integrand(x):
        below = 0.5 * np.exp(x) if x < 0 else 1.0 - 0.5 * np.exp(-x)
        return x * np.exp(-abs(x)) * stats.binom.sf(m - k - 1, m - 1, below)

    return integrate.quad(integrand, -np.inf, 0.0)[0] + integrate.quad(integrand, 0.0, np.inf)[0]


def expected_scale(sizes, scale0):
    """E[b_n], n = 0..G, of the replace chain: b_0 times the product of c(M_i), i < n."""
    ratios = [scale_ratio(int(m)) for m in sizes]
    return scale0 * np.concatenate([[1.0], np.cumprod(ratios)])


# ---------------------------------------------------------------- 4. publishing it

@dataclass(frozen=True)
class LaplaceStudy(ChainStudy):
    """A Laplace collapse study: everything that fixes a chain's numbers except the seed
    and how the chains are run, and a JSON round trip (config.json, rerun, resume)."""

    command: ClassVar[str] = "laplace"

    generations: int
    schedule: jc.Schedule
    policy: jc.DataPolicy = jc.DataPolicy()
    loc: float = 0.0
    scale: float = 1.0

    def __post_init__(self):
        # refuse a bad study on the host, before anything is traced
        if not isinstance(self.generations, int) or self.generations < 0:
            raise jc.ConfigError(f"generations must be an integer >= 0; got {self.generations!r}")
        if not (np.isfinite(self.loc) and np.isfinite(self.scale) and self.scale > 0):
            raise jc.ConfigError(f"p0 needs a finite loc and a scale > 0; got {self.loc!r}, {self.scale!r}")
        self.policy.check_sizes(self.sizes)

    @property
    def sizes(self):
        return self.schedule.sizes(self.generations)

    def program(self):
        return laplace_program(self.policy, self.sizes, laplace_p0(self.loc, self.scale), self.generations)

    def theory_curves(self):
        """What the check compares with the simulation (check.csv, report.md)."""
        curves = [Curve("E[loc]", "mu_0 (symmetry)", "exact", "loc_exact",
                        np.full(self.generations + 1, self.loc))]
        if self.policy.kind == "replace":
            curves.append(Curve("E[scale]", "b_0 prod c(M_i)", "exact", "scale_exact",
                                expected_scale(self.sizes, self.scale)))
        return curves

    def describe(self):
        return ["family: Laplace(mu, b), fitted by weighted median and mean absolute deviation",
                f"p0: Laplace({self.loc:g}, {self.scale:g}); regime: {self.policy.describe()}; "
                f"schedule: {self.schedule.describe()}"]

    def to_json(self):
        return {"generations": self.generations, "schedule": self.schedule.to_json(),
                "regime": self.policy.to_json(), "loc": self.loc, "scale": self.scale}

    @classmethod
    def from_json(cls, blob):
        return cls(int(blob["generations"]), jc.Schedule.from_json(blob["schedule"]),
                   jc.DataPolicy.from_json(blob["regime"]), float(blob["loc"]), float(blob["scale"]))


def build(values):
    """A command's complete option values -> (study, run settings)."""
    study = LaplaceStudy(values["generations"], jc.parse_schedule(values["schedule"], values["samples"]),
                         jc.parse_policy(values["regime"]), values["loc"], values["scale"])
    return study, run_settings(values)


COMMAND = StudyCommand(
    name="laplace",
    help="Laplace(mu, b) refitted by weighted median and mean absolute deviation",
    options=chain_options(chains=2000, generations=20, samples=20) + (
        Option("loc", 2.0, "mu_0 of p0 (default 2)", float),
        Option("scale", 1.0, "b_0 of p0 (default 1)", float),
    ) + run_options("results/laplace"),
    build=build,
    from_json=LaplaceStudy.from_json,
)


# ---------------------------------------------------------------- the script

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--samples", type=int, default=20, help="M, every generation")
    parser.add_argument("--regime", default="replace", help="any data policy, e.g. accumulate, mix:0.8,0.1,0.1")
    parser.add_argument("--loc", type=float, default=2.0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default: a new temporary folder)")
    parser.add_argument("--force", action="store_true", help="overwrite a finished run in --out")
    return parser.parse_args(argv)


def write_run_folder(study, settings, folder, force=False):
    """The study through the registry: once registered, the CLI (in this process), sweeps,
    ``rerun`` and ``resume`` find it by its name; ``run_study`` writes its run folder
    (config.json, summary.csv, check.csv, report.md)."""
    register(COMMAND)
    return run_study(study, settings, folder, force=force, figures=False)


def main(argv=None):
    """Print the per-generation table, write a run folder and return the numbers."""
    args = parse_args(argv)
    study, settings = COMMAND.build(COMMAND.values({
        "chains": args.chains, "generations": args.generations, "samples": args.samples,
        "regime": args.regime, "loc": args.loc, "scale": args.scale, "seed": args.seed, "progress": False,
    }))
    result = jc.simulate(study.program(), num_chains=settings.chains, seed=settings.seed)
    loc, scale, error = result.summary("loc"), result.summary("scale"), result.summary("loc_error")
    exact = {curve.column: curve.values for curve in study.theory_curves()}
    print(f"Laplace({args.loc:g}, {args.scale:g}), M = {args.samples}, {args.regime}, {args.chains} chains")
    print(f"{'gen':>4} {'E[b_n]':>9} {'se':>8} {'exact':>8} {'E|mu_n-mu_0|':>13} {'se':>8}")
    for n in range(study.generations + 1):
        formula = f"{exact['scale_exact'][n]:8.4f}" if "scale_exact" in exact else f"{'-':>8}"
        print(f"{n:>4} {scale['mean'][n]:9.4f} {scale['se'][n]:8.4f} {formula} "
              f"{error['mean'][n]:13.4f} {error['se'][n]:8.4f}")
    folder = args.out or tempfile.mkdtemp(prefix="laplace-")
    paths, rows = write_run_folder(study, settings, folder, force=args.force)
    for verdict in verdicts(rows):
        print(f"check: {verdict.quantity} = {verdict.formula}: {'agrees' if verdict.agrees else 'DISAGREES'} "
              f"(worst |z| = {abs(verdict.worst_z):.2f})")
    print(f"wrote {', '.join(sorted(path.name for path in paths.values()))} to {folder}")
    return {"study": study, "loc": loc, "scale": scale, "loc_error": error, "exact": exact, "rows": rows,
            "paths": paths}


if __name__ == "__main__":
    main()
