"""Where the regression study used to live: the study, its factory and its
``regression`` command are :mod:`jaxcollapse.studies.regression` now; the family (labels,
least-squares fit, metrics) is :mod:`jaxcollapse.families.regression`. This module
re-exports the public names it had."""

from .families.regression import METRICS, RegressionParams  # noqa: F401
from .studies.regression import (  # noqa: F401 (re-exported)
    CONDITION_LIMIT, DESIGNS, FLOAT32_CONDITION_LIMIT, PATHS, REGRESSION_REGIMES, RegressionStudy, regression_study,
)

__all__ = [
    "RegressionParams", "RegressionStudy", "regression_study", "REGRESSION_REGIMES", "DESIGNS", "PATHS",
    "METRICS",
]
