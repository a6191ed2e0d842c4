"""Model families: pure ``fit``/``sample`` pairs that plug into the engine."""

from .base import Family, SufficientStatistics, float_row
from .gaussian import GaussianParams, GaussianReference, GaussianStats, gaussian, gaussian_reference

__all__ = [
    "Family",
    "SufficientStatistics",
    "float_row",
    "GaussianParams",
    "GaussianReference",
    "GaussianStats",
    "gaussian",
    "gaussian_reference",
]
