import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# One persistent XLA cache for the session's processes (the xdist workers share it): the
# many tests that run the same small program compile it once. Executables are keyed by
# their HLO, flags and JAX version, so a hit runs exactly what a fresh compile would.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "xla"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import numpy as np
import pytest

Z_LIMIT = 5.0


def assert_z(estimate, standard_error, expected, what=""):
    """|estimate - expected| <= 5 standard errors, elementwise, with a readable failure."""
    estimate, standard_error, expected = np.broadcast_arrays(
        np.asarray(estimate, float), np.asarray(standard_error, float), np.asarray(expected, float)
    )
    assert np.all(standard_error > 0), f"{what}: non-positive standard error"
    z = (estimate - expected) / standard_error
    worst = int(np.argmax(np.abs(z)))
    assert np.all(np.abs(z) <= Z_LIMIT), (
        f"{what}: |z| = {abs(z.flat[worst]):.2f} > {Z_LIMIT} at index {worst}: "
        f"estimate {estimate.flat[worst]:.6g} +- {standard_error.flat[worst]:.3g}, expected {expected.flat[worst]:.6g}"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(20260521)
