"""Keep freed memory in the process heap while jaxcollapse computes (Linux, glibc).

:func:`keep_freed_memory` serves allocations from glibc's heap and keeps freed memory
there for reuse, so that a compiled CPU program does not fault its temporaries in again at
every call; :func:`run_cpu_programs_inline` runs programs on the calling thread, whose
allocations come from that heap. Both live in :mod:`jaxcollapse._xla_cpu.heap`, with the
rest of what jaxcollapse knows about XLA:CPU; see there for why, the settings, and the
measurements. ``JAXCOLLAPSE_KEEP_HEAP=0`` (:data:`ENV_SWITCH`) leaves glibc alone.
"""

from ._xla_cpu.heap import ENV_SWITCH, keep_freed_memory, run_cpu_programs_inline

__all__ = ["keep_freed_memory", "run_cpu_programs_inline", "ENV_SWITCH"]
