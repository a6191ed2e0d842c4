"""Where the KDE study used to live: the study, its factory and its ``kde`` command are
:mod:`jaxcollapse.studies.kde` now; the family (the Gaussian KDE's fit, sampling,
metrics) is :mod:`jaxcollapse.families.kde`. This module re-exports the public names it
had."""

from .studies.kde import HELDOUT_SEED, KDEStudy, kde_study  # noqa: F401

__all__ = ["KDEStudy", "kde_study", "HELDOUT_SEED"]
