"""The ``regression`` study command: linear regression refitted on its own labels
(Gerstgrasser et al. 2024).

Example:
    >>> study, _ = COMMAND.build(COMMAND.values({"samples": 30, "dim": 3, "generations": 2}))
    >>> study.samples, study.dim
    (30, 3)
"""

from __future__ import annotations

import numpy as np

from .._validation import ConfigError
from ..regression import RegressionStudy, regression_study
from .base import Option, StudyCommand, run_options, run_settings

__all__ = ["COMMAND"]


def _build(values: dict):
    design, samples, dim = values["design"], values["samples"], values["dim"]
    if values["design_file"] is not None:
        try:
            design = np.loadtxt(values["design_file"], delimiter=",", ndmin=2)
        except (OSError, ValueError) as error:
            raise ConfigError(f"could not read --design-file {values['design_file']!r} as CSV numbers: "
                              f"{error}") from error
        samples, dim = design.shape
    study = regression_study(
        samples=samples, dim=dim, generations=values["generations"], noise=values["noise"],
        regime=values["regime"], design=design, design_seed=values["design_seed"], path=values["path"],
    )
    return study, run_settings(values)


COMMAND = StudyCommand(
    name="regression",
    help="linear regression refitted on its own labels (Gerstgrasser et al. 2024)",
    options=(
        Option("chains", 10_000, "independent chains (default 10000)", int),
        Option("generations", 50, "fitted generations G (default 50)", int),
        Option("samples", 100, "T, rows of the fixed design (default 100)", int),
        Option("dim", 10, "d, features (default 10)", int),
        Option("noise", 1.0, "sigma, label noise (default 1)", float),
        Option("regime", "replace", "replace | accumulate (default replace)"),
        Option("design", "per-chain", "per-chain (a Gaussian design per chain) | shared (one for all chains)"),
        Option("design_seed", 0, "seed of the shared design (default 0)", int),
        Option("design_file", None, "CSV of a shared design, T rows of d numbers (overrides --design and --samples)"),
        Option("path", "auto", "auto | data | sufficient (default auto)"),
    ) + run_options("results/regression"),
    build=_build,
    from_json=RegressionStudy.from_json,
    rank=4,
)
