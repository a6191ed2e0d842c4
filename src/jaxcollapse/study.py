"""Where the Gaussian study used to live: it is :mod:`jaxcollapse.studies.gaussian` now
(the study, its factory and its ``gaussian`` command; the family is
:mod:`jaxcollapse.families.gaussian`). This module re-exports its public names."""

from .studies.gaussian import (  # noqa: F401 (re-exported)
    GAUSSIAN_FIGURE_SAMPLES, PATHS, REQUIRED_COLUMNS, GaussianStudy, gaussian_study,
)

__all__ = ["GaussianStudy", "gaussian_study", "PATHS"]
