"""Keep freed memory in the process heap while jaxcollapse computes (Linux, glibc).

XLA:CPU allocates the temporary buffers of a compiled program afresh at every call.
glibc serves an allocation above its mmap threshold (at most 32 MiB) with fresh pages
from ``mmap`` and unmaps them at ``free``, so every call of a program with large
temporaries faults its working set in again, one page at a time, and the kernel zeroes
each page. Measured on this project's 2-core machine: the Poisson split of 112 chains at
K = M = 10^4 (66 MB of temporaries) took 5,000 page faults and 13 ms of kernel time per
call, 22.5 ms a call in all, against 15.8 ms with freed memory kept; a training step of
the tiny OPT ran at 37,560 against 61,934 tokens/s; a ``simulate`` run paid ~12 ms for each
segment it was cut into.

Inside :func:`keep_freed_memory` glibc serves every allocation from its heap
(``M_MMAP_MAX`` = 0) and keeps up to ``retain_bytes`` of freed memory there for reuse
(``M_TRIM_THRESHOLD``), so the second call of a program reuses the pages of the first.
On leaving the outermost such block, blocks above 32 MiB are mmapped again, glibc keeps at
most 64 MiB of freed memory (the values its dynamic thresholds reach in a program that
frees large blocks; a mallopt call switches that adaptation off) and the rest of the
retained memory is handed back to the system (``malloc_trim``). The settings are
process-wide, so no library call opens a block by itself: the ``jaxcollapse`` command runs
every command inside one, and code that calls ``simulate``, the VAE or language-model
training, or drives jaxcollapse's compiled steps itself, wraps its calls in it to get the
same speed (the benchmarks do). Other platforms and C libraries are left alone (the block
does nothing), and so is every process where ``JAXCOLLAPSE_KEEP_HEAP=0`` is set.

mallopt settings are global to the process: while a block is open, allocations of other
threads are also served from the heap. Blocks nest and may be opened from several
threads; the settings change only at the outermost entry and exit.

Large models: XLA:CPU runs a program on worker threads, and glibc gives each thread an
arena of its own whose heaps hold at most 64 MiB; a larger block is mmapped whatever
``M_MMAP_MAX`` says and unmapped at ``free``. XLA allocates all of a program's
temporaries as one block (814 MB for a training step of OPT-125m at 8 blocks of 64 tokens),
so such a step faulted ~199,000 pages in at every call. :func:`run_cpu_programs_inline`
(JAX's ``jax_cpu_enable_async_dispatch=False``, called before JAX's first computation)
runs programs on the calling thread, whose allocations come from the main heap that the
block keeps: the same OPT-125m step went from 2.02-2.20 s and 199,000 faults to 1.82-1.83 s
and none, and the tiny OPT's step stayed at 21-24 ms (measured, separate processes). The
setting is process-wide (it also stops JAX from overlapping Python with computation,
which loops that block on every step, as jaxcollapse's training loops do, never used), so
the library leaves it to the program: the ``jaxcollapse lm`` command sets it, and so does
``benchmarks/lm.py``. Starting Python with ``MALLOC_ARENA_MAX=1`` also makes every thread
allocate from the main heap (the 12 layers of OPT-125m, forward and backward: 120,000
faults and 2.5-3.0 s a call to none and 2.1-2.2 s), but slowed programs of many small
operations: the tiny OPT's training 15-40 % in three paired runs, the worker threads
contending for the one arena.

Examples:
    >>> import jax.numpy as jnp
    >>> with keep_freed_memory():
    ...     total = float(jnp.ones(1000).sum())
    >>> total
    1000.0
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import threading

from .._validation import ConfigError

__all__ = ["keep_freed_memory", "run_cpu_programs_inline", "ENV_SWITCH"]

ENV_SWITCH = "JAXCOLLAPSE_KEEP_HEAP"  # "0" leaves glibc's allocator settings alone

# mallopt parameters (malloc.h). Any mallopt call switches off glibc's dynamic mmap
# threshold for good, which rises (to at most 32 MiB, with the trim threshold at twice it)
# as a program frees large blocks; leaving a block therefore sets the values it would have
# reached, not the initial 128 KiB (with those, numpy's loops of large temporaries ran
# 7-13 % slower after a block, measured).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_ADAPTED_MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
_ADAPTED_TRIM_THRESHOLD = 2 * _ADAPTED_MMAP_THRESHOLD
_DEFAULT_MMAP_MAX = 65536
RETAIN_BYTES = 1 << 30

_lock = threading.Lock()
_depth = 0


@functools.lru_cache(maxsize=None)
def _glibc():
    """glibc's handle, or None off Linux/glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it (musl's mallopt does nothing)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    return libc


def _enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def keep_freed_memory(retain_bytes: int = RETAIN_BYTES):
    """Serve allocations from the heap and keep freed memory for reuse inside the block.

    ``retain_bytes`` (a positive int, default 1 GiB) is how much freed memory at the top of
    the heap glibc keeps rather than returning it to the system; the outermost block sets
    it. Off Linux/glibc, or with ``JAXCOLLAPSE_KEEP_HEAP=0``, the block changes nothing.
    """
    global _depth
    if isinstance(retain_bytes, bool) or not isinstance(retain_bytes, int) or not 0 < retain_bytes < 2**31:
        raise ConfigError(f"retain_bytes must be an int in [1, 2**31 - 1]; got {retain_bytes!r}")
    libc = _glibc() if _enabled() else None
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, retain_bytes)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_MMAP_THRESHOLD, _ADAPTED_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, _ADAPTED_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def run_cpu_programs_inline() -> bool:
    """Run compiled CPU programs on the calling thread rather than on a JAX worker thread
    (``jax_cpu_enable_async_dispatch=False``), so that their temporaries come from the main
    heap, which :func:`keep_freed_memory` keeps (see the module's docstring). Process-wide;
    JAX reads the setting when it creates its CPU backend, so call this before JAX's first
    computation. Returns whether programs run inline from now on: False when the backend
    already exists with asynchronous dispatch (nothing is changed then).

    Example (at the top of a script, before any JAX work; not run as a doctest, where it
    would switch the test process):
        >>> from jaxcollapse.heap import run_cpu_programs_inline
        >>> inline = run_cpu_programs_inline()  # doctest: +SKIP
    """
    import jax
    from jax._src import xla_bridge  # no public query of whether the backends exist yet

    if not jax.config.read("jax_cpu_enable_async_dispatch"):
        return True
    if xla_bridge.backends_are_initialized():
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True
