"""The ``gaussian`` study command: Gaussian recursion chains (paper section 4.2).

Example:
    >>> study, settings = COMMAND.build(COMMAND.values({"samples": 20, "generations": 2, "regime": "accumulate"}))
    >>> study.policy.kind, settings.quantiles
    ('accumulate', (0.05, 0.5, 0.95))
"""

from __future__ import annotations

from ..initial import parse_initial
from ..study import GaussianStudy, gaussian_study
from .base import Option, StudyCommand, chain_options, floats, ints, run_options, run_settings

__all__ = ["COMMAND"]


def _build(values: dict):
    study = gaussian_study(
        samples=values["samples"], generations=values["generations"], schedule=values["schedule"],
        regime=values["regime"], estimator=values["estimator"],
        initial=parse_initial(values["p0"], values["mean"], values["sigma"], values["dim"]), path=values["path"],
    )
    return study, run_settings(values, quantiles=values["quantiles"], figure_samples=values["figure_samples"])


COMMAND = StudyCommand(
    name="gaussian",
    help="Gaussian recursion chains (paper section 4.2)",
    options=chain_options() + (
        Option("estimator", "unbiased", "unbiased (ddof=1, paper eq. 1) | mle (ddof=0)"),
        Option("dim", 1, "dimension d (default 1)", int),
        Option("mean", 0.0, "mean of p0 (every coordinate)", float),
        Option("sigma", 1.0, "standard deviation (scale) of p0", float),
        Option("p0", "normal", "normal | student-t:DF | laplace | mixture:SEPARATION"),
        Option("path", "auto", "auto | data | sufficient (default auto)"),
    ) + run_options("results/gaussian") + (
        Option("quantiles", (0.05, 0.5, 0.95), "of the W2 risk", floats),
        Option("figure_samples", (100, 500, 1000, 10_000), "M of the single-chain trajectory figure", ints),
    ),
    build=_build,
    from_json=GaussianStudy.from_json,
    rank=0,
)
