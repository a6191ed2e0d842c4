#!/usr/bin/env python
"""Language-model throughput: jaxcollapse's Flax OPT against transformers' PyTorch OPT.

Side by side in one run, on this CPU, for the ``tiny`` preset (2 layers, width 64, vocab
512) and for facebook/opt-125m's configuration (random weights). Both frameworks hold the
same weights: the Flax model is written with ``jaxcollapse.lm.checkpoint.save_opt`` and
read back by ``transformers.OPTForCausalLM.from_pretrained``. Two measurements:

  training     **tokens/s** = batch x 64 / seconds per step: blocks of 64 tokens, next-token
               cross-entropy, dropout on (0.1, train mode), AdamW (no weight decay).
               jc: ``jaxcollapse.lm.finetune.make_train_step`` (one jitted step, parameters
               and optimiser state donated, the output head at the 63 predicting
               positions) driven from Python as ``finetune`` does, inside
               ``jaxcollapse.keep_freed_memory()`` as the ``jaxcollapse lm`` command runs them,
               with JAX's programs run on the calling thread
               (``jaxcollapse.heap.run_cpu_programs_inline``) as the ``jaxcollapse lm``
               command runs them (``--async-dispatch``: JAX's default, worker threads);
               torch: ``model(input_ids=blocks, labels=blocks).loss``, backward,
               ``torch.optim.AdamW`` step. ``--steps`` steps per timing.
  generation   **new tokens/s** = prompts x new tokens / seconds (beams not counted): 4
               prompts of 64 tokens, beam search with 5 beams, repetition penalty 2.0,
               ``min_new_tokens = max_new_tokens`` (64 for tiny, 16 for opt-125m), no
               sampling; seconds are per call (tiny: the mean of 5 calls per timing).
               jc: ``jaxcollapse.lm.generate.generate`` with ``opt.decoder_fns`` (prefill
               with the output head at the last prompt position only, as
               ``transformers.generate`` does through ``logits_to_keep=1``, then a
               ``lax.scan`` over the decoding steps; the whole call is one compiled program);
               jc-prefill-all: the same with the head at every prompt position;
               torch: ``model.generate(..., num_beams=5, do_sample=False)`` in eval mode
               under ``torch.inference_mode()``.

jc timings exclude compilation (the first call, reported apart, as is torch's first call).
Every timing is the best of ``--repeats`` rounds, contenders interleaved within a round;
each round's own jc / torch ratio is printed too, with their median and their mean +- its
standard error (contenders timed back to back in a round share the machine's state, so the
per-round ratios are paired comparisons, the least moved by the machine's drift between
rounds; the ratio of bests can pair a fast moment of one contender with a slow one of the
other). Each timing starts with one untimed step (or call) of its contender, inside the
same ``keep_freed_memory()`` block for jc: a fresh block maps a step's temporaries in
afresh (814 MB at opt-125m, ~199,000 page faults), which ``finetune`` pays once for all
the steps of a call, not once every ``--steps`` steps; torch gets the same untimed step.
"cores" is process CPU time / wall time during a timing (XLA:CPU uses its own thread pool
over every core; torch uses ``torch.get_num_threads()`` threads, printed).

Diagnostics (on by default; ``--quick`` and ``--no-breakdown`` skip them):

  torch-kept-heap   torch's training inside ``keep_freed_memory()`` too: what the same
                    glibc allocator settings give PyTorch (torch's default is without);
  jc-full-head      training with the library's step structure (jit, donation, AdamW,
                    dropout) but the loss computed the earlier way: the output head at all
                    64 positions, a log-softmax sliced to 63 and a gather (same loss value);
  jc-no-reorder     generation with the per-step beam reorder of the cache switched off
                    (wrong tokens, timing only);
  breakdown         jc's beam search in parts, each its own compiled program: the prefill
                    with all-position and last-position logits; the model's decoding steps
                    alone (a ``lax.scan`` of one-token calls on prompts x beams rows) over
                    the full cache (prompt + new slots) and over prompt + 1 slots (the cost
                    of attending over slots not yet written, which transformers skips).

"others" is the CPU (in cores) that other processes of the machine used during a timing
(from ``/proc/stat``): a run with others well above 0 was contended; rerun it.

PyTorch and transformers are benchmark-only dependencies (``torch==2.13.0``,
``transformers==5.23``), never imported by the library.

Usage:
    python benchmarks/lm.py                 # about 5 minutes on 2 cores
    python benchmarks/lm.py --quick         # about a minute
    python benchmarks/lm.py --json benchmarks/results-lm.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import resource
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from _machine import cpu, describe
from jaxcollapse import keep_freed_memory
from jaxcollapse.heap import run_cpu_programs_inline
from jaxcollapse.lm.checkpoint import save_opt
from jaxcollapse.lm.finetune import FinetuneConfig, make_train_step, training_apply
from jaxcollapse.lm.generate import (
    DecoderFns,
    GenerationConfig,
    generate,
    reorder_cache,
)
from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM, decoder_fns, functional, init_cache

BLOCK = 64  # tokens per training block
PROMPT = 64  # prompt tokens
PROMPTS = 4
BEAMS = 5
PENALTY = 2.0
LEARNING_RATE = 1e-4

# preset: training batch, new tokens, generate calls per timing (full run); --quick shrinks opt-125m
SETTINGS = {"tiny": (32, 64, 5), "opt-125m": (8, 16, 1)}


def _busy_seconds() -> float | None:
    """CPU seconds every process of the machine has used (Linux ``/proc/stat``), else None."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall and process CPU seconds of a block (``with Meter() as m: ...``), the cores other
    processes used meanwhile (``others``: contention from outside this benchmark) and the
    process's page faults (``faults``: memory the kernel mapped in afresh)."""

    def __enter__(self):
        self.usage = resource.getrusage(resource.RUSAGE_SELF)
        self.busy = _busy_seconds()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.start
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy = _busy_seconds()
        self.cpu = usage.ru_utime + usage.ru_stime - self.usage.ru_utime - self.usage.ru_stime
        self.faults = usage.ru_minflt - self.usage.ru_minflt
        self.others = None if busy is None else max(0.0, (busy - self.busy - self.cpu) / self.wall)
        return False


def heap(kept_heap: bool):
    """``keep_freed_memory()`` for a contender that runs inside it, else nothing."""
    return keep_freed_memory() if kept_heap else contextlib.nullcontext()


def timing(kept_heap: bool, once, calls: int):
    """One timing of ``calls`` calls of ``once`` after one untimed call, all inside
    ``keep_freed_memory()`` when ``kept_heap``: the untimed call maps in the memory that a
    fresh block (or, for torch, a new round) starts without, as the first step of a
    ``finetune`` call does once for all its steps. Returns the last result and the Meter."""
    with heap(kept_heap):
        once()
        with Meter() as meter:
            for _ in range(calls):
                result = once()
    return result, meter


def block(tree):
    jax.block_until_ready(tree)
    return tree


def full_head_train_step(apply, optimizer):
    """``make_train_step`` with the loss computed the earlier way: the output head at all L
    positions, then a log-softmax sliced to the L - 1 predicting ones and a gather (what the
    library did before ``head_positions``). Same loss value, same update."""

    train_apply = training_apply(apply)  # the CPU trainer's gradient boundaries, as make_train_step's

    def nll(params, blocks, key):
        logits, _ = train_apply(params, blocks, None, None, None, deterministic=False, dropout_key=key)
        log_probs = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
        return -jnp.sum(jnp.take_along_axis(log_probs, blocks[:, 1:, None], axis=-1)[..., 0], axis=-1)

    return make_train_step(None, optimizer, nll=nll)


def reorder_only_to_expand(cache, indices):
    """Timing stand-in for ``reorder_cache``: copies the prompt to the beams once, then never
    follows beams to their parents (generated tokens are wrong)."""
    if indices.shape[0] != cache.keys.shape[1]:
        return reorder_cache(cache, indices)
    return cache


def best_round(meters):
    """The Meter of the fastest round."""
    return min(meters, key=lambda meter: meter.wall)


def benchmark(preset: str, train_batch: int, new_tokens: int, steps: int, calls: int, repeats: int,
              breakdown: bool) -> dict:
    import torch
    import transformers

    config = OPTConfig.preset(preset)
    model = OPTForCausalLM(config, rngs=nnx.Rngs(0))
    folder = tempfile.mkdtemp(prefix=f"jc-lm-{preset}-")
    save_opt(folder, config, model)
    torch_train_model = transformers.OPTForCausalLM.from_pretrained(folder)
    torch_gen_model = transformers.OPTForCausalLM.from_pretrained(folder)
    torch_train_model.train()
    torch_gen_model.eval()
    parameters = sum(p.numel() for p in torch_gen_model.parameters())

    rng = np.random.default_rng(0)
    low = 3  # no pad / bos / eos ids in the data
    batches = [rng.integers(low, config.vocab_size, (train_batch, BLOCK), dtype=np.int32) for _ in range(steps)]
    prompts = rng.integers(low, config.vocab_size, (PROMPTS, PROMPT), dtype=np.int32)
    prompt_mask = np.ones_like(prompts)

    # ---- jaxcollapse training
    apply, params0 = functional(model)
    optimizer = FinetuneConfig(learning_rate=LEARNING_RATE, final_learning_rate=LEARNING_RATE / 10,
                               weight_decay=0.0).optimizer(total_steps=10_000)
    weights = jnp.ones((train_batch,), jnp.float32)
    device_batches = [jnp.asarray(b) for b in batches]
    train_key = jax.random.key(0)

    def jc_trainer(step):
        state = {"params": jax.tree.map(jnp.array, params0), "count": 0}  # private copies: the step donates
        state["opt"] = optimizer.init(state["params"])

        def train_step():
            state["count"] += 1
            state["params"], state["opt"], loss = step(state["params"], state["opt"],
                                                       device_batches[state["count"] % steps], weights,
                                                       jax.random.fold_in(train_key, state["count"]))
            return float(loss)  # finetune reads every loss (progress meter)
        return train_step

    # every jc contender runs inside keep_freed_memory, as the jaxcollapse command runs finetune and run_lm
    trainers = {"jc": (True, jc_trainer(make_train_step(apply, optimizer, dropout=True)))}
    if breakdown:
        trainers["jc-full-head"] = (True, jc_trainer(full_head_train_step(apply, optimizer)))

    # ---- PyTorch training
    torch_optimizer = torch.optim.AdamW(torch_train_model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    torch_batches = [torch.from_numpy(b.astype(np.int64)) for b in batches]
    torch_count = [0]

    def torch_train_step():
        torch_count[0] += 1
        blocks = torch_batches[torch_count[0] % steps]
        loss = torch_train_model(input_ids=blocks, labels=blocks).loss
        torch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch_optimizer.step()
        return loss.item()

    # ---- generation
    generation = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, method="beam",
                                  num_beams=BEAMS, repetition_penalty=PENALTY, eos_token_id=config.eos_token_id,
                                  pad_token_id=config.pad_token_id)
    cache_fn = functools.partial(init_cache, config)
    fns = {
        "jc": decoder_fns(apply, config),
        "jc-prefill-all": DecoderFns(apply, cache_fn, context_length=config.max_position_embeddings),
    }
    if breakdown:
        fns["jc-no-reorder"] = fns["jc"]._replace(reorder_cache=reorder_only_to_expand)
    gen_params = params0
    prompt_ids, prompt_mask_j = jnp.asarray(prompts), jnp.asarray(prompt_mask)
    torch_prompts = torch.from_numpy(prompts.astype(np.int64))
    torch_mask = torch.from_numpy(prompt_mask.astype(np.int64))
    outputs = {}

    def jc_generate(name):
        out = block(generate(fns[name], gen_params, prompt_ids, prompt_mask_j, config=generation))
        outputs[name] = np.asarray(out.tokens)

    def torch_generate():
        with torch.inference_mode():
            out = torch_gen_model.generate(input_ids=torch_prompts, attention_mask=torch_mask, num_beams=BEAMS,
                                           do_sample=False, min_new_tokens=new_tokens, max_new_tokens=new_tokens,
                                           repetition_penalty=PENALTY, eos_token_id=config.eos_token_id,
                                           pad_token_id=config.pad_token_id)
        outputs["torch"] = out[:, PROMPT:].numpy()

    torch_trainers = {"torch": (False, torch_train_step)}
    if breakdown:
        torch_trainers["torch-kept-heap"] = (True, torch_train_step)
    # name -> (inside keep_freed_memory?, one step or call)
    contenders = {
        "train": {**trainers, **torch_trainers},
        "generate": {**{name: (True, functools.partial(jc_generate, name)) for name in fns},
                     "torch": (False, torch_generate)},
    }

    # first calls: compilation for jc, allocation / lazy initialisation for torch
    first_call = {}
    for kind, group in contenders.items():
        for name, (kept_heap, once) in group.items():
            with heap(kept_heap), Meter() as meter:
                once()
            first_call[f"{kind}/{name}"] = meter.wall
            print(f"  [{preset}] first call {kind}/{name}: {meter.wall:.1f} s", flush=True)

    meters = {kind: {name: [] for name in group} for kind, group in contenders.items()}
    losses = {}
    for _ in range(repeats):
        for kind, group in contenders.items():
            for name, (kept_heap, once) in group.items():
                result, meter = timing(kept_heap, once, steps if kind == "train" else calls)
                meters[kind][name].append(meter)
                if kind == "train":
                    losses[name] = result

    # seconds per timing (train) or per call (generate), and what they count
    per = {"train": 1, "generate": calls}
    counts = {"train": train_batch * BLOCK * steps, "generate": PROMPTS * new_tokens}
    walls = {kind: {name: [meter.wall / per[kind] for meter in runs] for name, runs in group.items()}
             for kind, group in meters.items()}
    rates, cores, contention, best_faults = {}, {}, {}, {}
    for kind, group in meters.items():
        rates[kind], cores[kind], contention[kind], best_faults[kind] = {}, {}, {}, {}
        for name, runs in group.items():
            best = best_round(runs)
            rates[kind][name] = counts[kind] * per[kind] / best.wall
            cores[kind][name] = round(best.cpu / best.wall, 2)
            contention[kind][name] = None if best.others is None else round(best.others, 2)
            best_faults[kind][name] = best.faults

    def round_ratio_summary(kind):
        ratios = np.array([t / j for j, t in zip(walls[kind]["jc"], walls[kind]["torch"])])
        spread = float(np.std(ratios, ddof=1) / np.sqrt(len(ratios))) if len(ratios) > 1 else None
        return {"round_ratios_jc_over_torch": [round(float(x), 3) for x in ratios],
                "median_round_ratio_jc_over_torch": float(np.median(ratios)),
                "mean_round_ratio_jc_over_torch": float(np.mean(ratios)),
                "mean_round_ratio_standard_error": spread}

    agree = {name: int(np.sum(np.all(outputs[name] == outputs["torch"], axis=1)))
             for name in ("jc", "jc-prefill-all")}
    result = {
        "preset": preset, "parameters": int(parameters), "vocab_size": config.vocab_size,
        "torch_threads": torch.get_num_threads(),
        "train": {"batch": train_batch, "block": BLOCK, "steps_per_timing": steps,
                  "tokens_per_second": rates["train"], "seconds": walls["train"], "cores_used": cores["train"],
                  "other_processes_cores": contention["train"], "page_faults": best_faults["train"],
                  "ratio_jc_over_torch": rates["train"]["jc"] / rates["train"]["torch"],
                  **round_ratio_summary("train"),
                  **({"ratio_jc_full_head_over_torch": rates["train"]["jc-full-head"] / rates["train"]["torch"]}
                     if "jc-full-head" in rates["train"] else {}),
                  **({"ratio_jc_over_torch_kept_heap": rates["train"]["jc"] / rates["train"]["torch-kept-heap"]}
                     if "torch-kept-heap" in rates["train"] else {}),
                  "last_loss": losses},
        "generate": {"prompts": PROMPTS, "prompt_length": PROMPT, "new_tokens": new_tokens, "beams": BEAMS,
                     "calls_per_timing": calls,
                     "repetition_penalty": PENALTY, "new_tokens_per_second": rates["generate"],
                     "seconds": walls["generate"], "cores_used": cores["generate"],
                     "other_processes_cores": contention["generate"], "page_faults": best_faults["generate"],
                     "ratio_jc_over_torch": rates["generate"]["jc"] / rates["generate"]["torch"],
                     **round_ratio_summary("generate"),
                     "ratio_jc_prefill_all_over_torch":
                         rates["generate"]["jc-prefill-all"] / rates["generate"]["torch"],
                     "rows_identical_to_torch": agree},
        "first_call_seconds": first_call,
    }
    if breakdown:
        result["breakdown"] = generation_breakdown(config, apply, gen_params, fns, prompt_ids, prompt_mask_j,
                                                   new_tokens, repeats, walls["generate"])
    return result


def _best_time(fn, *args, calls: int) -> float:
    block(fn(*args))  # compile
    best = np.inf
    for _ in range(calls):
        start = time.perf_counter()
        block(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def generation_breakdown(config, apply, params, fns, prompt_ids, prompt_mask, new_tokens, repeats, gen_walls):
    """Seconds of the parts of one jc beam-search call.

    The prefill (batch of prompts, cache of prompt + new slots) with all-position and
    last-position logits, each jitted alone; the model's decoding steps alone, as
    ``generate`` runs them (a ``lax.scan`` of ``new_tokens - 1`` one-token calls on
    prompts x beams rows, greedy argmax feedback, no beam bookkeeping) over the full cache
    and over a cache of prompt + 1 slots (attention over the fewest slots); the whole call
    with and without the per-step beam reorder of the cache (``generate`` timings above).
    """
    rows, slots = PROMPTS * BEAMS, PROMPT + new_tokens
    mask = jnp.concatenate([prompt_mask, jnp.zeros((PROMPTS, new_tokens), jnp.int32)], axis=1)
    positions = jnp.cumsum(prompt_mask, axis=1) - 1
    calls = max(2, repeats)

    def prefill(prefill_fn):
        return jax.jit(lambda p, ids: prefill_fn(p, ids, mask, positions, init_cache(config, PROMPTS, slots))[0])

    out = {
        "prefill_all_logits": _best_time(prefill(apply), params, prompt_ids, calls=calls),
        "prefill_last_logits": _best_time(prefill(fns["jc"].prefill), params, prompt_ids, calls=calls),
    }

    def decode_loop(length):
        @jax.jit
        def loop(p):
            cache = init_cache(config, rows, length)._replace(index=jnp.int32(PROMPT))
            prompt_rows = jnp.ones((rows, PROMPT), jnp.int32)

            def body(carry, t):
                token, cache = carry
                written = (jnp.arange(length - PROMPT) <= t).astype(jnp.int32)
                step_mask = jnp.concatenate([prompt_rows, jnp.broadcast_to(written, (rows, length - PROMPT))], 1)
                position = jnp.full((rows, 1), PROMPT + t, jnp.int32)
                logits, cache = apply(p, token, step_mask, position, cache)
                return (jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)[:, None], cache), None

            (token, _), _ = jax.lax.scan(body, (jnp.full((rows, 1), 7, jnp.int32), cache),
                                         jnp.arange(new_tokens - 1))
            return token
        return loop

    out["decode_steps_full_cache"] = _best_time(decode_loop(slots), params, calls=calls)
    out["decode_steps_prompt_plus_1_cache"] = _best_time(decode_loop(PROMPT + 1), params, calls=calls)
    out["generate"] = min(gen_walls["jc"])
    out["generate_prefill_all"] = min(gen_walls["jc-prefill-all"])
    out["generate_no_reorder"] = min(gen_walls["jc-no-reorder"])
    out["estimate"] = {
        "prefill": out["prefill_last_logits"],
        "decode steps (model)": out["decode_steps_full_cache"],
        # transformers attends over prompt + t slots at step t, jc over all of them: half the difference
        "of which attention over unwritten slots": (out["decode_steps_full_cache"]
                                                    - out["decode_steps_prompt_plus_1_cache"]) / 2,
        "beam reorder of the cache": out["generate"] - out["generate_no_reorder"],
        "rest (beam selection over beams x vocab)":
            out["generate_no_reorder"] - out["prefill_last_logits"] - out["decode_steps_full_cache"],
    }
    return out


def _report_contenders(group: dict, rate_key: str, unit: str, rate_format: str, kind: str, first_call: dict) -> None:
    for name, rate in group[rate_key].items():
        print(f"    {name:16s} {rate:10{rate_format}} {unit}   best {min(group['seconds'][name]):7.2f} s   "
              f"cores {group['cores_used'][name]} (others {group['other_processes_cores'][name]})   "
              f"page faults {group['page_faults'][name]:,}   first call {first_call[f'{kind}/{name}']:6.1f} s")


def _report_rounds(group: dict) -> None:
    error = group["mean_round_ratio_standard_error"]
    mean = f"{group['mean_round_ratio_jc_over_torch']:.3f}x" + ("" if error is None else f" +- {error:.3f}")
    print(f"    jc / torch in each round: {', '.join(f'{x:.2f}x' for x in group['round_ratios_jc_over_torch'])} "
          f"(median {group['median_round_ratio_jc_over_torch']:.2f}x, mean {mean})")


def report(r: dict) -> None:
    t, g = r["train"], r["generate"]
    print(f"\n{r['preset']}: {r['parameters']:,} parameters, vocab {r['vocab_size']}, torch threads "
          f"{r['torch_threads']}, jax {jax.__version__}")
    print(f"  training, batch {t['batch']} x {t['block']} tokens, {t['steps_per_timing']} steps per timing")
    _report_contenders(t, "tokens_per_second", "tokens/s", ".0f", "train", r["first_call_seconds"])
    shifted = (f";  jc-full-head / torch = {t['ratio_jc_full_head_over_torch']:.2f}x"
               if "ratio_jc_full_head_over_torch" in t else "")
    if "ratio_jc_over_torch_kept_heap" in t:
        shifted += f";  jc / torch-kept-heap = {t['ratio_jc_over_torch_kept_heap']:.2f}x"
    print(f"    jc / torch = {t['ratio_jc_over_torch']:.2f}x{shifted}")
    _report_rounds(t)
    print(f"  generation, {g['prompts']} prompts x {g['prompt_length']} tokens, {g['new_tokens']} new tokens, "
          f"{g['beams']} beams, repetition penalty {g['repetition_penalty']}")
    _report_contenders(g, "new_tokens_per_second", "new tokens/s", ".1f", "generate", r["first_call_seconds"])
    print(f"    jc / torch = {g['ratio_jc_over_torch']:.2f}x;  jc-prefill-all / torch = "
          f"{g['ratio_jc_prefill_all_over_torch']:.2f}x;  rows identical to torch: {g['rows_identical_to_torch']} "
          f"of {g['prompts']}")
    _report_rounds(g)
    if "breakdown" in r:
        b = r["breakdown"]
        print("  jc beam search breakdown (s): " + ", ".join(
            f"{k} {v:.3f}" for k, v in b.items() if not isinstance(v, dict)))
        print("    (parts timed as separate programs; 'rest' is by difference and carries their noise)")
        print(f"    estimated shares of one jc call ({b['generate']:.3f} s):")
        for k, v in b["estimate"].items():
            print(f"      {k:44s} {v:8.3f} s  {100 * v / b['generate']:4.0f}%")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 round, 3 steps; opt-125m with 4 new tokens; no breakdown")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="training steps per timing (default 10 tiny, 3 opt-125m)")
    parser.add_argument("--presets", default="tiny,opt-125m")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--async-dispatch", action="store_true",
                        help="leave JAX's CPU programs on its worker threads (JAX's default); by default they "
                             "run on the calling thread, as the `jaxcollapse lm` command runs them")
    args = parser.parse_args(argv)
    inline = False if args.async_dispatch else run_cpu_programs_inline()  # before any JAX work
    repeats = 1 if args.quick else args.repeats
    load = os.getloadavg()[0]
    import torch

    print(f"{describe()}; jax {jax.__version__}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), load average {load:.2f}; "
          f"jax programs {'inline' if inline else 'on worker threads (asynchronous dispatch)'}", flush=True)
    results = []
    for preset in args.presets.split(","):
        batch, new_tokens, calls = SETTINGS[preset]
        steps = args.steps or (10 if preset == "tiny" else 3)
        if args.quick:
            steps = min(steps, 3) if preset == "tiny" else 1
            new_tokens = new_tokens if preset == "tiny" else 4
        results.append(benchmark(preset, batch, new_tokens, steps, calls, repeats,
                                 breakdown=not (args.quick or args.no_breakdown)))
        report(results[-1])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": {**cpu(), "python": platform.python_version(),
                                   "jax": jax.__version__, "torch": torch.__version__,
                                   "torch_threads": torch.get_num_threads(),
                                   "jax_programs_inline": inline,
                                   "load_average_at_start": load},
                       "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
