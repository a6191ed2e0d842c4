#!/usr/bin/env python
"""The device benchmark: what one accelerator (or this CPU) does with jaxcollapse's kernels.

One command, one JSON file. On a GPU or TPU the ``full`` scale runs in under 5 minutes;
on a CPU the default is ``small`` (``tiny`` is the test suite's). Every timing excludes
compilation, which is reported apart (the first call). Measured:

  random_limit      jax.random's own rate for the uint32 words the chains consume (one
                    ``jax.random.bits`` call over as many words as a sufficient-path
                    generation of ``chains`` chains uses): the speed limit of a chain
                    that only draws its numbers
  sufficient        the Gaussian sufficient-statistics path (M = 100, replace, summaries
                    only): chain-generations/s, and the share of random_limit it reaches
  data              the Gaussian data path (M = 100 samples drawn and refitted per chain
                    and generation): chain-generations/s
  large_run         ``big_chains`` x ``big_generations`` of summaries on the sufficient
                    path (10^7 x 100 at full scale): wall time and the device's peak
                    memory (where the device reports it)
  vae_step          the paper's conv VAE (28 x 28, latent 20), one training epoch of
                    ``vae_steps`` batches: images/s
  opt_step          an OPT training step (AdamW, dropout; ``opt-125m`` at full scale, the
                    ``tiny`` preset below it) on random blocks: tokens/s

Run: ``python benchmarks/device.py --out results-device.json`` (``--scale`` to choose).
The JSON names the device, the backend, JAX's version and the scale beside every figure;
docs/benchmarks.md records the figures with the device named.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SCALES = {
    "tiny": dict(chains=2**12, generations=10, data_chains=2**8, big_chains=2**14, big_generations=10,
                 vae_batch=16, vae_steps=2, opt_preset="tiny", opt_batch=2, opt_block=32, opt_steps=2),
    "small": dict(chains=2**18, generations=50, data_chains=2**12, big_chains=10**6, big_generations=20,
                  vae_batch=64, vae_steps=8, opt_preset="tiny", opt_batch=16, opt_block=64, opt_steps=10),
    "full": dict(chains=2**22, generations=100, data_chains=2**18, big_chains=10**7, big_generations=100,
                 vae_batch=128, vae_steps=50, opt_preset="opt-125m", opt_batch=8, opt_block=128, opt_steps=20),
}


def _timed(call, repeats: int = 2) -> tuple[float, float]:
    """(first call's seconds, best of ``repeats`` later calls' seconds); results blocked on."""
    tick = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - tick
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        jax.block_until_ready(call())
        best = min(best, time.perf_counter() - tick)
    return first, best


def _peak_memory() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def random_limit(chains: int, words_per_step: int) -> dict:
    words = chains * words_per_step
    draw = jax.jit(lambda key: jnp.sum(jax.random.bits(key, (words,), jnp.uint32) >> 31))
    first, best = _timed(lambda: draw(jax.random.key(0)))
    return {"words": words, "compile_seconds": first - best, "seconds": best,
            "chain_generations_per_second": chains / best, "words_per_second": words / best}


def chain_run(program, chains: int, generations: int) -> dict:
    import jaxcollapse as jc

    result = jc.simulate(program, num_chains=chains, seed=0, progress=False)  # compiles (cached for the process)
    compile_seconds = result.compile_seconds
    tick = time.perf_counter()
    result = jc.simulate(program, num_chains=chains, seed=1, progress=False)
    seconds = time.perf_counter() - tick
    return {"chains": chains, "generations": generations, "compile_seconds": compile_seconds,
            "seconds": seconds, "chain_generations_per_second": chains * generations / seconds,
            "w2_risk_last": float(result.summary("w2_risk")["mean"][-1])}


def vae_step(batch: int, steps: int) -> dict:
    from jaxcollapse.vae import TrainConfig, VAEConfig
    from jaxcollapse.vae_train import train_runs

    config = VAEConfig()
    images = np.random.default_rng(0).random((batch * steps, 28, 28, 1), dtype=np.float32)
    training = TrainConfig(epochs=1, batch_size=batch)
    keys = jax.random.split(jax.random.key(0), 1)
    first, best = _timed(lambda: train_runs(keys, config, training, images)[0], repeats=1)
    return {"batch": batch, "steps": steps, "compile_seconds": first - best, "seconds": best,
            "images_per_second": batch * steps / best}


def opt_step(preset: str, batch: int, block: int, steps: int) -> dict:
    import optax
    from flax import nnx

    from jaxcollapse.lm.finetune import make_train_step
    from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM, functional

    config = OPTConfig.preset(preset)
    apply, params = functional(OPTForCausalLM(config, rngs=nnx.Rngs(params=jax.random.key(0))))
    optimizer = optax.adamw(1e-4, weight_decay=0.0)
    step = make_train_step(apply, optimizer, dropout=True)
    blocks = jnp.asarray(np.random.default_rng(0).integers(4, config.vocab_size, (batch, block)), jnp.int32)
    weights = jnp.ones((batch,), jnp.float32)
    state = {"params": params, "opt": optimizer.init(params)}

    def run(count):
        loss = None
        for index in range(count):
            state["params"], state["opt"], loss = step(state["params"], state["opt"], blocks, weights,
                                                       jax.random.key(index))
        return loss

    tick = time.perf_counter()
    jax.block_until_ready(run(1))
    first = time.perf_counter() - tick
    tick = time.perf_counter()
    jax.block_until_ready(run(steps))
    seconds = (time.perf_counter() - tick) / steps
    return {"preset": preset, "batch": batch, "block": block, "compile_seconds": max(first - seconds, 0.0),
            "seconds_per_step": seconds, "tokens_per_second": batch * block / seconds}


def benchmark(scale: str) -> dict:
    import jaxcollapse as jc

    sizes = SCALES[scale]
    device = jax.devices()[0]
    report = {"scale": scale, "backend": jax.default_backend(), "device": str(device),
              "device_kind": getattr(device, "device_kind", ""), "devices": len(jax.devices()),
              "jax": jax.__version__, "sizes": sizes, "measurements": {}}
    found = report["measurements"]
    sufficient = jc.gaussian_study(samples=100, generations=sizes["generations"]).program()
    found["random_limit"] = random_limit(sizes["chains"], sufficient.words_per_step)
    found["sufficient"] = chain_run(sufficient, sizes["chains"], sizes["generations"])
    found["sufficient"]["share_of_random_limit"] = (found["sufficient"]["chain_generations_per_second"]
                                                    / found["random_limit"]["chain_generations_per_second"])
    data = jc.gaussian_study(samples=100, generations=sizes["generations"], path="data").program()
    found["data"] = chain_run(data, sizes["data_chains"], sizes["generations"])
    large = jc.gaussian_study(samples=100, generations=sizes["big_generations"]).program()
    found["large_run"] = chain_run(large, sizes["big_chains"], sizes["big_generations"])
    found["large_run"]["peak_device_bytes"] = _peak_memory()
    found["vae_step"] = vae_step(sizes["vae_batch"], sizes["vae_steps"])
    found["opt_step"] = opt_step(sizes["opt_preset"], sizes["opt_batch"], sizes["opt_block"], sizes["opt_steps"])
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--scale", choices=sorted(SCALES), default=None,
                        help="tiny (tests) | small (a CPU; the default there) | full (an accelerator; the default there)")
    parser.add_argument("--out", default="benchmarks/results-device.json", help="the JSON file to write")
    args = parser.parse_args(argv)
    scale = args.scale or ("small" if jax.default_backend() == "cpu" else "full")
    started = time.perf_counter()
    report = benchmark(scale)
    report["total_seconds"] = time.perf_counter() - started
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for name, values in report["measurements"].items():
        rate = next((f"{v:,.0f} {k.replace('_', ' ')}" for k, v in values.items() if k.endswith("per_second")), "")
        print(f"{name:14s} {rate}  (compile {values.get('compile_seconds', 0):.1f} s)")
    print(f"{report['device']} ({report['backend']}), scale {scale}: {report['total_seconds']:.0f} s -> {args.out}")
    return report


if __name__ == "__main__":
    main()
