"""Devices and processes: two local processes of two devices each (gloo CPU collectives
over loopback) give what one process on one device gives, chain for chain."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.studies.discrete import discrete_study

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    process, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import jax
    from jaxcollapse.distributed import initialize
    initialize(f"127.0.0.1:{port}", 2, process)
    assert jax.device_count() == 4 and jax.local_device_count() == 2
    sys.path.insert(0, sys.argv[4])
    from test_distributed import runs
    np.savez(out, processes=jax.process_count(), **runs(num_devices=None))
""")


def runs(num_devices):
    """Summaries (sufficient path, with a quantile sketch), per-chain trajectories and
    parameters (data path, a resampled pool, 2-D) and final metrics (discrete)."""
    stats = jc.gaussian_study(samples=10, generations=5).program()
    summary = jc.simulate(stats, num_chains=100, num_generations=5, seed=2, num_devices=num_devices,
                          metrics=("w2_risk",), quantile_metrics=("w2_risk",), chunk_size=64)
    data = jc.gaussian_study(samples=6, generations=4, regime="accumulate-subsample", dim=2).program()
    paths = jc.simulate(data, num_chains=10, num_generations=4, seed=9, num_devices=num_devices,
                        record="trajectories", metrics=("w2_risk",))
    study = discrete_study(samples=8, generations=5, states=3, init="uniform")
    chains = jc.simulate(study.program(), num_chains=40, num_generations=5, seed=1, num_devices=num_devices,
                         metrics=("support",), final_metrics=study.final_metrics())
    return {"moments": summary.moments["w2_risk"], "sketch": summary.sketches["w2_risk"],
            "data_mean": paths.params.mean, "data_cov": paths.params.cov, "data_w2": paths.trajectories["w2_risk"],
            "absorbed": chains.final["absorption_generation"], "absorbed_state": chains.final["absorbed_state"]}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_of_two_devices_equal_one_device(tmp_path):
    """Chains sharded over 2 processes x 2 devices equal one device's (30-37 s, so on demand
    with -m slow; test_cli_run_over_two_processes_equals_one_process covers two processes
    in the default run)."""
    port = str(_free_port())
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    here = os.path.dirname(os.path.abspath(__file__))
    workers = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(i), port, str(tmp_path / f"p{i}.npz"), here],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    reference = runs(num_devices=1)
    logs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), logs
    for i in (0, 1):
        got = np.load(tmp_path / f"p{i}.npz")
        assert int(got["processes"]) == 2
        for key, expected in reference.items():
            if key == "moments":  # reduced across devices in another order: equal to rounding
                np.testing.assert_allclose(got[key], expected, rtol=1e-5)
            else:
                np.testing.assert_array_equal(got[key], expected, err_msg=key)


CLI_FLAGS = ["gaussian", "--chains", "96", "--generations", "6", "--samples", "20", "--seed", "3",
             "--no-figures", "--no-progress", "--check"]


def test_cli_run_over_two_processes_equals_one_process(tmp_path, capsys):
    """`jaxcollapse gaussian` started in two processes: process 0 writes the folder, the
    other writes nothing, and the summary equals a single-process run's."""
    from jaxcollapse.cli import main

    port = str(_free_port())
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    shared = tmp_path / "two"
    workers = [subprocess.Popen(
        [sys.executable, "-c", "import sys; from jaxcollapse.cli import main; sys.exit(main(sys.argv[1:]))",
         *CLI_FLAGS, "--out", str(shared), "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
         "--process-id", str(i)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (0, 1)]
    assert main(CLI_FLAGS + ["--out", str(tmp_path / "one")]) == 0
    logs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), logs
    assert "wrote" in logs[0] and "wrote" not in logs[1], logs
    for name in ("summary.csv", "check.csv"):
        one, two = (np.genfromtxt(folder / name, delimiter=",", names=True, dtype=None, encoding="utf-8")
                    for folder in (tmp_path / "one", shared))
        assert one.dtype.names == two.dtype.names
        for column in one.dtype.names:
            if one[column].dtype.kind == "f":  # moments reduced over 4 devices in another order
                # a z-score near 0 is a difference of two close numbers: its rounding is absolute
                atol = 1e-5 if column == "z" else 1e-12
                np.testing.assert_allclose(two[column], one[column], rtol=2e-5, atol=atol, err_msg=column)
            else:
                np.testing.assert_array_equal(two[column], one[column], err_msg=column)
    assert not (shared / "checkpoint.npz").exists()


def test_cli_refuses_a_device_subset_over_several_processes(capsys):
    from jaxcollapse.cli import main

    assert main(CLI_FLAGS + ["--out", "unused", "--distributed", "--devices", "2"]) == 2
    assert "devices must be 0 (all)" in capsys.readouterr().err
    assert main(CLI_FLAGS + ["--out", "unused", "--coordinator", "127.0.0.1:1", "--num-processes", "2"]) == 2
    assert "together" in capsys.readouterr().err
    assert main(CLI_FLAGS + ["--out", "unused", "--coordinator", "127.0.0.1:1", "--num-processes", "2",
                             "--process-id", "2"]) == 2
    assert "process-id must be in [0, num-processes = 2)" in capsys.readouterr().err
