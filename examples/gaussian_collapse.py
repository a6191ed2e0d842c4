"""A small Gaussian collapse study through the Python API.

Runs the replace chain for three sample-size schedules (constant, linear and quadratic
growth), compares the W2 risk with the exact theory and saves a figure: only the
superlinear schedule keeps the risk bounded (paper, section 4.2).

    python examples/gaussian_collapse.py [OUT.png]
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import jaxcollapse as jc
from jaxcollapse.check import theory_curves

GENERATIONS, CHAINS = 100, 4000


def main(out="gaussian_collapse.png"):
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for schedule, colour in (("constant", "tab:blue"), ("linear:20", "tab:orange"), ("power:2", "tab:green")):
        study = jc.gaussian_study(samples=20, generations=GENERATIONS, schedule=schedule)
        result = jc.simulate(study.program(), num_chains=CHAINS, num_generations=GENERATIONS, seed=0)
        risk = result.summary("w2_risk")
        exact = next(c.values for c in theory_curves(study) if c.column == "w2_risk_exact")
        generations = np.arange(1, GENERATIONS + 1)
        axis.fill_between(generations, (risk["mean"] - 2 * risk["se"])[1:], (risk["mean"] + 2 * risk["se"])[1:],
                          color=colour, alpha=0.3)
        axis.plot(generations, exact[1:], color=colour, label=f"{study.schedule.describe()}: exact")
        worst = np.max(np.abs((risk["mean"] - exact)[1:] / risk["se"][1:]))
        print(f"{study.schedule.describe():>28}: E[R_W2] at generation {GENERATIONS} = "
              f"{risk['mean'][-1]:.4f} +- {risk['se'][-1]:.4f} (exact {exact[-1]:.4f}, worst |z| {worst:.2f})")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("generation")
    axis.set_ylabel("expected W2 risk")
    axis.set_title("Monte Carlo (+-2 s.e. bands) against the exact theory")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    print(f"saved {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
