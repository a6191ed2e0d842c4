"""The ``discrete`` study command: histograms, Bernoulli and Poisson chains (paper section 4.1).

Example:
    >>> study, settings = COMMAND.build(COMMAND.values({"family": "poisson", "samples": 10, "generations": 2}))
    >>> study.kind, study.initial.describe()
    ('poisson', 'Poisson(1)')
"""

from __future__ import annotations

from ..discrete import DiscreteStudy, discrete_study
from .base import Option, StudyCommand, chain_options, run_options, run_settings

__all__ = ["COMMAND"]

DEFAULT_INIT = {"bernoulli": "bernoulli:0.3", "poisson": "poisson:1"}  # for --init mixture (a histogram's)


def _build(values: dict):
    init = values["init"]
    if values["family"] != "categorical" and init == "mixture":
        init = DEFAULT_INIT.get(values["family"], init)
    study = discrete_study(
        samples=values["samples"], generations=values["generations"], family=values["family"],
        states=values["states"], init=init, schedule=values["schedule"], regime=values["regime"],
        smoothing=values["smoothing"], tail_threshold=values["tail_threshold"], path=values["path"],
        per_state=values["per_state"],
    )
    return study, run_settings(values)


COMMAND = StudyCommand(
    name="discrete",
    help="discrete chains: histograms, Bernoulli, Poisson (paper section 4.1)",
    options=chain_options() + (
        Option("family", "categorical", "categorical | bernoulli | poisson"),
        Option("states", 20, "K, states of the histogram (default 20)", int),
        Option("init", "mixture",
               "uniform | zipf:S | mixture | fat-mixture | probs:P1,P2,... | bernoulli:P | poisson:LAMBDA"),
        Option("smoothing", 0.0, "additive smoothing alpha of the fit (default 0)", float),
        Option("tail_threshold", None, "states with p0 below it form the tail (default 1/M)", float),
        Option("path", "auto", "auto | data | counts (default auto)"),
        Option("per_state", None, "record per-state means (default when K <= 64)", None, negation="no_per_state"),
    ) + run_options("results/discrete"),
    build=_build,
    from_json=DiscreteStudy.from_json,
    rank=1,
)
