"""Histogram collapse (paper section 4.1): tails vanish, the chain absorbs into one state,
and keeping real data prevents it. Run: python examples/discrete_collapse.py"""

import numpy as np

import jaxcollapse as jc
from jaxcollapse.check import format_check, theory_table

for regime in ("replace", "fresh-real:0.1"):
    study = jc.discrete_study(samples=50, generations=100, states=20, init="mixture", regime=regime)
    result = jc.simulate(study.program(), num_chains=5_000, num_generations=100, seed=0,
                         metrics=study.summary_metrics(), final_metrics=study.final_metrics())
    support = result.summary("support")["mean"]
    absorbed = result.summary("absorbed")["mean"]
    print(f"{regime}: states alive {support[0]:.0f} -> {support[10]:.2f} (gen 10) -> {support[-1]:.2f} (gen 100); "
          f"absorbed by gen 100: {absorbed[-1]:.3f}; tail mass lost at gen 1: "
          f"{result.summary('tail_lost')['mean'][1]:.4f}")
    if regime == "replace":
        rows = theory_table(study, result)
        print(format_check([row for row in rows if row.quantity == "E[heterozygosity]"]))
        times = result.final["absorption_generation"]
        print(f"mean absorption generation of absorbed chains: {np.mean(times[times >= 0]):.1f}")
