"""Where the GMM study used to live: the study, its factory and its ``gmm`` command are
:mod:`jaxcollapse.studies.gmm` now; the family (EM fit, sampling, metrics) is
:mod:`jaxcollapse.families.gmm`. This module re-exports the public names it had."""

from .studies.gmm import PREFERRED_CHUNK, GMMInitial, GMMStudy, gmm_initial, gmm_study, parse_gmm_initial  # noqa: F401

__all__ = ["GMMInitial", "GMMStudy", "gmm_study", "gmm_initial", "parse_gmm_initial"]
