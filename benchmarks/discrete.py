#!/usr/bin/env python
"""Throughput of the discrete (histogram) collapse chain, replace regime, fit = frequencies.

Side by side in one run, for K in {10, 100, 10^4} states and M in {100, 10^4} samples
(chain-generations per second; every contender runs the same chains for G generations,
starting from the uniform p_0):

  np-multi   numpy vectorised across chains: counts = rng.multinomial(M, p) with p of
             shape (C, K) per generation, p = counts / M, plus the two summaries the
             jaxcollapse runs record (mean support and mean heterozygosity per generation);
  jc-counts  jaxcollapse, path="counts" (run time only, compile time reported apart),
             recording the same two metrics' across-chain moments;
  jc-data    jaxcollapse, path="data" (M categorical draws per chain and generation).

Timings are the best of ``--repeats`` (default 3), contenders interleaved in rounds so
that load from other processes hits them alike. numpy is single threaded; XLA uses
every core. Memory: the counts path's working set per chain is O(K), whatever M
(``ChainProgram.bytes_per_chain``, reported).

Usage:
    python benchmarks/discrete.py            # about three minutes on 2 cores
    python benchmarks/discrete.py --quick    # fewer chains and generations
    python benchmarks/discrete.py --json benchmarks/results-discrete.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import jax

from _machine import describe
import jaxcollapse as jc
from jaxcollapse.studies.discrete import discrete_study

# (chains, generations) per K, chosen so that a timing lasts about 0.3-3 s on 2 cores
SIZES = {10: (20_000, 20), 100: (5_000, 20), 10_000: (100, 10)}
QUICK = {10: (5_000, 10), 100: (1_000, 10), 10_000: (50, 5)}
METRICS = ("support", "heterozygosity")


def numpy_chains(states, samples, chains, generations, seed=0):
    rng = np.random.default_rng(seed)
    p = np.full((chains, states), 1.0 / states)
    support = np.empty(generations + 1)
    heterozygosity = np.empty(generations + 1)
    support[0], heterozygosity[0] = states, 1.0 - 1.0 / states
    for g in range(generations):
        counts = rng.multinomial(samples, p)
        p = counts / samples
        support[g + 1] = np.mean(np.sum(counts > 0, axis=1))
        heterozygosity[g + 1] = np.mean(1.0 - np.sum(p * p, axis=1))
    return support, heterozygosity


def jax_runner(path, states, samples, chains, generations):
    study = discrete_study(samples=samples, generations=generations, states=states, init="uniform",
                           path=path, per_state=False)
    program = study.program()

    def run(seed):
        with jc.keep_freed_memory():  # freed memory kept, as the CLI runs it (a library call leaves the allocator alone)
            return jc.simulate(program, num_chains=chains, num_generations=generations, seed=seed,
                               metrics=METRICS, progress=False)
    return run, program.bytes_per_chain


def best_of(repeats, contenders):
    """Interleaved rounds; returns the best wall time of each contender."""
    best = {name: float("inf") for name in contenders}
    extra = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - start
            if isinstance(out, jc.SimulationResult):
                extra.setdefault(name, {})["compile_s"] = out.compile_seconds
                elapsed = out.run_seconds
            best[name] = min(best[name], elapsed)
    return best, extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--states", type=int, nargs="*", default=(10, 100, 10_000), help="K values (default all)")
    parser.add_argument("--samples", type=int, nargs="*", default=(100, 10_000), help="M values (default all)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else SIZES
    print(f"jax {jax.__version__} on {jax.default_backend()}, {describe()}; "
          f"numpy {np.__version__}")
    print(f"{'K':>6} {'M':>6} {'chains':>7} {'G':>3} | {'np-multi':>10} {'jc-counts':>10} {'jc-data':>10} | "
          f"{'counts/np':>9} {'data/np':>8} | {'compile s':>9} | bytes/chain counts, data")
    records = []
    for states in args.states:
        for samples in args.samples:
            chains, generations = sizes[states]
            counts_run, counts_bytes = jax_runner("counts", states, samples, chains, generations)
            data_run, data_bytes = jax_runner("data", states, samples, chains, generations)
            seeds = iter(range(10**6))
            best, extra = best_of(args.repeats, {
                "np-multi": lambda: numpy_chains(states, samples, chains, generations),
                "jc-counts": lambda: counts_run(next(seeds)),
                "jc-data": lambda: data_run(next(seeds)),
            })
            work = chains * generations
            rates = {name: work / seconds for name, seconds in best.items()}
            record = {
                "states": states, "samples": samples, "chains": chains, "generations": generations,
                "chain_generations_per_s": rates,
                "counts_over_numpy": rates["jc-counts"] / rates["np-multi"],
                "data_over_numpy": rates["jc-data"] / rates["np-multi"],
                "compile_s": {k: v["compile_s"] for k, v in extra.items()},
                "bytes_per_chain": {"counts": counts_bytes, "data": data_bytes},
            }
            records.append(record)
            print(f"{states:>6} {samples:>6} {chains:>7} {generations:>3} | {rates['np-multi']:>10.3g} "
                  f"{rates['jc-counts']:>10.3g} {rates['jc-data']:>10.3g} | {record['counts_over_numpy']:>9.2f} "
                  f"{record['data_over_numpy']:>8.2f} | {extra['jc-counts']['compile_s']:>4.1f} "
                  f"{extra['jc-data']['compile_s']:>4.1f} | {counts_bytes}, {data_bytes}", flush=True)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"jax": jax.__version__, "numpy": np.__version__, "records": records}, stream, indent=2)


if __name__ == "__main__":
    main()
