"""GMM, KDE and linear-regression collapse (paper section 5.1; Gerstgrasser et al. 2024).
Run: python examples/classical_collapse.py"""

import numpy as np

import jaxcollapse as jc
from jaxcollapse.check import format_check, theory_table

# GMM: two separated 2-D Gaussians, M = 1000, warm-started EM; the L2 distance to p_0 grows
study = jc.gmm_study(samples=1000, generations=200, iterations=20)
result = jc.simulate(study.program(), num_chains=200, num_generations=200, seed=0, quantile_metrics=("l2_distance",))
median = result.quantiles("l2_distance", [0.5])[:, 0]
print(f"GMM median L2 to p0: gen 1 {median[1]:.2e}, gen 50 {median[50]:.2e}, gen 200 {median[200]:.2e}; "
      f"EM change at gen 200: {result.summary('loglik_change')['mean'][200]:.1e}")

# KDE with a fixed bandwidth: the variance tends to M h^2, not V_0 + n h^2
study = jc.kde_study(samples=20, generations=60, bandwidth=0.3)
result = jc.simulate(study.program(), num_chains=4000, num_generations=60, seed=0)
print(format_check([r for r in theory_table(study, result) if r.quantity == "E[variance]"], shown_generations=[1, 10, 60]))

# Regression: replace grows linearly, accumulate stays bounded (per-chain Gaussian designs)
for regime in ("replace", "accumulate"):
    study = jc.regression_study(samples=50, dim=5, generations=30, regime=regime)
    result = jc.simulate(study.program(), num_chains=10_000, num_generations=30, seed=0)
    error = result.summary("test_error")
    print(f"{regime}: test error at gen 30 = {error['mean'][30]:.4f} +- {error['se'][30]:.4f}, "
          f"published {study.theory_curves()[0].values[30]:.4f}, bound "
          f"{np.pi**2 / 6 * 5 / 44:.4f} (accumulate)")
