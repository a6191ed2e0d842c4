#!/usr/bin/env python
"""Throughput of GMM collapse chains: the authors' scikit-learn loop against vmapped EM.

Side by side in one run, 2 components in 2-D, M = 1000 samples per generation, the same
number of EM iterations per generation for everyone (``--iterations``, default 20;
scikit-learn with ``tol=0`` so that it runs all of them), chain-generations per second:

  sklearn         the authors' approach: per chain and generation a new
                  ``GaussianMixture(2, covariance_type="full")`` (k-means start), ``.fit``,
                  then ``.sample(1000)`` for the next generation; one chain at a time;
  sklearn-warm    the same with ``warm_start=True`` (EM starts from the last fit, as
                  jaxcollapse's default ``init="previous"``);
  jc-previous     jaxcollapse, init "previous" (warm start), chains 1, 10, 100, 1000;
  jc-kmeans       jaxcollapse, init "kmeans" (k-means++ and 10 Lloyd steps each
                  generation, like scikit-learn's start), chains 1, 10, 100, 1000.

jaxcollapse timings exclude compilation (reported apart) and include everything a run
records (all GMM metrics, L2 distance to p_0, held-out log-likelihood of 1000 points).
Timings are the best of ``--repeats`` (default 2). numpy/scikit-learn use one thread
per the BLAS defaults; XLA uses every core.

Usage:
    python benchmarks/gmm.py               # about four minutes on 2 cores
    python benchmarks/gmm.py --quick
    python benchmarks/gmm.py --json benchmarks/results-gmm.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import jax
import numpy as np

from _machine import cpu
import jaxcollapse as jc
from jaxcollapse.studies.gmm import gmm_study

SAMPLES = 1000


def sklearn_chain(generations, iterations, warm, seed):
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    data = np.concatenate([rng.normal([-3, 0], 1, (SAMPLES // 2, 2)), rng.normal([3, 0], 1, (SAMPLES // 2, 2))])
    model = GaussianMixture(2, covariance_type="full", tol=0, max_iter=iterations, warm_start=warm, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0: every fit "fails to converge" by design
        for _ in range(generations):
            if not warm:
                model = GaussianMixture(2, covariance_type="full", tol=0, max_iter=iterations,
                                        random_state=int(rng.integers(2**31)))
            model.fit(data)
            data = model.sample(SAMPLES)[0]


def time_sklearn(chains, generations, iterations, warm, repeats):
    best = np.inf
    for repeat in range(repeats):
        start = time.perf_counter()
        for chain in range(chains):
            sklearn_chain(generations, iterations, warm, seed=chain + 100 * repeat)
        best = min(best, time.perf_counter() - start)
    return chains * generations / best


def time_jax(init, chains, generations, iterations, repeats):
    study = gmm_study(samples=SAMPLES, generations=generations, iterations=iterations, init=init)
    program = study.program()
    best, compile_seconds = np.inf, 0.0
    for repeat in range(repeats):
        with jc.keep_freed_memory():  # freed memory kept, as the CLI runs it (a library call leaves the allocator alone)
            result = jc.simulate(program, num_chains=chains, num_generations=generations, seed=repeat, progress=False)
        best = min(best, result.run_seconds)
        compile_seconds = result.compile_seconds
    return chains * generations / best, compile_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    generations = 5 if args.quick else 20
    sklearn_chains = 2 if args.quick else 4
    chain_counts = (1, 10, 100) if args.quick else (1, 10, 100, 1000)

    rows = {}
    for warm, name in ((False, "sklearn"), (True, "sklearn-warm")):
        rate = time_sklearn(sklearn_chains, generations, args.iterations, warm, args.repeats)
        rows[name] = {"chains": 1, "chain_generations_per_s": rate}
        print(f"{name:<14} one chain at a time       {rate:10.1f} chain-generations/s", flush=True)
    baseline = rows["sklearn"]["chain_generations_per_s"]
    for init in ("previous", "kmeans"):
        for chains in chain_counts:
            rate, compile_seconds = time_jax(init, chains, generations, args.iterations, args.repeats)
            rows[f"jc-{init}-{chains}"] = {"chains": chains, "chain_generations_per_s": rate,
                                           "compile_seconds": compile_seconds, "ratio_to_sklearn": rate / baseline}
            print(f"jc-{init:<11} {chains:>5} chains {rate:16.1f} chain-generations/s  "
                  f"{rate / baseline:7.1f}x sklearn  (compile {compile_seconds:.1f} s)", flush=True)
    if args.json:
        blob = {
            "samples": SAMPLES, "iterations": args.iterations, "generations": generations, "results": rows,
            "machine": {**cpu(), "python": platform.python_version(), "jax": jax.__version__,
                        "backend": jax.default_backend()},
        }
        with open(args.json, "w") as stream:
            json.dump(blob, stream, indent=2)


if __name__ == "__main__":
    main()
