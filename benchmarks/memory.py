"""Resident memory of a large streaming-summary run (issue: 1e6 chains x 1e3 generations
of summaries within 2 GB). Run: python benchmarks/memory.py [CHAINS] [GENERATIONS]

Prints the run time and the peak resident set size of this process (ru_maxrss)."""

import resource
import sys
import time

import jaxcollapse as jc


def main(chains=1_000_000, generations=1000):
    study = jc.gaussian_study(samples=100, generations=generations, path="sufficient")
    started = time.perf_counter()
    with jc.keep_freed_memory():  # freed memory kept, as the CLI runs it (a library call leaves the allocator alone)
        result = jc.simulate(study.program(), num_chains=chains, num_generations=generations, seed=0,
                             quantile_metrics=("w2_risk",), progress=False)
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    risk = result.summary("w2_risk")
    print(f"{chains} chains x {generations} generations (summary record, sufficient-statistics path, M=100)")
    print(f"compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s, wall {elapsed:.1f} s, "
          f"{chains * generations / result.run_seconds:,.0f} chain-generations/s")
    print(f"peak resident memory {peak_mib:,.0f} MiB")
    print(f"E[R_W2] at generation {generations}: {risk['mean'][-1]:.4f} +- {risk['se'][-1]:.4f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
