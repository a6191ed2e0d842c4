#!/usr/bin/env python
"""Throughput of the 1-D Gaussian collapse chain ("replace" regime, unbiased fit).

Measures, side by side in one run (chain-generations per second unless stated):

  (a) paper    the paper-style loop: one chain at a time, pure Python + numpy
               (x = rng.normal(mu, sigma, M); mu, sigma = x.mean(), x.std(ddof=1));
  (b) np-vec   numpy vectorised across chains (rng.standard_normal((C, M)) per
               generation, fit along axis 1), float64 as numpy draws by default;
  (c) jc-data  jaxcollapse, path="data", record="summary" (run time only; the compile
               time is reported separately);
  (d) jc-suff  jaxcollapse, path="sufficient";
  (e) rng      the random-number limit: jitted jax.random.normal for the same C*M*G
               normals, timed after warm-up, as one call and as one (C, M) block per
               generation inside a lax.scan (summed); the limit is the faster of the two;
  (f) np-suff  numpy's vectorised sufficient-statistics loop
               (mean += sigma * N(0,1) / sqrt(M); sigma2 *= Gamma((M-1)/2) * 2/(M-1)).

Every timing is the best of ``--repeats`` (default 3). The contenders that are compared
are timed in interleaved rounds (b, c, e, b, c, e, ...), so that load from other
processes hits them alike. numpy uses np.random.default_rng (PCG64) and is single
threaded; XLA runs jaxcollapse and jax.random on all cores (the "cpu" figure is process
CPU time / wall time). jaxcollapse runs in JAX's default float32 and its figures include
its 7 per-generation metrics and their across-chain moments, which the numpy loops do
not compute.

Usage:
    python benchmarks/gaussian.py            # full run, about two minutes on 2 cores
    python benchmarks/gaussian.py --quick    # smaller sizes, no M = 10, one jaxcollapse
                                             # call per setting: under 30 s
    python benchmarks/gaussian.py --json out.json --gamma   # also write JSON; also time
                                             # the Gamma samplers alone
"""

from __future__ import annotations

import time

_PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxcollapse as jc  # noqa: E402
from _machine import cpu  # noqa: E402

# (chains C, generations G), chosen so each timing lasts roughly 0.5-3 s on a 2-core CPU.
FULL = {
    "data": {100: (10_000, 100), 1000: (1_000, 100)},  # 1e8 normals each
    "suff": {10: (100_000, 150), 100: (100_000, 150), 1000: (100_000, 150)},
    # chain-generations of the paper loop (a few chains of the G above)
    "paper_chain_generations": {10: 200_000, 100: 100_000, 1000: 40_000},
}
QUICK = {
    "data": {100: (2_000, 50), 1000: (200, 50)},  # 1e7 normals each
    "suff": {100: (20_000, 50), 1000: (20_000, 50)},
    "paper_chain_generations": {100: 10_000, 1000: 4_000},
}

TARGETS = {
    "data_vs_rng": 0.7,  # data path normals/s >= 0.7 x the random-number limit
    "data_vs_numpy": 1.0,  # data path >= numpy vectorised
    "suff_vs_numpy": 1.0,  # sufficient path >= numpy's vectorised statistics loop
    "suff_vs_paper_M1000": 1000.0,  # sufficient path >= 1000 x the paper loop at M = 1000
}


# ------------------------------------------------------------------------------ contenders
def paper_loop(M, G, num_chains, seed=0):
    """(a): one chain at a time, as a paper's notebook would write it."""
    rng = np.random.default_rng(seed)
    final = np.empty(num_chains)
    for chain in range(num_chains):
        mu, sigma = 0.0, 1.0
        for _ in range(G):
            x = rng.normal(mu, sigma, M)
            mu, sigma = x.mean(), x.std(ddof=1)
        final[chain] = sigma**2
    return final


def numpy_vectorised(M, C, G, seed=0):
    """(b): all chains at once, one (C, M) block of normals per generation."""
    rng = np.random.default_rng(seed)
    mu, sigma = np.zeros(C), np.ones(C)
    for _ in range(G):
        x = mu[:, None] + sigma[:, None] * rng.standard_normal((C, M))
        mu, sigma = x.mean(axis=1), x.std(axis=1, ddof=1)
    return sigma**2


def numpy_sufficient(M, C, G, seed=0):
    """(f): the exact statistics: xbar ~ N(mu, sigma^2/M), scatter ~ sigma^2 chi^2_{M-1}."""
    rng = np.random.default_rng(seed)
    mean, sigma2 = np.zeros(C), np.ones(C)
    shape, scale, root_m = (M - 1) / 2, 2.0 / (M - 1), math.sqrt(M)
    for _ in range(G):
        mean += np.sqrt(sigma2) * rng.standard_normal(C) / root_m
        sigma2 *= rng.standard_gamma(shape, C) * scale
    return sigma2


def numpy_sufficient_with_risk(M, C, G, seed=0):
    """(f2): (f) that also records what a study needs: the across-chain mean and variance
    of the W2 risk R = (mu - 0)^2 + (sigma - 1)^2 at every generation."""
    rng = np.random.default_rng(seed)
    mean, sigma2 = np.zeros(C), np.ones(C)
    shape, scale, root_m = (M - 1) / 2, 2.0 / (M - 1), math.sqrt(M)
    risk_mean, risk_var = np.empty(G), np.empty(G)
    for g in range(G):
        mean += np.sqrt(sigma2) * rng.standard_normal(C) / root_m
        sigma2 *= rng.standard_gamma(shape, C) * scale
        risk = mean**2 + (np.sqrt(sigma2) - 1.0) ** 2
        risk_mean[g], risk_var[g] = risk.mean(), risk.var(ddof=1)
    return sigma2


def rng_functions(M, C, G):
    """(e): jitted jax.random.normal for C*M*G normals: one call, and per-generation blocks."""
    total = C * M * G
    one_call = jax.jit(lambda key: jax.random.normal(key, (total,)))

    def per_generation(key):
        def body(acc, n):
            return acc + jnp.sum(jax.random.normal(jax.random.fold_in(key, n), (C, M))), None

        return jax.lax.scan(body, jnp.float32(0.0), jnp.arange(G))[0]

    return {"one_call": one_call, "scan_blocks": jax.jit(per_generation)}


def gamma_benchmark(repeats, draws=1_000_000, shapes=(499.5, 49.5, 4.5)):
    """``--gamma``: Gamma(shape) draws per second, the sufficient path's bottleneck.

    jaxcollapse's sampler is per-key (vmapped over ``draws`` keys; splitting the keys is
    timed with it, as the engine derives a key per chain too); numpy's and
    ``jax.random.gamma`` draw one array. ``jax.random.normal`` is the array-level reference.
    """
    try:
        from jaxcollapse._random import gamma as jc_gamma
    except ImportError:  # private API: it may move
        jc_gamma = None
    rows = {}
    for shape in shapes:
        rng = np.random.default_rng(0)
        row = {}
        contenders = {
            "numpy f64": lambda: rng.standard_gamma(shape, draws),
            "numpy f32": lambda: rng.standard_gamma(shape, draws, dtype=np.float32),
        }
        jitted = {
            "jax.random.gamma": jax.jit(lambda key: jax.random.gamma(key, shape, (draws,))),
            "jax.random.normal": jax.jit(lambda key: jax.random.normal(key, (draws,))),
        }
        if jc_gamma is not None:
            jitted["jc _random.gamma"] = jax.jit(
                lambda key: jax.vmap(jc_gamma, (0, None))(jax.random.split(key, draws), shape))
        for name, fn in jitted.items():
            fn(jax.random.key(0)).block_until_ready()
            contenders[name] = (lambda f: lambda: f(jax.random.key(1)).block_until_ready())(fn)
        for name, fn in contenders.items():
            timing = Timing()
            for _ in range(repeats):
                timing.time(fn)
            row[name] = {"rate": draws / timing.best, "cpu_per_wall": timing.best_cpu}
        rows[shape] = row
    names = list(next(iter(rows.values())))
    print(f"\nGamma(shape) draws per second, {draws:.0e} draws, best of {repeats} (cpu = CPU time / wall)")
    print(f"{'shape':>7} | " + " | ".join(f"{name:>18}" for name in names))
    for shape, row in rows.items():
        print(f"{shape:>7} | " + " | ".join(
            f"{row[name]['rate']:10.3e} ({row[name]['cpu_per_wall']:.1f})" + " " * 2 for name in names))
    return rows


# ------------------------------------------------------------------------------ timing
class Timing:
    """Best-of timings of one contender, with the CPU utilisation of the best run."""

    def __init__(self):
        self.seconds, self.cpu, self.value = [], [], None

    def time(self, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        self.value = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.seconds.append(wall)
        self.cpu.append(cpu / wall)

    @property
    def best(self):
        return min(self.seconds)

    @property
    def best_cpu(self):
        return self.cpu[int(np.argmin(self.seconds))]

    def to_json(self, work):
        return {"seconds": self.best, "all_seconds": self.seconds, "cpu_per_wall": self.best_cpu,
                "rate": work / self.best}


class JaxcollapseTiming:
    """jc.simulate calls: run and compile seconds as SimulationResult reports them."""

    def __init__(self, path, M, C, G, metrics=None):
        self.study = jc.gaussian_study(samples=M, generations=G, estimator="unbiased", path=path)
        self.C, self.G, self.metrics = C, G, metrics
        self.runs, self.compiles, self.walls, self.final_sigma2_mean = [], [], [], None

    def time(self, seed):
        tick = time.perf_counter()
        with jc.keep_freed_memory():  # freed memory kept, as the CLI runs it (a library call leaves the allocator alone)
            result = jc.simulate(self.study.program(), num_chains=self.C, num_generations=self.G, seed=seed,
                                 record="summary", progress=False, metrics=self.metrics)
        self.walls.append(time.perf_counter() - tick)
        self.runs.append(result.run_seconds)
        self.compiles.append(result.compile_seconds)
        if "sigma2" in result.metric_names:
            self.final_sigma2_mean = float(result.summary("sigma2")["mean"][-1])

    @property
    def best(self):
        return min(self.runs)

    def to_json(self, work):
        return {"seconds": self.best, "all_seconds": self.runs, "compile_seconds": min(self.compiles),
                "all_compile_seconds": self.compiles, "wall_per_call": min(self.walls),
                "all_wall_per_call": self.walls, "rate": work / self.best,
                "final_sigma2_mean": self.final_sigma2_mean}


# ------------------------------------------------------------------------------ report
def load_average():
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return "unknown"


def source_revision():
    """The commit measured, marked "+ uncommitted src changes" where src/ differs from it."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" + uncommitted src changes" if dirty else "")


def machine_info():
    described = cpu()
    import jaxlib

    return {
        "cpu": described["model"],
        "cpu_flags": " ".join(described["flags"]),
        "cores": described["cores"],
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jaxlib, "__version__", "?"),
        "numpy": np.__version__,
        "jaxcollapse": f"{jc.__version__} ({source_revision()})",
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "x64": bool(jax.config.jax_enable_x64),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "(unset)"),
        "load_average_at_start": load_average(),
    }


def fmt(rate):
    return f"{rate:10.3e}"


def verdict(ratio, target):
    return f"{ratio:8.3g}x  (target >= {target:g}x: {'MET' if ratio >= target else 'NOT MET'})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under 30 s)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timings per measurement, the best is kept (default 3; --quick: 3, but 1 for "
                             "jaxcollapse, whose every simulate call recompiles for ~1-3 s)")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--gamma", action="store_true",
                        help="also time the Gamma samplers alone (jaxcollapse, jax.random, numpy)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeats = 3 if args.repeats is None else args.repeats
    jc_repeats = 1 if (args.quick and args.repeats is None) else repeats
    rounds = max(repeats, jc_repeats)
    started = time.perf_counter()
    info = machine_info()
    print("jaxcollapse Gaussian benchmark" + (" (--quick)" if args.quick else ""))
    for key, value in info.items():
        print(f"  {key:22s} {value}")
    print(f"  repeats                {repeats} (best kept; jaxcollapse simulate calls: {jc_repeats})")
    print(f"  command                {' '.join(['python'] + sys.argv)}")
    print(flush=True)
    results = {"machine": info, "quick": args.quick, "repeats": repeats, "jc_repeats": jc_repeats,
               "paper": {}, "data": {}, "suff": {}}

    # (a) the paper-style loop: a few chains of G generations each.
    for M, chain_generations in sizes["paper_chain_generations"].items():
        G = sizes["data"][M][1] if M in sizes["data"] else sizes["suff"][M][1]
        chains = max(1, chain_generations // G)
        timing = Timing()
        for _ in range(repeats):
            timing.time(lambda: paper_loop(M, G, chains))
        results["paper"][M] = {"chains": chains, "generations": G, **timing.to_json(chains * G)}
        print(f"(a) paper   M={M:5d} chains={chains:5d} G={G}: {timing.best:7.3f} s  "
              f"{chains * G / timing.best:10.3e} chain-gen/s  cpu {timing.best_cpu:.2f}", flush=True)

    # (b), (c), (e): the data path, in interleaved rounds.
    for M, (C, G) in sizes["data"].items():
        samples = C * M * G
        rng_fns = rng_functions(M, C, G)
        first_call = {}
        for name, fn in rng_fns.items():
            tick = time.perf_counter()
            fn(jax.random.key(0)).block_until_ready()
            first_call[name] = time.perf_counter() - tick
        numpy_timing, jax_timing = Timing(), JaxcollapseTiming("data", M, C, G)
        rng_timing = {name: Timing() for name in rng_fns}
        for round_index in range(rounds):
            if round_index < repeats:
                numpy_timing.time(lambda: numpy_vectorised(M, C, G, seed=round_index))
            if round_index < jc_repeats:
                jax_timing.time(round_index)
            if round_index < repeats:
                for name, fn in rng_fns.items():
                    rng_timing[name].time(lambda: fn(jax.random.key(round_index + 1)).block_until_ready())
        rng = {name: {**timing.to_json(samples), "first_call_seconds": first_call[name]}
               for name, timing in rng_timing.items()}
        limit = max(entry["rate"] for entry in rng.values())
        row = {
            "chains": C, "generations": G, "samples": samples,
            "numpy": {**numpy_timing.to_json(C * G), "samples_per_s": samples / numpy_timing.best,
                      "final_sigma2_mean": float(numpy_timing.value.mean())},
            "jax": {**jax_timing.to_json(C * G), "samples_per_s": samples / jax_timing.best},
            "rng": rng, "limit_samples_per_s": limit,
        }
        results["data"][M] = row
        print(f"(b) np-vec  M={M:5d} C={C} G={G}: {numpy_timing.best:7.3f} s  "
              f"{row['numpy']['samples_per_s']:10.3e} normals/s  cpu {numpy_timing.best_cpu:.2f}", flush=True)
        print(f"(c) jc-data M={M:5d} C={C} G={G}: run {jax_timing.best:7.3f} s  compile "
              f"{row['jax']['compile_seconds']:.2f} s  wall/call {row['jax']['wall_per_call']:.2f} s  "
              f"{row['jax']['samples_per_s']:10.3e} normals/s", flush=True)
        for name, entry in rng.items():
            print(f"(e) rng     M={M:5d} {name:11s}: {entry['seconds']:7.3f} s  {entry['rate']:10.3e} normals/s  "
                  f"cpu {entry['cpu_per_wall']:.2f}  (first call {entry['first_call_seconds']:.2f} s)", flush=True)

    # (d), (f): the sufficient-statistics path, in interleaved rounds.
    for M, (C, G) in sizes["suff"].items():
        numpy_timing, jax_timing = Timing(), JaxcollapseTiming("sufficient", M, C, G)
        numpy_risk, jax_risk = Timing(), JaxcollapseTiming("sufficient", M, C, G, metrics=("w2_risk",))
        for round_index in range(rounds):
            if round_index < repeats:
                numpy_timing.time(lambda: numpy_sufficient(M, C, G, seed=round_index))
                numpy_risk.time(lambda: numpy_sufficient_with_risk(M, C, G, seed=round_index))
            if round_index < jc_repeats:
                jax_timing.time(round_index)
                jax_risk.time(round_index)
        row = {
            "chains": C, "generations": G,
            "numpy": {**numpy_timing.to_json(C * G), "final_sigma2_mean": float(numpy_timing.value.mean())},
            "jax": jax_timing.to_json(C * G),
            "numpy_with_risk": numpy_risk.to_json(C * G),
            "jax_w2_only": jax_risk.to_json(C * G),
        }
        results["suff"][M] = row
        print(f"(f) np-suff M={M:5d} C={C} G={G}: {numpy_timing.best:7.3f} s  {row['numpy']['rate']:10.3e} "
              f"chain-gen/s  cpu {numpy_timing.best_cpu:.2f}", flush=True)
        print(f"(d) jc-suff M={M:5d} C={C} G={G}: run {jax_timing.best:7.3f} s  compile "
              f"{row['jax']['compile_seconds']:.2f} s  wall/call {row['jax']['wall_per_call']:.2f} s  "
              f"{row['jax']['rate']:10.3e} chain-gen/s", flush=True)
        print(f"(f2) np-suff + W2 risk moments M={M:5d}: {row['numpy_with_risk']['rate']:10.3e} chain-gen/s; "
              f"(d2) jc-suff recording only w2_risk: {row['jax_w2_only']['rate']:10.3e} chain-gen/s", flush=True)

    if args.gamma:
        results["gamma"] = gamma_benchmark(repeats)

    total = time.perf_counter() - started
    results["total_wall_seconds"] = total
    results["load_average_at_end"] = load_average()

    # ------------------------------------------------------------------ tables
    print()
    print(f"Throughput, chain-generations per second (best of {repeats}; jaxcollapse best of {jc_repeats}, "
          "run time only, compile excluded)")
    header = (f"{'M':>5} | {'(a) paper':>10} | {'(b) np-vec':>10} | {'(c) jc-data':>11} | "
              f"{'(f) np-suff':>11} | {'(d) jc-suff':>11}")
    print(header)
    print("-" * len(header))
    blank = " " * 10
    for M in sorted(set(sizes["data"]) | set(sizes["suff"])):
        cells = [
            fmt(results["paper"][M]["rate"]) if M in results["paper"] else blank,
            fmt(results["data"][M]["numpy"]["rate"]) if M in results["data"] else blank,
            " " + (fmt(results["data"][M]["jax"]["rate"]) if M in results["data"] else blank),
            " " + (fmt(results["suff"][M]["numpy"]["rate"]) if M in results["suff"] else blank),
            " " + (fmt(results["suff"][M]["jax"]["rate"]) if M in results["suff"] else blank),
        ]
        print(f"{M:>5} | " + " | ".join(cells))
    print()
    print("Data path, normals per second")
    header = (f"{'M':>5} | {'C':>6} | {'G':>4} | {'(b) np-vec':>10} | {'(c) jc-data':>11} | "
              f"{'(e) rng 1-call':>14} | {'(e) rng scan':>12} | {'jc compile s':>12}")
    print(header)
    print("-" * len(header))
    for M, row in results["data"].items():
        print(f"{M:>5} | {row['chains']:>6} | {row['generations']:>4} | {fmt(row['numpy']['samples_per_s'])} | "
              f" {fmt(row['jax']['samples_per_s'])} | {fmt(row['rng']['one_call']['rate']):>14} | "
              f"{fmt(row['rng']['scan_blocks']['rate']):>12} | {row['jax']['compile_seconds']:>12.2f}")
    print()
    print("Compile seconds per jaxcollapse call (min over calls), and wall seconds per call")
    for kind in ("data", "suff"):
        for M, row in results[kind].items():
            print(f"  {kind:4s} M={M:5d}: compile {row['jax']['compile_seconds']:.2f} s  "
                  f"run {row['jax']['seconds']:.2f} s  wall/call {row['jax']['wall_per_call']:.2f} s")
    print()
    print("Sanity: across-chain mean of sigma^2 at the last generation (unbiased fit: 1 in expectation,")
    print("but heavy-tailed over chains for small M and many generations)")
    for kind in ("data", "suff"):
        for M, row in results[kind].items():
            print(f"  {kind:4s} M={M:5d}: numpy {row['numpy']['final_sigma2_mean']:.4f}  "
                  f"jaxcollapse {row['jax']['final_sigma2_mean']:.4f}")

    print()
    print("Ratios and targets")
    checks = []
    for M, row in results["data"].items():
        checks.append((f"data path / random-number limit, M={M}",
                       row["jax"]["samples_per_s"] / row["limit_samples_per_s"], TARGETS["data_vs_rng"]))
        checks.append((f"data path / numpy vectorised,    M={M}",
                       row["jax"]["rate"] / row["numpy"]["rate"], TARGETS["data_vs_numpy"]))
    for M, row in results["suff"].items():
        checks.append((f"sufficient / numpy sufficient,   M={M}",
                       row["jax"]["rate"] / row["numpy"]["rate"], TARGETS["suff_vs_numpy"]))
        checks.append((f"same outputs (W2 risk moments), M={M}",
                       row["jax_w2_only"]["rate"] / row["numpy_with_risk"]["rate"], TARGETS["suff_vs_numpy"]))
    if 1000 in results["suff"] and 1000 in results["paper"]:
        checks.append(("sufficient / paper loop,         M=1000",
                       results["suff"][1000]["jax"]["rate"] / results["paper"][1000]["rate"],
                       TARGETS["suff_vs_paper_M1000"]))
    for name, ratio, target in checks:
        print(f"  {name}: {verdict(ratio, target)}")
    results["targets"] = [{"check": n, "ratio": r, "target": t, "met": r >= t} for n, r, t in checks]
    print()
    print("Other ratios")
    for M, row in results["data"].items():
        paper = results["paper"][M]["rate"]
        print(f"  data path / paper loop,          M={M}: {row['jax']['rate'] / paper:8.3g}x")
        print(f"  numpy vectorised / paper loop,   M={M}: {row['numpy']['rate'] / paper:8.3g}x")
    for M, row in results["suff"].items():
        paper = results["paper"][M]["rate"]
        print(f"  sufficient / paper loop,         M={M}: {row['jax']['rate'] / paper:8.3g}x")
        print(f"  numpy sufficient / paper loop,   M={M}: {row['numpy']['rate'] / paper:8.3g}x")
    print()
    print(f"Total wall clock: {total:.1f} s of measurement (compiles included), "
          f"{time.perf_counter() - _PROCESS_START:.1f} s including imports")
    print(f"Load average (1, 5, 15 min) at start: {info['load_average_at_start']}, at end: "
          f"{results['load_average_at_end']} (other processes on the machine skew the timings)")
    cores = os.cpu_count() or 1
    xla_cpu = [entry["cpu_per_wall"] for row in results["data"].values() for entry in row["rng"].values()]
    results["contended"] = bool(cores > 1 and xla_cpu and min(xla_cpu) < 0.75 * cores)
    if results["contended"]:
        print(f"WARNING: jax.random used at most {min(xla_cpu):.2f} of {cores} cores in some timing: other "
              "processes were competing for the CPU, so the JAX figures (and the ratios) are pessimistic; rerun "
              "on an idle machine.")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, default=str)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
