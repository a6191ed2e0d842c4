"""Where the discrete study used to live: the study, its factory and its ``discrete``
command are :mod:`jaxcollapse.studies.discrete` now, the families (fit, sample, metrics,
the counts samplers) :mod:`jaxcollapse.families.discrete`. This module re-exports the
public names it had."""

from .families.discrete import (  # noqa: F401 (re-exported)
    CATEGORICAL_METRICS, KINDS, MAX_COUNT, PER_STATE_METRICS, POISSON_METRICS, DiscreteParams,
)
from .studies.discrete import (  # noqa: F401 (re-exported)
    COUNTS_REGIMES, DISCRETE_PATHS, DISCRETE_REQUIRED_COLUMNS, EXACT_SOLVER_STATES, FINAL_METRICS, INDICATOR_METRICS,
    PROBABILITY_TOLERANCE, DiscreteInitial, DiscreteStudy, discrete_study, initial_from_probs, mixture_probabilities,
    parse_discrete_initial, probability_vector, state_index, zipf_probabilities,
)

__all__ = [
    "DiscreteInitial", "DiscreteStudy", "DiscreteParams", "discrete_study", "parse_discrete_initial",
    "probability_vector", "zipf_probabilities", "mixture_probabilities", "KINDS", "DISCRETE_PATHS",
    "PER_STATE_METRICS", "FINAL_METRICS", "PROBABILITY_TOLERANCE",
]
