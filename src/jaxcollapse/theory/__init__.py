"""Closed forms, kept apart from simulation and tested against it: ``gaussian`` (the
Gaussian chains) and ``discrete`` (histograms, Bernoulli and Poisson chains)."""

from . import discrete, gaussian

from .gaussian import (
    accumulate_exact, accumulate_mean_error_published, paper_var_x, paper_w2_risk, paper_w2_risk_var,
    replace_exact, replace_exact_nd, w2_first_order, w2_lower_bound, w2_var_first_order,
)

__all__ = [
    "discrete", "gaussian", "replace_exact", "replace_exact_nd", "accumulate_exact", "paper_w2_risk", "paper_w2_risk_var",
    "paper_var_x", "w2_lower_bound", "w2_first_order", "w2_var_first_order", "accumulate_mean_error_published",
]
