"""An integer-token family: a bigram language model over a small vocabulary
(docs/own_family.md).

Rows are blocks of int32 tokens (``row=jax.ShapeDtypeStruct((block,), jnp.int32)``); the
data policies build their buffers from that row, so the family runs under every policy.
``fit`` counts, with the frequency weights, which token starts a block and which token
follows which, adds an optional smoothing constant to every count and normalises; a
token never seen as a predecessor backs off to the unigram frequencies. ``sample`` runs
the chain over a block's positions in one ``lax.scan``.

What the script shows, and why it must hold without smoothing (checked in
tests/test_examples.py):

* replace: a model only emits tokens it saw, so the set of tokens seen can only shrink
  along a chain: the vocabulary's tail dies and never returns;
* accumulate: D_0 stays in the pool, so every token of D_0 stays seen (and the model
  still emits only pool tokens): the count is constant from generation 1 on.

Smoothing (``--smoothing A > 0``) gives every token probability > 0 again, so tokens can
come back under replace.

Run: python examples/token_family.py [--chains 200] [--generations 10] [--smoothing 0]
"""

import argparse
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxcollapse as jc
from jaxcollapse.families import Family
from jaxcollapse.programs import data_path_program


class BigramParams(NamedTuple):
    start: jax.Array  # (V,): P(first token of a block)
    transition: jax.Array  # (V, V): P(next | previous), rows sum to 1
    unigram: jax.Array  # (V,): token frequencies of the data fitted (p_0's own at generation 0)


def bigram_family(vocab, block, smoothing=0.0):
    """The family. ``smoothing`` (>= 0) is added to every count before normalising."""

    def fit(key, data, weights):
        del key  # counting is deterministic
        # a weight-0 row is a padded slot: read its tokens as 0, so an out-of-range id
        # there cannot reach a count (its weight 0 keeps token 0's count unchanged)
        tokens = jnp.where(weights[:, None] > 0, data, 0)
        per_token = jnp.broadcast_to(weights[:, None], tokens.shape)
        unigram = jnp.bincount(tokens.ravel(), per_token.ravel(), length=vocab)
        start = jnp.bincount(tokens[:, 0], weights, length=vocab) + smoothing
        pairs = tokens[:, :-1] * vocab + tokens[:, 1:]
        counts = jnp.bincount(pairs.ravel(), per_token[:, 1:].ravel(), length=vocab * vocab)
        counts = counts.reshape(vocab, vocab) + smoothing
        rows = jnp.sum(counts, axis=1, keepdims=True)
        frequencies = unigram / jnp.sum(unigram)
        # a token never followed by another in the data (its row is 0 without smoothing)
        # backs off to the unigram frequencies: still only tokens of the data
        transition = jnp.where(rows > 0, counts / jnp.where(rows > 0, rows, 1.0), frequencies)
        return BigramParams(start / jnp.sum(start), transition, frequencies)

    def sample(key, params, n):
        keys = jax.random.split(key, block)  # one per position
        first = jax.random.categorical(keys[0], jnp.log(params.start), shape=(n,))

        def step(previous, position_key):
            # log 0 = -inf: a token of probability 0 is never drawn
            token = jax.random.categorical(position_key, jnp.log(params.transition[previous]))
            return token, token

        _, rest = jax.lax.scan(step, first, keys[1:])
        return jnp.concatenate([first[:, None], rest.T], axis=1).astype(jnp.int32)

    def metrics(params, reference):
        """seen: tokens of the vocabulary present in the data fitted; entropy (nats) and
        total variation of its unigram frequencies against p_0's."""
        frequencies = params.unigram
        entropy = -jnp.sum(jnp.where(frequencies > 0, frequencies * jnp.log(frequencies), 0.0))
        return {"seen": jnp.sum(frequencies > 0).astype(frequencies.dtype), "entropy": entropy,
                "tv": 0.5 * jnp.sum(jnp.abs(frequencies - reference))}

    return Family(name="bigram", row=jax.ShapeDtypeStruct((block,), jnp.int32), fit=fit, sample=sample,
                  metrics=metrics)


METRIC_NAMES = ("seen", "entropy", "tv")


def p0_params(vocab, block, stickiness=0.5, exponent=1.1):
    """p_0, a member of the family: a block starts with a Zipf-distributed token; each next
    token is, with probability ``stickiness``, the successor of the last one (id + 1; the
    last id repeats itself), else a fresh Zipf draw. Ids run from the rarest token (0) to
    the most frequent (V - 1): a padded row (token 0, weight 0) that leaked into the
    counts would make the rarest token look alive. ``unigram`` holds p_0's expected token
    frequencies over a block's positions (what the fit's frequencies estimate)."""
    zipf = np.arange(vocab, 0, -1, dtype=np.float64) ** -exponent
    zipf /= zipf.sum()
    successor = np.eye(vocab, k=1)
    successor[-1, -1] = 1.0
    transition = stickiness * successor + (1.0 - stickiness) * zipf
    position = [zipf]
    for _ in range(block - 1):
        position.append(transition.T @ position[-1])
    dtype = jnp.result_type(float)
    return BigramParams(jnp.asarray(zipf, dtype), jnp.asarray(transition, dtype),
                        jnp.asarray(np.mean(position, axis=0), dtype))


def token_program(regime, generations, samples, vocab, block, smoothing=0.0):
    family = bigram_family(vocab, block, smoothing)
    p0 = p0_params(vocab, block)
    return data_path_program(
        family, jc.parse_policy(regime), np.full(generations, samples), lambda key, n: family.sample(key, p0, n),
        p0, metrics=lambda params: family.metrics(params, p0.unigram), metric_names=METRIC_NAMES,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=200)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--samples", type=int, default=32, help="blocks per generation, M")
    parser.add_argument("--block", type=int, default=8, help="tokens per block (row)")
    parser.add_argument("--vocab", type=int, default=32)
    parser.add_argument("--smoothing", type=float, default=0.0, help="added to every count")
    parser.add_argument("--regimes", default="replace,accumulate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    regimes = args.regimes.split(",")
    summaries = {}
    for regime in regimes:
        program = token_program(regime, args.generations, args.samples, args.vocab, args.block, args.smoothing)
        result = jc.simulate(program, num_chains=args.chains, seed=args.seed)
        summaries[regime] = {name: result.summary(name) for name in METRIC_NAMES}
    print(f"bigram over {args.vocab} tokens, M = {args.samples} blocks of {args.block}, smoothing {args.smoothing:g}, "
          f"{args.chains} chains: tokens seen (mean, se) and unigram entropy per generation")
    print(f"{'gen':>4}" + "".join(f" {regime + ' seen':>22} {'entropy':>8}" for regime in regimes))
    for n in range(args.generations + 1):
        print(f"{n:>4}" + "".join(f" {s['seen']['mean'][n]:15.2f} {s['seen']['se'][n]:6.2f} {s['entropy']['mean'][n]:8.3f}"
                                  for s in summaries.values()))
    return summaries


if __name__ == "__main__":
    main()
