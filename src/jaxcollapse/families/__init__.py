"""Model families: pure ``fit``/``sample`` pairs that plug into the engine."""

from .base import Family, SufficientStatistics
from .gaussian import GaussianParams, GaussianReference, GaussianStats, gaussian, gaussian_reference

__all__ = [
    "Family",
    "SufficientStatistics",
    "GaussianParams",
    "GaussianReference",
    "GaussianStats",
    "gaussian",
    "gaussian_reference",
]
