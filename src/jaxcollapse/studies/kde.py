"""The ``kde`` study command: Gaussian kernel density estimators refitted on their own samples.

Example:
    >>> study, _ = COMMAND.build(COMMAND.values({"samples": 20, "generations": 2, "bandwidth": "scott"}))
    >>> study.bandwidth
    'scott'
"""

from __future__ import annotations

from ..initial import parse_initial
from ..kde import KDEStudy, kde_study
from .base import Option, StudyCommand, chain_options, run_options, run_settings

__all__ = ["COMMAND"]


def _build(values: dict):
    study = kde_study(
        samples=values["samples"], generations=values["generations"], bandwidth=values["bandwidth"],
        schedule=values["schedule"], regime=values["regime"], dim=values["dim"],
        initial=parse_initial(values["p0"], values["mean"], values["sigma"], values["dim"]), heldout=values["heldout"],
    )
    return study, run_settings(values)


COMMAND = StudyCommand(
    name="kde",
    help="Gaussian kernel density estimators refitted on their own samples",
    options=chain_options(chains=1000, generations=100, samples=100) + (
        Option("bandwidth", "0.1", "h > 0 (kernel sd) | scott | silverman (default 0.1)"),
        Option("dim", 1, "dimension d (default 1)", int),
        Option("mean", 0.0, "mean of p0 (every coordinate)", float),
        Option("sigma", 1.0, "standard deviation (scale) of p0", float),
        Option("p0", "normal", "normal | student-t:DF | laplace | mixture:SEPARATION"),
        Option("heldout", 256, "held-out real points for the NLL (default 256)", int),
    ) + run_options("results/kde"),
    build=_build,
    from_json=KDEStudy.from_json,
    rank=3,
)
