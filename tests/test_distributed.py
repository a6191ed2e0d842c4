"""Two local processes (gloo CPU collectives over loopback) give what one process gives."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    process, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import jax
    if process >= 0:
        from jaxcollapse.distributed import initialize
        initialize(f"127.0.0.1:{port}", 2, process)
    import jaxcollapse as jc
    from jaxcollapse.discrete import discrete_study
    assert jax.device_count() == 4
    gaussian = jc.gaussian_study(samples=10, generations=5).program()
    summary = jc.simulate(gaussian, num_chains=100, num_generations=5, seed=2, num_devices=None,
                          metrics=("w2_risk",), quantile_metrics=("w2_risk",), chunk_size=64)
    study = discrete_study(samples=8, generations=5, states=3, init="uniform")
    chains = jc.simulate(study.program(), num_chains=40, num_generations=5, seed=1, num_devices=None,
                         record="trajectories", metrics=("support",), final_metrics=study.final_metrics())
    np.savez(out, moments=summary.moments["w2_risk"], sketch=summary.sketches["w2_risk"],
             support=chains.trajectories["support"], absorbed=chains.final["absorption_generation"],
             processes=jax.process_count())
""")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    port = str(_free_port())
    two = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    one = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    workers = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(i), port, str(tmp_path / f"p{i}.npz")], env=two,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    single = subprocess.run([sys.executable, "-c", SCRIPT, "-1", port, str(tmp_path / "single.npz")], env=one,
                            capture_output=True, text=True, timeout=300)
    logs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), logs
    assert single.returncode == 0, single.stderr
    reference = np.load(tmp_path / "single.npz")
    assert int(reference["processes"]) == 1
    for i in (0, 1):
        got = np.load(tmp_path / f"p{i}.npz")
        assert int(got["processes"]) == 2
        # per-chain records bit for bit; moments reduced in another order: to rounding
        for key in ("support", "absorbed", "sketch"):
            np.testing.assert_array_equal(got[key], reference[key], err_msg=key)
        np.testing.assert_allclose(got["moments"], reference["moments"], rtol=1e-5)
