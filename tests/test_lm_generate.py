"""Generation (jaxcollapse.lm.generate) on toy decoders that follow the DecoderFns protocol.

Two toys: a trigram lookup table (next-token logits depend on the last two real tokens only,
so exhaustive search and a Hugging Face twin are easy), and a one-layer causal attention
decoder with a real key/value cache, learned positions and masking (checks the cache, the
position ids and the left-padding mask against full forward passes without a cache). Then
the real (tiny) OPT decoder against token ids of transformers' generate (tests/fixtures/opt:
greedy, and 5-beam search with repetition penalty 2, with and without left padding).
"""

import functools
import itertools
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_z

from jaxcollapse._validation import ConfigError
from jaxcollapse.lm.generate import DecoderFns, GenerationConfig, generate, prompt_position_ids

FIXTURES = Path(__file__).parent / "fixtures" / "opt"


class KVCache(NamedTuple):  # these toy decoders' own layout, (layers, batch, max_length, heads, head_dim); the protocol needs batch on axis 1
    keys: jax.Array
    values: jax.Array
    index: jax.Array


# --- toy 1: trigram table --------------------------------------------------------------------

def trigram_fns(vocab):
    """logits(next) = table[prev, last]; prev = vocab when the previous slot is padding/empty."""

    def init_cache(batch, length):
        return KVCache(jnp.zeros((1, batch, length, 1, 1)), jnp.zeros((1, batch, length, 1, 1)), jnp.int32(0))

    def apply(table, ids, mask, positions, cache):
        steps = ids.shape[1]
        buffer = jax.lax.dynamic_update_slice(cache.keys[0, :, :, 0, 0], ids.astype(jnp.float32), (0, cache.index))
        slots = cache.index + jnp.arange(steps)
        prev_slot = jnp.maximum(slots - 1, 0)
        prev = buffer[:, prev_slot].astype(jnp.int32)
        prev_real = (slots > 0)[None, :] & (mask[:, prev_slot] == 1)
        prev = jnp.where(prev_real, prev, vocab)
        keys = cache.keys.at[0, :, :, 0, 0].set(buffer)
        return table[prev, ids], KVCache(keys, cache.values, cache.index + steps)

    return DecoderFns(apply, init_cache)


def trigram_table(vocab, seed, scale=2.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(vocab + 1, vocab, vocab)) * scale, jnp.float32)


def trigram_log_probs(table, context, vocab):
    """Next-token log-probabilities after a list of real tokens."""
    prev = context[-2] if len(context) >= 2 else vocab
    return np.asarray(jax.nn.log_softmax(table[prev, context[-1]]), np.float64)


# --- toy 2: one causal attention layer with a key/value cache ---------------------------------

VOCAB, DIM, HEADS, MAX_POSITIONS = 11, 16, 2, 40


def attention_params(seed=0):
    keys = jax.random.split(jax.random.key(seed), 7)

    def normal(k, shape, scale):
        return scale * jax.random.normal(k, shape)

    return {
        "embed": normal(keys[0], (VOCAB, DIM), 1.0),
        "positions": normal(keys[1], (MAX_POSITIONS + 2, DIM), 1.0),
        "q": normal(keys[2], (DIM, DIM), DIM**-0.5),
        "k": normal(keys[3], (DIM, DIM), DIM**-0.5),
        "v": normal(keys[4], (DIM, DIM), DIM**-0.5),
        "o": normal(keys[5], (DIM, DIM), DIM**-0.5),
        "out": normal(keys[6], (DIM, VOCAB), 3 * DIM**-0.5),
    }


def _attention_apply(params, ids, mask, positions, cache):
    batch, steps = ids.shape
    head_dim = DIM // HEADS
    x = params["embed"][ids] + params["positions"][positions + 2]  # OPT's offset
    q, k, v = ((x @ params[name]).reshape(batch, steps, HEADS, head_dim) for name in "qkv")
    keys = jax.lax.dynamic_update_slice(cache.keys, k[None], (0, 0, cache.index, 0, 0))
    values = jax.lax.dynamic_update_slice(cache.values, v[None], (0, 0, cache.index, 0, 0))
    length = keys.shape[2]
    query_slots = cache.index + jnp.arange(steps)
    allowed = (jnp.arange(length)[None, :] <= query_slots[:, None])[None] & (mask[:, None, :] == 1)
    logits = jnp.einsum("bthd,bshd->bhts", q, keys[0]) / jnp.sqrt(head_dim)
    logits = jnp.where(allowed[:, None], logits, jnp.finfo(jnp.float32).min)
    attended = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(logits, axis=-1), values[0])
    h = jnp.tanh(x + attended.reshape(batch, steps, DIM) @ params["o"])
    return h @ params["out"], KVCache(keys, values, cache.index + steps)


def _attention_cache(batch, length):
    zeros = jnp.zeros((1, batch, length, HEADS, DIM // HEADS))
    return KVCache(zeros, zeros, jnp.int32(0))


ATTENTION = DecoderFns(_attention_apply, _attention_cache, context_length=MAX_POSITIONS)


@jax.jit
def full_forward_log_probs(params, ids, mask):
    """Next-token log-probabilities at every position, from one pass without cache reuse."""
    cache = _attention_cache(ids.shape[0], ids.shape[1])
    logits, _ = _attention_apply(params, ids, mask, prompt_position_ids(mask), cache)
    return jax.nn.log_softmax(logits)


def teacher_forced(params, prompt, continuation, width=16):
    """(log-probabilities of each new token, argmax before each new token) for one unpadded row.

    One causal pass over prompt + continuation; right padding up to ``width`` keeps one compiled
    shape and cannot reach earlier positions.
    """
    sequence = list(prompt) + list(continuation)
    ids = jnp.asarray([sequence + [0] * (width - len(sequence))], jnp.int32)
    mask = jnp.asarray([[1] * len(sequence) + [0] * (width - len(sequence))], jnp.int32)
    log_probs = full_forward_log_probs(params, ids, mask)[0, len(prompt) - 1:len(sequence) - 1]
    chosen = jnp.take_along_axis(log_probs, jnp.asarray(continuation)[:, None], axis=1)[:, 0]
    return np.asarray(chosen, np.float64), np.asarray(jnp.argmax(log_probs, axis=-1))


def padded_batch(prompts, pad=0):
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad, np.int32)
    mask = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    return jnp.asarray(ids), jnp.asarray(mask)


PROMPTS = [[3, 7, 1, 4, 4, 9], [5], [2, 8, 8]]


# --- greedy -------------------------------------------------------------------------------------

def test_greedy_of_a_padded_batch_is_argmax_of_full_passes_over_each_prompt_alone():
    params = attention_params()
    ids, mask = padded_batch(PROMPTS)
    out = generate(ATTENTION, params, ids, mask, max_new_tokens=6)
    assert out.tokens.shape == (3, 6) and out.tokens.dtype == jnp.int32
    np.testing.assert_array_equal(out.lengths, [6, 6, 6])
    for i, prompt in enumerate(PROMPTS):  # unpadded, and no cache: the cache and mask change nothing
        log_probs, argmax = teacher_forced(params, prompt, out.tokens[i].tolist())
        np.testing.assert_array_equal(out.tokens[i], argmax)
        np.testing.assert_allclose(out.scores[i], log_probs.sum(), rtol=1e-5)


def test_beam_search_of_a_padded_batch_equals_the_prompt_alone():
    params = attention_params(1)
    ids, mask = padded_batch(PROMPTS)
    settings = dict(method="beam", num_beams=3, repetition_penalty=1.7, eos_token_id=2, length_penalty=0.5)
    batched = generate(ATTENTION, params, ids, mask, max_new_tokens=6, **settings)
    alone = generate(ATTENTION, params, jnp.asarray([PROMPTS[2]]), max_new_tokens=6, **settings)
    np.testing.assert_array_equal(batched.tokens[2], alone.tokens[0])
    np.testing.assert_allclose(batched.scores[2], alone.scores[0], rtol=1e-5)


def test_eos_then_padding_and_lengths():
    vocab = 5
    # token v is followed by v + 1 (score 5 against -5); 4 is EOS and 0 the pad id
    table = jnp.full((vocab + 1, vocab, vocab), -5.0).at[:, jnp.arange(vocab), (jnp.arange(vocab) + 1) % vocab].set(5.0)
    fns = trigram_fns(vocab)
    settings = dict(max_new_tokens=5, eos_token_id=4, pad_token_id=0)
    out = generate(fns, table, jnp.asarray([[1], [3]]), **settings)
    np.testing.assert_array_equal(out.tokens, [[2, 3, 4, 0, 0], [4, 0, 0, 0, 0]])
    np.testing.assert_array_equal(out.lengths, [3, 1])
    # min_new_tokens bans EOS (-inf) until 3 tokens exist: the tied runners-up go to argmax's first, 0
    out = generate(fns, table, jnp.asarray([[1], [3]]), min_new_tokens=3, **settings)
    np.testing.assert_array_equal(out.tokens, [[2, 3, 0, 1, 2], [0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(out.lengths, [5, 5])
    # exactly max_new_tokens real tokens when min_new_tokens == max_new_tokens
    out = generate(fns, table, jnp.asarray([[3], [1]]), min_new_tokens=5, **settings)
    np.testing.assert_array_equal(out.tokens, [[0, 1, 2, 3, 0], [2, 3, 0, 1, 2]])


# --- repetition penalty -------------------------------------------------------------------------

def test_repetition_penalty_by_hand():
    vocab = 4
    fns = trigram_fns(vocab)

    def constant(logits):
        return jnp.broadcast_to(jnp.asarray(logits), (vocab + 1, vocab, vocab))

    table = constant([2.0, 1.5, -0.5, -0.4])  # the same next-token logits after anything
    prompt, left_padded = jnp.asarray([[3, 0]]), jnp.asarray([[0, 1]])  # token 3 is padding in the second
    out = generate(fns, table, prompt, max_new_tokens=3)
    np.testing.assert_array_equal(out.tokens, [[0, 0, 0]])
    # 0 seen: [2/1.5, 1.5, ...] -> 1; then 0 and 1 seen: [1.33, 1.0, -0.5, -0.4] -> 0, 0
    out = generate(fns, table, prompt, left_padded, max_new_tokens=3, repetition_penalty=1.5)
    np.testing.assert_array_equal(out.tokens, [[1, 0, 0]])
    # negative scores are multiplied; a penalty below 1 rewards seen tokens
    table = constant([-1.0, -1.0, -0.5, -0.4])
    real = generate(fns, table, prompt, max_new_tokens=3, repetition_penalty=0.1)
    padded = generate(fns, table, prompt, left_padded, max_new_tokens=3, repetition_penalty=0.1)
    # 0 and 3 seen: [-0.1, -1, -0.5, -0.04] -> 3, 3, 3
    np.testing.assert_array_equal(real.tokens, [[3, 3, 3]])
    # padding is not part of the sequence: [-0.1, -1, -0.5, -0.4] -> 0, then 0 stays best
    np.testing.assert_array_equal(padded.tokens, [[0, 0, 0]])
    # greedy scores are log_softmax of the processed scores at the chosen tokens
    processed = np.array([-0.1, -1.0, -0.5, -0.04])
    expected = 3 * (processed[3] - np.log(np.exp(processed).sum()))
    np.testing.assert_allclose(real.scores[0], expected, rtol=1e-5)


# --- beam search --------------------------------------------------------------------------------

def _processed_sequence_score(table, prompt, continuation, vocab, penalty):
    """Sum of HF beam-search scores: log_softmax, then the repetition penalty on seen tokens."""
    context, total = list(prompt), 0.0
    for token in continuation:
        log_probs = trigram_log_probs(table, context, vocab)
        score = log_probs[token]
        if token in context:
            score = score * penalty if score < 0 else score / penalty
        total += score
        context.append(token)
    return total


def test_beam_search_with_all_prefixes_is_exhaustive_search():
    vocab, steps, penalty = 4, 3, 1.8
    beams = vocab ** (steps - 1)  # every prefix survives: beam search is exact
    table = trigram_table(vocab, seed=3)
    fns = trigram_fns(vocab)
    prompts = [[1, 3], [2]]
    ids, mask = padded_batch(prompts)
    out = generate(fns, table, ids, mask, max_new_tokens=steps, method="beam", num_beams=beams,
                   repetition_penalty=penalty)
    for i, prompt in enumerate(prompts):
        scores = {c: _processed_sequence_score(table, prompt, c, vocab, penalty)
                  for c in itertools.product(range(vocab), repeat=steps)}
        best = max(scores, key=scores.get)
        assert tuple(out.tokens[i].tolist()) == best
        np.testing.assert_allclose(out.scores[i], scores[best] / steps, rtol=1e-5)


# --- sampling -----------------------------------------------------------------------------------

def test_sampling_is_reproducible_and_degenerate_filters_and_one_beam_are_greedy():
    vocab = 7
    table, fns = trigram_table(vocab, seed=6, scale=1.0), trigram_fns(vocab)
    ids, mask = padded_batch([[1, 2, 3], [4], [5, 6]])
    key = jax.random.key(7)
    sample = dict(max_new_tokens=8, method="sample", temperature=1.5, top_p=0.95, repetition_penalty=1.2)
    first = generate(fns, table, ids, mask, key=key, **sample)
    again = generate(fns, table, ids, mask, key=key, **sample)
    other = generate(fns, table, ids, mask, key=jax.random.key(8), **sample)
    np.testing.assert_array_equal(first.tokens, again.tokens)
    assert not np.array_equal(first.tokens, other.tokens)
    # a row's draws do not depend on the other rows (per-row keys)
    others = generate(fns, table, ids.at[1:].set(0), mask, key=key, **sample)
    np.testing.assert_array_equal(others.tokens[0], first.tokens[0])
    greedy = generate(fns, table, ids, mask, max_new_tokens=8, repetition_penalty=1.2)
    one_beam = generate(fns, table, ids, mask, max_new_tokens=8, method="beam", num_beams=1, repetition_penalty=1.2)
    np.testing.assert_array_equal(one_beam.tokens, greedy.tokens)  # one beam is greedy, as in transformers
    for filters in (dict(sample, top_p=1e-6), dict(sample, top_k=1, top_p=1.0)):
        sampled = generate(fns, table, ids, mask, key=key, **filters)
        np.testing.assert_array_equal(sampled.tokens, greedy.tokens)


def test_sampled_first_tokens_follow_tempered_softmax():
    vocab, temperature, draws = 6, 0.7, 4000
    table = trigram_table(vocab, seed=11, scale=1.0)
    fns = trigram_fns(vocab)
    prompt = jnp.full((draws, 1), 2, jnp.int32)
    out = generate(fns, table, prompt, key=jax.random.key(0), max_new_tokens=1, method="sample",
                   temperature=temperature)
    counts = np.bincount(np.asarray(out.tokens[:, 0]), minlength=vocab)
    p = np.asarray(jax.nn.softmax(table[vocab, 2] / temperature), np.float64)
    assert_z(counts / draws, np.sqrt(p * (1 - p) / draws), p, "first-token frequencies")


def test_top_k_keeps_ties_at_the_threshold():
    vocab, draws = 6, 3000
    logits = jnp.asarray([3.0, 2.0, 2.0, 1.0, 0.0, -1.0])  # tie at the top-2 threshold: both kept
    table = jnp.broadcast_to(logits, (vocab + 1, vocab, vocab))
    fns = trigram_fns(vocab)
    prompt = jnp.full((draws, 1), 0, jnp.int32)
    out = generate(fns, table, prompt, key=jax.random.key(1), max_new_tokens=1, method="sample", top_k=2)
    counts = np.bincount(np.asarray(out.tokens[:, 0]), minlength=vocab)
    assert set(np.flatnonzero(counts).tolist()) == {0, 1, 2}
    p = np.asarray(jax.nn.softmax(logits[:3]), np.float64)
    assert_z(counts[:3] / draws, np.sqrt(p * (1 - p) / draws), p, "top-k frequencies")


# --- compilation and errors ---------------------------------------------------------------------

def test_compiled_once_per_shape():
    traces = []
    toy = trigram_fns(5)
    fns = toy._replace(apply=lambda *args: (traces.append(args[1].shape), toy.apply(*args))[1])
    ids, mask = padded_batch([[1, 2, 3], [4]])
    settings = dict(max_new_tokens=4, method="beam", num_beams=2, eos_token_id=4)
    generate(fns, trigram_table(5, 0), ids, mask, repetition_penalty=1.5, **settings)
    count = len(traces)
    generate(fns, trigram_table(5, 1), ids, mask, repetition_penalty=1.5, **settings)  # new weights
    generate(fns, trigram_table(5, 0), ids[::-1], mask[::-1], repetition_penalty=1.5, **settings)
    # swept numbers (penalty, min_new_tokens, length penalty, early stopping; temperature and
    # top_p alike) are traced values
    generate(fns, trigram_table(5, 0), ids, mask, repetition_penalty=0.5, min_new_tokens=3, length_penalty=2.0,
             early_stopping="never", **settings)
    assert len(traces) == count


@pytest.mark.parametrize("settings, message", [
    (dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1"),
    (dict(max_new_tokens=4, min_new_tokens=5), r"min_new_tokens must lie in \[0, max_new_tokens=4\]"),
    (dict(max_new_tokens=4, method="sample", temperature=0.0), "temperature must be > 0"),
    (dict(max_new_tokens=4, method="sample", top_p=1.5), r"top_p must lie in \(0, 1\]"),
    (dict(max_new_tokens=4, method="sample", top_k=0), "top_k must be an integer >= 1"),
    (dict(max_new_tokens=4, method="beam", num_beams=0), "num_beams must be an integer >= 1"),
    (dict(max_new_tokens=4, repetition_penalty=-1.0), "repetition_penalty must be > 0"),
    (dict(max_new_tokens=4, method="nucleus"), "unknown method 'nucleus'"),
    (dict(max_new_tokens=4, temperature=0.5), "temperature only applies to method='sample'"),
    (dict(max_new_tokens=4, early_stopping="sometimes"), "early_stopping must be"),
    (dict(max_new_tokens=4, eos_token_id=-2), "eos_token_id must be an integer >= 0"),
])
def test_bad_settings_name_the_parameter(settings, message):
    with pytest.raises(ConfigError, match=message):
        GenerationConfig(**settings)


def test_bad_inputs_give_clear_errors():
    params = attention_params()
    ids, mask = padded_batch(PROMPTS)
    with pytest.raises(ConfigError, match="exceeds the model's context_length 40"):
        generate(ATTENTION, params, ids, mask, max_new_tokens=35)
    with pytest.raises(ConfigError, match="left-padded"):
        generate(ATTENTION, params, ids, mask[:, ::-1], max_new_tokens=2)
    with pytest.raises(ConfigError, match="prompt_mask must have the shape"):
        generate(ATTENTION, params, ids, mask[:, 1:], max_new_tokens=2)
    with pytest.raises(ConfigError, match="prompt_ids must have shape"):
        generate(ATTENTION, params, ids[0], max_new_tokens=2)
    with pytest.raises(ConfigError, match="needs a key"):
        generate(ATTENTION, params, ids, mask, max_new_tokens=2, method="sample")
    with pytest.raises(ConfigError, match="eos_token_id .* must be < the model's vocabulary size 11"):
        generate(ATTENTION, params, ids, mask, max_new_tokens=2, eos_token_id=50)
    with pytest.raises(ConfigError, match="needs max_new_tokens"):
        generate(ATTENTION, params, ids, mask)
    with pytest.raises(ConfigError, match="not both"):
        generate(ATTENTION, params, ids, mask, config=GenerationConfig(max_new_tokens=2), max_new_tokens=2)


# --- the same toy inside transformers' own generate ---------------------------------------------
#
# Token ids (and beam scores) that transformers 5.23 ``generate`` (torch) returns for the trigram
# toy, written out so that the default suite needs no torch; the ``slow`` tests below rebuild the
# toy as a transformers model and check these constants against a live ``generate``.
# max_new_tokens = 10, eos 2, pad 1 (also an ordinary token of the toy, and the prompts' left
# padding: the repetition penalty must ignore the padding). transformers stops the greedy loop
# (every row done) after 9 steps and beam search (early-stop heuristic) after 6 steps in the first
# and third settings: the fixed-length scan must leave finished rows and hypothesis buffers as
# they were. Two compiled programs serve all seven settings (the numbers are traced values).

TWIN_VOCAB, TWIN_EOS, TWIN_PAD = 6, 2, 1
TWIN_PROMPTS = [[3, 4], [5, 0, 3, 3], [4], [2, 5, 5]]
TWIN_CASES = [
    (dict(method="greedy", repetition_penalty=1.6),
     [[1, 4, 5, 1, 0, 5, 3, 1, 2], [1, 2, 1, 1, 1, 1, 1, 1, 1], [5, 1, 0, 5, 3, 1, 2, 1, 1],
      [2, 1, 1, 1, 1, 1, 1, 1, 1]], None),
    (dict(method="greedy", repetition_penalty=1.3, min_new_tokens=3),
     [[1, 4, 5, 1, 5, 1, 5, 1, 5, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [5, 1, 5, 1, 5, 1, 5, 1, 5, 1],
      [5, 5, 5, 2, 1, 1, 1, 1, 1, 1]], None),
    (dict(method="beam", num_beams=3, repetition_penalty=2.0),
     [[1, 0, 5, 3, 1, 2], [1, 2, 1, 1, 1, 1], [5, 1, 5, 2, 1, 1], [1, 0, 5, 3, 1, 2]],
     [-1.03065, -0.4049622, -1.0047, -1.170439]),
    (dict(method="beam", num_beams=3, min_new_tokens=10, repetition_penalty=2.0),  # the paper's setting
     [[1, 4, 5, 1, 5, 1, 0, 5, 3, 1], [0, 1, 3, 0, 1, 4, 5, 1, 5, 1], [5, 1, 0, 5, 3, 1, 1, 1, 1, 1],
      [1, 0, 5, 3, 4, 1, 4, 5, 1, 5]],
     [-1.34084, -1.495601, -1.415043, -1.383737]),
    (dict(method="beam", num_beams=3, repetition_penalty=0.7, length_penalty=2.0, early_stopping="never"),
     [[1, 4, 5, 1, 5, 1, 5, 1, 5, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [5, 1, 5, 1, 5, 1, 5, 1, 5, 1],
      [1, 5, 1, 5, 1, 5, 1, 5, 1, 5]],
     [-0.0630134, -0.0493716, -0.0683163, -0.06939524]),
    (dict(method="beam", num_beams=3, repetition_penalty=1.1, length_penalty=-0.5, min_new_tokens=2,
          early_stopping=True),
     [[1, 4, 5, 1, 5, 2, 1, 1, 1, 1], [0, 1, 3, 0, 1, 3, 0, 1, 3, 0], [5, 1, 5, 2, 1, 1, 1, 1, 1, 1],
      [3, 1, 2, 1, 1, 1, 1, 1, 1, 1]],
     [-11.91909, -24.62348, -7.178694, -5.510643]),
    (dict(method="beam", num_beams=3, repetition_penalty=1.4, length_penalty=0.3, early_stopping=True),
     [[1, 0, 5, 3, 1, 2], [1, 2, 1, 1, 1, 1], [2, 1, 1, 1, 1, 1], [2, 1, 1, 1, 1, 1]],
     [-3.121893, -0.6578631, -1.425692, -1.478012]),
]
# one sampled token: log_softmax of the scores transformers samples from after the repetition
# penalty (1.3), temperature (0.7), top-k (4) and top-p (0.8), per prompt (table seed 22)
TWIN_SAMPLING = dict(max_new_tokens=1, temperature=0.7, top_k=4, top_p=0.8, repetition_penalty=1.3)
TWIN_SAMPLING_LOG_PROBS = [
    [-np.inf, -0.9446446, -np.inf, -np.inf, -np.inf, -0.4923601],
    [-1.037144, -1.073288, -np.inf, -1.191873, -np.inf, -np.inf],
    [-1.802835, -1.020436, -0.7450066, -np.inf, -np.inf, -np.inf],
    [-1.584054, -np.inf, -2.129885, -0.3915516, -np.inf, -np.inf],
]


def test_greedy_and_beam_search_match_transformers_generate():
    table = trigram_table(TWIN_VOCAB, seed=21, scale=1.5)
    ids, mask = padded_batch(TWIN_PROMPTS, pad=TWIN_PAD)
    fns = trigram_fns(TWIN_VOCAB)  # one instance: a fresh one would be a fresh compilation
    for settings, expected, expected_scores in TWIN_CASES:
        out = generate(fns, table, ids, mask, max_new_tokens=10, eos_token_id=TWIN_EOS,
                       pad_token_id=TWIN_PAD, **settings)
        width = len(expected[0])  # transformers crops to the longest row; the rest is padding here
        np.testing.assert_array_equal(out.tokens[:, :width], expected, err_msg=str(settings))
        assert np.all(np.asarray(out.tokens[:, width:]) == TWIN_PAD), settings
        if expected_scores is not None:
            np.testing.assert_allclose(out.scores, expected_scores, rtol=2e-6, err_msg=str(settings))


def test_sampling_warpers_match_transformers_processed_scores():
    # every token we draw lies in transformers' support, with the same log-probability
    table = trigram_table(TWIN_VOCAB, seed=22, scale=1.5)
    ids, mask = padded_batch(TWIN_PROMPTS * 25, pad=TWIN_PAD)
    out = generate(trigram_fns(TWIN_VOCAB), table, ids, mask, key=jax.random.key(3), method="sample",
                   eos_token_id=TWIN_EOS, pad_token_id=TWIN_PAD, **TWIN_SAMPLING)
    expected = np.asarray(TWIN_SAMPLING_LOG_PROBS * 25)[np.arange(100), np.asarray(out.tokens[:, 0])]
    assert np.all(np.isfinite(expected))
    # equal log-probabilities also mean equal supports: a smaller one would renormalize higher
    np.testing.assert_allclose(out.scores, expected, rtol=2e-6)


def _transformers_twin(table):
    """The trigram toy as a transformers causal LM (torch)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_outputs import CausalLMOutputWithPast

    vocab = table.shape[-1]

    class ToyConfig(transformers.PretrainedConfig):
        model_type = "jaxcollapse_trigram_toy"

    class ToyLM(transformers.PreTrainedModel, transformers.GenerationMixin):
        config_class = ToyConfig

        def __init__(self, config):
            super().__init__(config)
            self.table = torch.nn.Parameter(torch.tensor(np.asarray(table)), requires_grad=False)

        def forward(self, input_ids, attention_mask=None, **kwargs):
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            prev = torch.cat([torch.full_like(input_ids[:, :1], vocab), input_ids[:, :-1]], 1)
            prev_real = torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], 1).bool()
            prev = torch.where(prev_real, prev, torch.full_like(prev, vocab))
            return CausalLMOutputWithPast(logits=self.table[prev, input_ids])

    ids, mask = padded_batch(TWIN_PROMPTS, pad=TWIN_PAD)

    def run(**settings):
        return ToyLM(ToyConfig(vocab_size=vocab)).generate(
            input_ids=torch.tensor(np.asarray(ids), dtype=torch.long),
            attention_mask=torch.tensor(np.asarray(mask), dtype=torch.long), eos_token_id=TWIN_EOS,
            pad_token_id=TWIN_PAD, use_cache=False, return_dict_in_generate=True, output_scores=True, **settings)

    return torch, run


@pytest.mark.slow
def test_transformers_constants_are_what_transformers_generates():
    torch, run = _transformers_twin(trigram_table(TWIN_VOCAB, seed=21, scale=1.5))
    for settings, expected, expected_scores in TWIN_CASES:
        hf_settings = {k: v for k, v in settings.items() if k != "method"}
        out = run(do_sample=False, max_new_tokens=10, **{"num_beams": 1, **hf_settings})
        np.testing.assert_array_equal(out.sequences[:, 4:].numpy(), expected, err_msg=str(settings))
        if expected_scores is not None:
            np.testing.assert_allclose(out.sequences_scores.numpy(), expected_scores, rtol=1e-6)
    torch, run = _transformers_twin(trigram_table(TWIN_VOCAB, seed=22, scale=1.5))
    out = run(do_sample=True, **TWIN_SAMPLING)
    np.testing.assert_allclose(torch.log_softmax(out.scores[0], dim=-1).numpy(), TWIN_SAMPLING_LOG_PROBS, rtol=1e-6)


# --- the OPT decoder ---------------------------------------------------------------------------

@functools.cache
def _opt_fixture_model():
    from jaxcollapse.lm import opt
    from jaxcollapse.lm.checkpoint import load_opt

    config, model = load_opt(FIXTURES / "pre_ln")
    apply, params = opt.functional(model)
    return opt.decoder_fns(apply, config), params  # what the recursive runs use


@pytest.mark.parametrize("prompts", ["nopad", "leftpad"])
def test_opt_greedy_and_beam_search_reproduce_transformers_token_ids(prompts):
    fixture = FIXTURES / "pre_ln" / "generate.npz"
    if not fixture.exists():
        pytest.skip("OPT generation fixtures not present")
    data = np.load(fixture, allow_pickle=False)
    fns, params = _opt_fixture_model()
    ids, mask = data[f"{prompts}_input_ids"], data[f"{prompts}_attention_mask"]
    prompt_length = ids.shape[1]
    new = data[f"{prompts}_greedy_sequences"].shape[1] - prompt_length
    # transformers' call: min_new_tokens = max_new_tokens, eos 2, pad 1
    common = dict(max_new_tokens=new, min_new_tokens=new, eos_token_id=2, pad_token_id=1)
    for name, settings in [("greedy", {}), ("greedy_rep2", dict(repetition_penalty=2.0)),
                           ("beam5_rep2", dict(method="beam", num_beams=5, repetition_penalty=2.0))]:
        out = generate(fns, params, ids, mask, **common, **settings)
        np.testing.assert_array_equal(out.tokens, data[f"{prompts}_{name}_sequences"][:, prompt_length:], err_msg=name)
        if name == "beam5_rep2":
            np.testing.assert_allclose(out.scores, data[f"{prompts}_{name}_scores"], rtol=1e-5)
