"""The ``gmm`` study command: Gaussian mixtures refitted by EM (paper section 5.1, Figures 7 and 13).

Example:
    >>> study, settings = COMMAND.build(COMMAND.values({"samples": 50, "generations": 2, "covariance": "diag"}))
    >>> study.covariance_type, settings.chains
    ('diag', 200)
"""

from __future__ import annotations

from ..gmm import GMMStudy, gmm_study
from .base import Option, StudyCommand, chain_options, floats, ints, run_options, run_settings

__all__ = ["COMMAND"]


def _build(values: dict):
    study = gmm_study(
        samples=values["samples"], generations=values["generations"], components=values["components"],
        covariance_type=values["covariance"], iterations=values["iterations"], init=values["init"],
        reg_covar=values["reg_covar"], kmeans_iterations=values["kmeans_iterations"], p0=values["p0"],
        dim=values["dim"], schedule=values["schedule"], regime=values["regime"], heldout=values["heldout"],
        weight_threshold=values["weight_threshold"], variance_threshold=values["variance_threshold"],
    )
    return study, run_settings(values, quantiles=values["quantiles"], figure_samples=values["figure_samples"])


COMMAND = StudyCommand(
    name="gmm",
    help="Gaussian mixtures refitted by EM (paper section 5.1, Figures 7 and 13)",
    options=chain_options(chains=200, generations=200, samples=1000) + (
        Option("components", 2, "k, components of the fitted mixture (default 2)", int),
        Option("covariance", "full", "full | diag | spherical (default full)"),
        Option("iterations", 20, "EM iterations per generation (default 20)", int),
        Option("init", "previous", "previous (warm start) | kmeans++ | kmeans (default previous)"),
        Option("kmeans_iterations", 10, "Lloyd steps of the kmeans start (default 10)", int),
        Option("reg_covar", 1e-6, "covariance floor added to every diagonal (default 1e-6)", float),
        Option("p0", "two-blobs", "two-blobs | two-blobs:SEPARATION | blob (default two-blobs)"),
        Option("dim", 2, "dimension d (default 2)", int),
        Option("heldout", 1000, "held-out real points for the log-likelihood (default 1000)", int),
        Option("weight_threshold", 0.01, "a component lighter than this has collapsed", float),
        Option("variance_threshold", 1e-3, "a component with det(cov)^(1/d) below this has collapsed", float),
    ) + run_options("results/gmm") + (
        Option("quantiles", (0.05, 0.5, 0.95), "of the L2 distance", floats),
        Option("figure_samples", None, "extra M of Figure 13, 64 chains each (default 100,300)", ints),
    ),
    build=_build,
    from_json=GMMStudy.from_json,
    rank=2,
)
