"""keep_freed_memory: large blocks come from the heap and stay there, settings restored."""

import ctypes

import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse._xla_cpu import heap

BLOCK = 64 << 20  # above glibc's largest mmap threshold (32 MiB): mmapped by default

needs_glibc = pytest.mark.skipif(heap._glibc() is None or not hasattr(heap._glibc(), "mallinfo2"),
                                 reason="mallopt settings and mallinfo2 exist only in glibc (>= 2.33)")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_info():
    mallinfo2 = heap._glibc().mallinfo2
    mallinfo2.restype = _MallInfo2
    return mallinfo2()


def _where_a_block_lives():
    """(bytes newly mmapped while a 64 MiB block lives, free heap bytes after it is freed)."""
    before = _malloc_info()
    block = np.ones(BLOCK // 8)
    mapped = _malloc_info().hblkhd - before.hblkhd
    del block
    return mapped, _malloc_info().fordblks


@needs_glibc
def test_large_blocks_come_from_the_heap_inside_and_from_mmap_outside():
    with jc.keep_freed_memory():
        mapped, free_after = _where_a_block_lives()
        assert mapped < BLOCK and free_after >= BLOCK  # served by the heap, kept there once freed
    mapped, _ = _where_a_block_lives()
    assert mapped >= BLOCK


@needs_glibc
def test_nested_blocks_restore_the_defaults_only_at_the_outermost_exit():
    with jc.keep_freed_memory():
        with jc.keep_freed_memory():
            pass
        mapped, _ = _where_a_block_lives()
        assert mapped < BLOCK
    assert heap._depth == 0
    assert _where_a_block_lives()[0] >= BLOCK


@needs_glibc
def test_the_environment_switch_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(heap.ENV_SWITCH, "0")
    with jc.keep_freed_memory():
        assert _where_a_block_lives()[0] >= BLOCK
        assert heap._depth == 0


def test_an_exception_inside_the_block_still_restores_the_settings():
    with pytest.raises(RuntimeError, match="inside"):
        with jc.keep_freed_memory():
            raise RuntimeError("inside")
    assert heap._depth == 0


@pytest.mark.parametrize("retain_bytes", [0, -1, 2**31, 1.5, True, "1"])
def test_bad_retain_bytes_is_refused(retain_bytes):
    with pytest.raises(jc.ConfigError, match="retain_bytes"):
        with jc.keep_freed_memory(retain_bytes):
            pass


_THREAD_BLOCK_SCRIPT = """
import ctypes, threading
import numpy as np
import jaxcollapse as jc
from jaxcollapse._xla_cpu import heap

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
heap._glibc().mallinfo2.restype = Info
mapped = []

def allocate():  # a thread started after the import, as XLA's workers are
    before = heap._glibc().mallinfo2().hblkhd
    block = np.ones((64 << 20) // 8)
    mapped.append(heap._glibc().mallinfo2().hblkhd - before)
    del block

with jc.keep_freed_memory():
    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()
print(mapped[0] >= (64 << 20))
"""


@needs_glibc
def test_a_worker_threads_large_block_is_kept_only_with_one_arena():
    """What the module's docstring recommends for large models: a thread's own glibc arena
    mmaps any block above 64 MiB whatever keep_freed_memory sets; with
    MALLOC_ARENA_MAX=1 the thread allocates from the main heap, which the block keeps."""
    import os
    import subprocess
    import sys

    def mapped(**env):
        environment = {key: value for key, value in os.environ.items() if key not in ("MALLOC_ARENA_MAX", heap.ENV_SWITCH)}
        out = subprocess.run([sys.executable, "-c", _THREAD_BLOCK_SCRIPT], env={**environment, **env},
                             capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert mapped() == ["True"]  # glibc's default: the thread's arena mmaps it
    assert mapped(MALLOC_ARENA_MAX="1") == ["False"]  # from the heap


_INLINE_SCRIPT = """
import resource, sys
from jaxcollapse._xla_cpu import heap
import jaxcollapse as jc
if sys.argv[1] == "inline":
    assert heap.run_cpu_programs_inline()
import jax, jax.numpy as jnp

@jax.jit
def program(x):  # 200 MB of temporaries, one block: above a worker arena's 64 MiB
    return jnp.cumsum(jnp.sin(x * jnp.arange(25 << 20, dtype=jnp.float32)))[::4096]

with jc.keep_freed_memory():
    ready, faults = [], []
    for call in range(6):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        result = program(float(call))
        ready.append(result.is_ready())  # asynchronous dispatch returns before the program ends
        result.block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(all(ready[1:]), min(faults[1:]))
print(heap.run_cpu_programs_inline(), jax.config.read("jax_cpu_enable_async_dispatch"))
"""


@needs_glibc
@pytest.mark.slow  # 9 s cold; the allocator settings themselves are checked fast in this file
def test_programs_run_inline_take_their_temporaries_from_the_kept_heap():
    """run_cpu_programs_inline: a program's 200 MB of temporaries are mmapped and faulted in
    afresh at every call by JAX's worker thread (51,200 pages), not when it runs on the
    calling thread inside keep_freed_memory. Too late (the backend exists) it says so and
    changes nothing. (A call now and then finds the freed block split by a small
    allocation and faults in a fresh one, hence the fewest faults of five calls.)"""
    import os
    import subprocess
    import sys

    def run(mode):
        environment = {key: value for key, value in os.environ.items() if key not in ("MALLOC_ARENA_MAX", heap.ENV_SWITCH)}
        out = subprocess.run([sys.executable, "-c", _INLINE_SCRIPT, mode], env=environment,
                             capture_output=True, text=True, check=True)
        (all_ready, fewest_faults), (too_late, async_dispatch) = (line.split() for line in out.stdout.splitlines())
        return all_ready == "True", int(fewest_faults), too_late == "True", async_dispatch == "True"

    all_ready, fewest_faults, still_inline, async_dispatch = run("inline")
    assert all_ready and fewest_faults < 1000 and still_inline and not async_dispatch
    all_ready, fewest_faults, inline_now, async_dispatch = run("async")
    assert not all_ready and fewest_faults > 40_000 and not inline_now and async_dispatch


class _RecordingLibc:
    """Stands in for glibc: records the allocator settings asked for, changes nothing."""

    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append(("mallopt", parameter, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 0


@pytest.mark.slow  # 9 s of subprocesses; the allocator settings' own tests run by default
def test_library_calls_leave_the_allocator_alone_and_the_cli_asks(tmp_path, monkeypatch, capsys):
    """Process-wide settings are the caller's choice: simulate and a VAE training call
    change none, the ``jaxcollapse`` command turns them on for its run."""
    import jax

    from jaxcollapse.cli import main
    from jaxcollapse.vae import TrainConfig, VAEConfig, train_runs

    recording = _RecordingLibc()
    monkeypatch.setattr(heap, "_glibc", lambda: recording)
    monkeypatch.delenv(heap.ENV_SWITCH, raising=False)
    jc.simulate(jc.gaussian_study(samples=10, generations=2).program(), num_chains=16)
    config = VAEConfig(image_shape=(8, 8), latent=2, architecture="mlp", hidden=(8,))
    train_runs(jax.random.split(jax.random.key(0), 1), config, TrainConfig(epochs=1, batch_size=32),
               jax.numpy.zeros((64, 8, 8, 1)))
    assert recording.calls == []
    assert main(["gaussian", "--chains", "16", "--generations", "2", "--samples", "10", "--no-figures",
                 "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert ("mallopt", heap._M_MMAP_MAX, 0) in recording.calls and recording.calls[-1] == ("malloc_trim", 0)
    with jc.keep_freed_memory():  # and a caller who asks gets them
        pass
    assert recording.calls.count(("mallopt", heap._M_MMAP_MAX, 0)) == 2
