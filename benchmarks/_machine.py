"""What CPU a benchmark ran on: ratios against PyTorch move with the vector units (this
project's machines have differed between sessions: with AVX-512 and AMX or without)."""

from __future__ import annotations

import os
import platform

# the instruction-set flags that decide which GEMM kernels either framework picks
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16")


def cpu() -> dict:
    """``{"model": ..., "cores": ..., "flags": [...]}`` from ``/proc/cpuinfo`` where it exists."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in _FLAGS if f in flags]}


def describe() -> str:
    info = cpu()
    return f"{info['model']}, {info['cores']} cores, {' '.join(info['flags']) or 'no AVX2'}"
