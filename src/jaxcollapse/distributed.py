"""Runs over several processes (multi-host GPU or TPU, or several local CPU processes).

Call :func:`initialize` in every process before anything else touches JAX; then
``simulate(..., num_devices=None)`` shards every chunk's chains over the devices of all
processes (a global ``chains`` mesh), and every process receives the same records: the
across-chain summaries are reduced inside the compiled program, per-chain records and
checkpoints are gathered from all processes. Each chain's numbers do not depend on the
number of processes or devices (its random words depend only on the seed, the generation
and its index), so a two-process run equals a one-process run.

Launching:

* **GPU cluster (SLURM)**: ``srun --ntasks-per-node=GPUS python script.py``; inside,
  ``initialize()`` with no arguments detects the coordinator, process count and id from
  SLURM's environment.
* **TPU pod**: run the same script on every host (``gcloud compute tpus tpu-vm ssh ...
  --worker=all --command="python script.py"``); ``initialize()`` detects the pod.
* **Local CPU processes** (testing): ``initialize("127.0.0.1:PORT", 2, i)`` in process i;
  CPU collectives go through gloo over loopback.
* **The command line**: every chain command (``gaussian``, ``discrete``, ``gmm``, ``kde``,
  ``regression``) takes ``--distributed`` (detect, as above) or ``--coordinator HOST:PORT
  --num-processes N --process-id I``; start the same command in every process. Process 0
  writes the run folder (which must be on a file system every process sees, so that a
  restarted run resumes from its checkpoint); the others compute their share and write
  nothing.

Example (in every process, before anything else uses JAX)::

    import jaxcollapse as jc
    from jaxcollapse.distributed import initialize, is_main_process

    initialize()
    study = jc.gaussian_study(samples=100, generations=1000)
    result = jc.simulate(study.program(), num_chains=10**8, num_generations=1000, num_devices=None)
    if is_main_process():
        print(result.summary("w2_risk")["mean"][-1])
"""

from __future__ import annotations

import jax

from ._validation import ConfigError

__all__ = ["initialize", "is_main_process"]

_joined = False


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, **options) -> None:
    """``jax.distributed.initialize`` with CPU collectives over gloo (XLA:CPU has no other
    cross-process collectives); arguments left None are detected from the cluster's
    environment (SLURM, TPU pods, Open MPI). A second call (a sweep's next cell) does
    nothing: a process joins the run once."""
    global _joined
    if _joined:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, **options)
    except (ValueError, RuntimeError) as error:  # JAX's word when no cluster can be detected or reached
        raise ConfigError(f"could not join a multi-process run ({error}); outside a cluster that JAX detects "
                          f"(SLURM, TPU pods, Open MPI), give --coordinator HOST:PORT, --num-processes and "
                          f"--process-id") from None
    _joined = True


def is_main_process() -> bool:
    """True in the process that should write shared outputs (process 0)."""
    return jax.process_index() == 0
