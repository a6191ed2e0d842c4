"""jaxcollapse: Monte Carlo simulation of model collapse with JAX.

Examples:
    >>> import jaxcollapse as jc
    >>> study = jc.gaussian_study(samples=100, generations=20)
    >>> result = jc.simulate(study.program(), num_chains=1000, num_generations=20, seed=0)
    >>> risk = result.summary("w2_risk")  # mean and standard error per generation
"""

from ._validation import ConfigError
from .engine import ChainProgram, SimulationResult, simulate
from .heap import keep_freed_memory
from .families import Family, GaussianParams, SufficientStatistics, gaussian
from .initial import (
    InitialDistribution, laplace_initial, mixture_initial, normal_initial, numpyro_initial, student_t_initial,
)
from .policies import DataPolicy, parse_policy
from .schedules import Schedule, constant, explicit, geometric, linear, parse_schedule, power
from .studies.discrete import DiscreteStudy, discrete_study
from .studies.gaussian import GaussianStudy, gaussian_study
from .studies.gmm import GMMStudy, gmm_study
from .studies.kde import KDEStudy, kde_study
from .studies.regression import RegressionStudy, regression_study

__all__ = [
    "ConfigError", "ChainProgram", "SimulationResult", "simulate", "keep_freed_memory", "Family", "GaussianParams",
    "SufficientStatistics", "gaussian", "InitialDistribution", "laplace_initial", "mixture_initial",
    "normal_initial", "numpyro_initial", "student_t_initial", "DataPolicy", "parse_policy", "Schedule",
    "constant", "explicit", "geometric", "linear", "parse_schedule", "power", "GaussianStudy",
    "gaussian_study", "DiscreteStudy", "discrete_study", "GMMStudy", "gmm_study", "KDEStudy", "kde_study", "RegressionStudy",
    "regression_study",
]
__version__ = "0.1.0"
