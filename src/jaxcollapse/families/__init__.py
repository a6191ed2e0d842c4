"""Model families: pure ``fit``/``sample`` pairs that plug into the engine.

One module per family: :mod:`~jaxcollapse.families.gaussian`,
:mod:`~jaxcollapse.families.discrete`, :mod:`~jaxcollapse.families.gmm`,
:mod:`~jaxcollapse.families.kde` and :mod:`~jaxcollapse.families.regression`; the study of
each lives in :mod:`jaxcollapse.studies`."""

from .base import Family, SufficientStatistics, float_row
from .discrete import DiscreteParams, DiscreteReference, discrete, discrete_reference
from .gaussian import GaussianParams, GaussianReference, GaussianStats, gaussian, gaussian_reference
from .regression import RegressionParams, regression

__all__ = [
    "Family",
    "SufficientStatistics",
    "float_row",
    "GaussianParams",
    "GaussianReference",
    "GaussianStats",
    "gaussian",
    "gaussian_reference",
    "DiscreteParams",
    "DiscreteReference",
    "discrete",
    "discrete_reference",
    "RegressionParams",
    "regression",
]
