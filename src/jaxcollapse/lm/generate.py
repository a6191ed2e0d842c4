"""Batched text generation with a key/value cache: greedy, sampling and beam search.

The decoder is reached through a small protocol, :class:`DecoderFns`, so this module does
not depend on any particular model (the cache is any pytree, e.g. ``opt.KVCache``)::

    logits, cache = apply(params, input_ids, attention_mask, position_ids, cache)
    cache = init_cache(batch_size, max_length)

``input_ids`` and ``position_ids`` are ``(rows, T)`` int32; ``attention_mask`` is
``(rows, max_length)`` with a 1 for every cache slot that holds a real token written so far
or being written now, 0 for left padding and for slots not yet written; ``apply`` writes the
new keys and values at slots ``[index, index + T)`` and returns ``(rows, T, vocab)`` logits.

Prompts are left-padded ``(B, P)`` batches with a 0/1 mask. The cache holds
``P + max_new_tokens`` slots; the whole prompt is prefilled in one call, then one token per
row (per beam) is decoded per step inside a ``lax.scan`` of fixed length: exactly
``max_new_tokens`` tokens come back for every row. The function is compiled once per
shape and :class:`GenerationConfig` (a frozen, hashable dataclass checked on the host);
temperature, top_p, repetition_penalty, min_new_tokens, length_penalty and
early_stopping are traced, so sweeping them does not recompile.

Semantics follow ``transformers`` 5.23 ``generate`` (``generation/utils.py`` and
``generation/logits_process.py``) token for token:

* position ids are ``cumsum(mask) * mask - 1`` over the prompt, then ``n_real + t`` for
  the t-th new token (the model adds its own offset, 2 for OPT);
* logits are cast to float32, then processed in Hugging Face's order: repetition penalty,
  then the ``min_new_tokens`` EOS ban, then (sampling only) temperature, top-k, top-p;
* repetition penalty (``RepetitionPenaltyLogitsProcessor``): every token id present in the
  sequence so far has its score divided by the penalty when positive and multiplied when
  negative, at most once however often it occurs. The prompt counts, except its leading
  padding (``transformers`` passes ``prompt_ignore_length`` = index of the first unmasked
  prompt position). Tokens are tracked in a ``(rows, vocab)`` table updated per step;
* greedy and sampling apply the processors to raw logits. A row that has produced EOS is
  continued with ``pad_token_id`` (default: the EOS id, as ``transformers`` does);
* sampling draws from ``softmax(processed)``. ``top_k`` keeps every token whose score is
  at least the k-th largest (ties at the threshold survive); ``top_p`` sorts ascending,
  removes tokens whose cumulative probability is ``<= 1 - top_p`` and always keeps the most
  probable one. Row ``i`` at step ``t`` uses ``fold_in(fold_in(key, i), t)``, so a row's
  draws do not depend on the batch it is in (``torch.multinomial`` cannot be reproduced:
  samples agree with ``transformers`` in distribution, not draw for draw);
* beam search (``_beam_search``, ``num_beams > 1``): processors are applied to the
  **log-softmax** of the logits, added to the running beam scores (initially 0 for beam 0
  and -1e9 for the others); the top ``K = max(2, 1 + n_eos) * num_beams`` candidates are
  kept; candidates ending in EOS (or reaching the last step) leave the running set with a
  -1e9 penalty; those among the first ``num_beams`` candidates enter a fixed-size buffer of
  finished hypotheses scored ``sum_logprob / n_new ** length_penalty`` (``n_new`` counting
  the EOS) unless the batch item's buffer is full with ``early_stopping=True`` or the early
  stop heuristic says no running beam can improve on the worst finished one; the answer is
  the best finished hypothesis. ``num_beams=1`` is greedy search, as in ``transformers``.

Differences, none of which changes a generated token: ``transformers`` crops its output
to the longest sequence it generated and stops early when every row is done; here the
output is always ``max_new_tokens`` wide and padded (finished beams are padded with
``pad_token_id``, where ``transformers`` writes EOS instead when the pad id is 0), and the
scan runs on (finished rows and hypothesis buffers no longer change). ``generate`` in
``transformers`` gives padded prompt slots position 0 where this module (and the model's
own default) gives -1: only the padded slots' own outputs differ, and nothing attends to
them. The
default ``top_k`` is None (no top-k filter); ``transformers`` defaults to 50 when
sampling, so pass ``top_k=50`` to reproduce its default sampler.

With the OPT decoder of :mod:`jaxcollapse.lm.opt` (build ``fns`` once and reuse it: it is
a static argument, and a fresh closure means a fresh compilation)::

    apply, params = opt.functional(model)
    fns = DecoderFns(apply, functools.partial(opt.init_cache, config),
                     context_length=config.max_position_embeddings)
    out = generate(fns, params, ids, mask, max_new_tokens=64, min_new_tokens=64,
                   method="beam", num_beams=5, repetition_penalty=2.0, eos_token_id=2, pad_token_id=1)

Example (a toy decoder whose next token is always ``(last + 1) % 7``; it needs no cache):
    >>> import jax.numpy as jnp
    >>> from jaxcollapse.lm.generate import DecoderFns, generate
    >>> def apply(params, ids, mask, positions, cache):
    ...     return 5.0 * jnp.eye(7)[(ids + 1) % 7], cache
    >>> fns = DecoderFns(apply, init_cache=lambda batch, length: None)
    >>> out = generate(fns, None, jnp.array([[0, 3], [1, 2]]), jnp.array([[0, 1], [1, 1]]),
    ...                max_new_tokens=4)
    >>> out.tokens.tolist()
    [[4, 5, 6, 0], [3, 4, 5, 6]]
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import ConfigError, require_choice, require_int, require_positive

__all__ = [
    "DecoderFns", "GenerationConfig", "GenerationOutput", "generate",
    "reorder_cache", "prompt_position_ids", "METHODS",
]

METHODS = ("greedy", "sample", "beam")
_NEG = -1.0e9  # transformers' "very large negative" beam score


def reorder_cache(cache, indices: jax.Array):
    """Gather rows of a cache along its batch axis (axis 1 of every array leaf of rank >= 2).

    Used to copy the prefilled prompt to every beam and to follow beams to their parents.
    Scalar leaves (the write ``index``) are left alone. A decoder whose cache has another
    layout passes its own function as ``DecoderFns.reorder_cache``.

    Examples:
        >>> import jax.numpy as jnp
        >>> cache = {"keys": jnp.arange(6.0).reshape(1, 3, 2), "index": jnp.int32(2)}
        >>> reorder_cache(cache, jnp.array([2, 2, 0]))["keys"][0].tolist()
        [[4.0, 5.0], [4.0, 5.0], [0.0, 1.0]]
    """
    return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=1) if jnp.ndim(leaf) >= 2 else leaf, cache)


class DecoderFns(NamedTuple):
    """The decoder as pure functions (see the module docstring for the calling convention).

    ``context_length`` (optional) is the longest sequence the model accepts (OPT: 2048);
    prompts with ``P + max_new_tokens`` above it are rejected before tracing. ``prefill``
    (optional, default ``apply``) is used for the prompt call only; only its logits at the
    last position are read, so it may return ``(B, 1, vocab)`` and skip the output head
    for the other prompt positions (XLA does not prune that matmul by itself).
    Instances are static arguments of the compiled generator: build them once and reuse
    them (a fresh closure per call means a fresh compilation).
    """

    apply: Callable[..., tuple[jax.Array, Any]]
    init_cache: Callable[[int, int], Any]
    reorder_cache: Callable[[Any, jax.Array], Any] = reorder_cache
    context_length: int | None = None
    prefill: Callable[..., tuple[jax.Array, Any]] | None = None


class GenerationOutput(NamedTuple):
    """What :func:`generate` returns.

    ``tokens`` ``(B, max_new_tokens)`` int32 new tokens (padded with ``pad_token_id`` after
    EOS); ``lengths`` ``(B,)`` number of new tokens up to and including the first EOS
    (``max_new_tokens`` when there is none); ``scores`` ``(B,)`` float32: for beam search the
    ``transformers`` ``sequences_scores`` (sum of processed log-probabilities over the
    generated tokens divided by ``length ** length_penalty``), for greedy and sampling the
    sum over the generated tokens of ``log_softmax(processed scores)`` at the chosen token
    (with no processors active: the model's log-likelihood of the continuation).
    """

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array


def _token_ids(name: str, value) -> tuple[int, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else tuple(value)
    if not values:
        raise ConfigError(f"{name} must be a token id or a non-empty sequence of token ids; got {value!r}")
    return tuple(require_int(name, v, 0) for v in values)


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings, validated on construction (every error names the parameter).

    ``method``: "greedy", "sample" or "beam" (``num_beams`` > 1; 1 beam is greedy, as in
    ``transformers``). ``temperature``, ``top_k`` and ``top_p`` only apply to "sample";
    ``length_penalty`` and ``early_stopping`` (False, True or "never") only to "beam".
    ``min_new_tokens`` bans EOS (-inf score) until that many tokens were generated; with
    ``min_new_tokens == max_new_tokens`` every row gets exactly ``max_new_tokens`` real tokens.

    Examples:
        >>> GenerationConfig(max_new_tokens=64, min_new_tokens=64, method="beam", num_beams=5,
        ...                  repetition_penalty=2.0, eos_token_id=2, pad_token_id=1).num_beams
        5
        >>> GenerationConfig(max_new_tokens=8, top_p=0.0)
        Traceback (most recent call last):
        ...
        jaxcollapse._validation.ConfigError: top_p must lie in (0, 1]; got 0.0
    """

    max_new_tokens: int
    min_new_tokens: int = 0
    method: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    num_beams: int = 5
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    _eos: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)
        put("max_new_tokens", require_int("max_new_tokens", self.max_new_tokens, 1))
        minimum = 0 if self.min_new_tokens is None else require_int("min_new_tokens", self.min_new_tokens, 0)
        if minimum > self.max_new_tokens:
            raise ConfigError(
                f"min_new_tokens must lie in [0, max_new_tokens={self.max_new_tokens}]; got {minimum}"
            )
        put("min_new_tokens", minimum)
        put("method", require_choice("method", self.method, METHODS))
        put("temperature", require_positive("temperature", self.temperature))
        if self.top_k is not None:
            put("top_k", require_int("top_k", self.top_k, 1))
        top_p = 1.0 if self.top_p is None else float(self.top_p)
        if not (math.isfinite(top_p) and 0.0 < top_p <= 1.0):
            raise ConfigError(f"top_p must lie in (0, 1]; got {self.top_p!r}")
        put("top_p", top_p)
        put("num_beams", require_int("num_beams", self.num_beams, 1))
        put("repetition_penalty", require_positive("repetition_penalty", self.repetition_penalty))
        length_penalty = float(self.length_penalty)
        if not math.isfinite(length_penalty):
            raise ConfigError(f"length_penalty must be a finite number; got {self.length_penalty!r}")
        put("length_penalty", length_penalty)
        if self.early_stopping not in (False, True, "never"):
            raise ConfigError(f"early_stopping must be False, True or 'never'; got {self.early_stopping!r}")
        eos = _token_ids("eos_token_id", self.eos_token_id)
        put("eos_token_id", None if eos is None else (eos[0] if len(eos) == 1 else eos))
        put("_eos", eos or ())
        if self.pad_token_id is not None:
            put("pad_token_id", require_int("pad_token_id", self.pad_token_id, 0))
        elif eos is not None:
            put("pad_token_id", eos[0])  # transformers: pad defaults to the first EOS id
        if self.method != "sample":
            for name, value, default in (("temperature", self.temperature, 1.0), ("top_k", self.top_k, None),
                                         ("top_p", self.top_p, 1.0)):
                if value != default:
                    raise ConfigError(f"{name} only applies to method='sample'; got {name}={value!r} "
                                      f"with method={self.method!r}")

    @property
    def beam_search(self) -> bool:
        """True when decoding runs beam search (``method="beam"`` with more than one beam)."""
        return self.method == "beam" and self.num_beams > 1


def prompt_position_ids(mask: jax.Array) -> jax.Array:
    """Position ids of a left-padded prompt: ``cumsum(mask) * mask - 1`` (-1 on padding).

    Examples:
        >>> import jax.numpy as jnp
        >>> prompt_position_ids(jnp.array([[0, 0, 1, 1], [1, 1, 1, 1]])).tolist()
        [[-1, -1, 0, 1], [0, 1, 2, 3]]
    """
    mask = mask.astype(jnp.int32)
    return jnp.cumsum(mask, axis=1) * mask - 1


def generate(fns: DecoderFns, params, prompt_ids, prompt_mask=None, *, key=None,
             config: GenerationConfig | None = None, **settings) -> GenerationOutput:
    """Continue a left-padded batch of prompts by exactly ``max_new_tokens`` tokens.

    Args:
        fns: the decoder (:class:`DecoderFns`).
        params: its parameters (a pytree, traced: weights are not baked into the program).
        prompt_ids: ``(B, P)`` integer token ids, left-padded.
        prompt_mask: ``(B, P)`` 0/1, 1 on real tokens; None means no padding. Every row
            needs at least one real token and must end with one (left padding).
        key: a ``jax.random`` key, required for ``method="sample"``.
        config: a :class:`GenerationConfig`; alternatively its fields as keyword arguments
            (``max_new_tokens=..., method=..., ...``), not both.

    Returns:
        :class:`GenerationOutput` ``(tokens, lengths, scores)``.

    Example (bigram toy: token ``v`` is followed by ``2v mod 5``, token 0 by 4):
        >>> import jax.numpy as jnp
        >>> table = jnp.log(jnp.full((5, 5), 0.05).at[jnp.arange(5), jnp.array([4, 2, 4, 1, 3])].set(0.8))
        >>> fns = DecoderFns(apply=lambda table, ids, mask, positions, cache: (table[ids], cache),
        ...                  init_cache=lambda batch, length: None)
        >>> generate(fns, table, jnp.array([[1]]), max_new_tokens=3, method="beam", num_beams=2).tokens.tolist()
        [[2, 4, 3]]
    """
    if config is None:
        if "max_new_tokens" not in settings:
            raise ConfigError("generate needs max_new_tokens (or a GenerationConfig as config=)")
        config = GenerationConfig(**settings)
    elif settings:
        raise ConfigError(f"pass either config= or keyword settings, not both; got {sorted(settings)}")
    if not isinstance(fns, DecoderFns):
        raise ConfigError(f"fns must be a DecoderFns(apply, init_cache, ...); got {type(fns).__name__}")
    prompt_ids = jnp.asarray(prompt_ids)
    if prompt_ids.ndim != 2 or prompt_ids.shape[0] < 1 or prompt_ids.shape[1] < 1:
        raise ConfigError(f"prompt_ids must have shape (batch, prompt_length) with both >= 1; got {prompt_ids.shape}")
    if not jnp.issubdtype(prompt_ids.dtype, jnp.integer):
        raise ConfigError(f"prompt_ids must hold integer token ids; got dtype {prompt_ids.dtype}")
    prompt_mask = jnp.ones(prompt_ids.shape, jnp.int32) if prompt_mask is None else jnp.asarray(prompt_mask)
    if prompt_mask.shape != prompt_ids.shape:
        raise ConfigError(f"prompt_mask must have the shape of prompt_ids {prompt_ids.shape}; got {prompt_mask.shape}")
    _check_concrete_prompt(prompt_ids, prompt_mask)
    total = prompt_ids.shape[1] + config.max_new_tokens
    if fns.context_length is not None and total > fns.context_length:
        raise ConfigError(
            f"prompt length {prompt_ids.shape[1]} + max_new_tokens {config.max_new_tokens} = {total} exceeds the "
            f"model's context_length {fns.context_length}"
        )
    if config.method == "sample":
        if key is None:
            raise ConfigError("method='sample' needs a key (jax.random.key(seed))")
        if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
            key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))  # a raw jax.random.PRNGKey
        if key.shape != ():
            raise ConfigError(f"key must be a single jax.random key; got shape {key.shape}")
    else:
        key = None
    if config.method == "beam" and config.num_beams == 1:  # greedy search, as in transformers
        config = dataclasses.replace(config, method="greedy", num_beams=1)
    numbers = {
        "temperature": np.float32(config.temperature),
        "top_p_cut": np.float32(1.0 - config.top_p),  # in double, then float32, as torch compares
        "penalty": np.float32(config.repetition_penalty),
        "min_new_tokens": np.int32(config.min_new_tokens),
        **_length_penalty_tables(config),
    }
    return _generate(fns, _structure(config), numbers, params, prompt_ids.astype(jnp.int32),
                     prompt_mask.astype(jnp.int32), key)


def _length_penalty_tables(config: GenerationConfig) -> dict[str, np.ndarray]:
    """Beam search's divisors, computed on the host in double precision as torch does.

    ``divisors[t] = (t + 1) ** length_penalty`` scores a hypothesis finished after t + 1 new
    tokens; ``hypothetical[t]`` is the early-stop heuristic's divisor for the best running
    beam: the same, except with ``early_stopping="never"`` and a positive length penalty,
    where it is ``max_new_tokens ** length_penalty``.
    """
    steps, penalty = config.max_new_tokens, config.length_penalty
    divisors = np.arange(1, steps + 1, dtype=np.float64) ** penalty
    if config.early_stopping == "never" and penalty > 0.0:
        hypothetical = np.full(steps, float(steps) ** penalty)
    else:
        hypothetical = divisors
    return {"divisors": divisors.astype(np.float32), "hypothetical": hypothetical.astype(np.float32),
            "early_stopping": np.bool_(config.early_stopping is True)}


def _structure(config: GenerationConfig) -> GenerationConfig:
    """The static part of a config: the numbers one sweeps replaced by stand-ins.

    Static: the method, shapes, token ids, top_k, and whether top_p is active (``< 1``; its
    sort is the one costly filter, skipped as ``transformers`` skips it). Traced: the
    temperature, top_p's value, the repetition penalty, min_new_tokens (exact no-ops at 1, 1
    and 0), the length-penalty tables and the early-stopping flag, so configs that differ
    only in them share one compiled program (a temperature or penalty sweep compiles once).
    """
    return dataclasses.replace(
        config,
        min_new_tokens=0,
        length_penalty=1.0,
        early_stopping=False,
        temperature=1.0,
        repetition_penalty=1.0,
        top_p=1.0 if config.top_p == 1.0 else 0.5,
    )


def _check_concrete_prompt(ids, mask):
    if isinstance(ids, jax.core.Tracer) or isinstance(mask, jax.core.Tracer):
        return  # called under an outer jit: no host-side checks
    ids, mask = np.asarray(ids), np.asarray(mask)
    if np.any(ids < 0):
        raise ConfigError("prompt_ids must be >= 0")
    if not np.all((mask == 0) | (mask == 1)):
        raise ConfigError("prompt_mask must hold only 0 and 1")
    if np.any(np.diff(mask, axis=1) < 0) or np.any(mask[:, -1] == 0):
        raise ConfigError("prompt_mask must be left-padded: each row 0...0 1...1 ending with a real token")


@functools.partial(jax.jit, static_argnames=("fns", "config"))
def _generate(fns: DecoderFns, config: GenerationConfig, numbers, params, prompt_ids, prompt_mask, key):
    batch, prompt_length = prompt_ids.shape
    steps = config.max_new_tokens
    beams = config.num_beams if config.beam_search else 1
    rows = batch * beams

    cache = fns.init_cache(batch, prompt_length + steps)
    full_mask = jnp.concatenate([prompt_mask, jnp.zeros((batch, steps), jnp.int32)], axis=1)
    prefill = fns.apply if fns.prefill is None else fns.prefill
    logits, cache = prefill(params, prompt_ids, full_mask, prompt_position_ids(prompt_mask), cache)
    logits = logits[:, -1].astype(jnp.float32)
    vocab = logits.shape[-1]
    for name, ids in (("eos_token_id", config._eos), ("pad_token_id", (config.pad_token_id,))):
        if any(i is not None and i >= vocab for i in ids):
            raise ConfigError(f"{name} {ids} must be < the model's vocabulary size {vocab}")

    # tokens seen so far, for the repetition penalty: the prompt minus its leading padding; ids
    # beyond the output vocabulary (a larger embedding table) are dropped, as in transformers
    counts = jnp.zeros((batch, vocab), jnp.int32).at[jnp.arange(batch)[:, None], prompt_ids].add(
        prompt_mask, mode="drop")
    seen = counts > 0

    if beams > 1:
        parents = jnp.repeat(jnp.arange(batch), beams)
        cache, seen, logits = fns.reorder_cache(cache, parents), seen[parents], logits[parents]

    row_mask = prompt_mask[parents] if beams > 1 else prompt_mask
    n_real = row_mask.sum(axis=1)
    step_slots = jnp.arange(steps)

    def decode(token, t, cache):
        """Run the decoder on the t-th new token (rows,), returning the next logits."""
        written = (step_slots <= t).astype(jnp.int32)
        mask = jnp.concatenate([row_mask, jnp.broadcast_to(written, (rows, steps))], axis=1)
        position = (n_real + t)[:, None].astype(jnp.int32)
        logits, cache = fns.apply(params, token[:, None], mask, position, cache)
        return logits[:, -1].astype(jnp.float32), cache

    if beams > 1:
        tokens, scores = _beam_search(config, numbers, fns, logits, cache, seen, decode, batch, beams, steps, vocab)
    else:
        tokens, scores = _greedy_or_sample(config, numbers, logits, cache, seen, decode, key, batch, steps, vocab)
    return GenerationOutput(tokens, _lengths(tokens, config._eos, steps), scores)


def _lengths(tokens, eos, steps):
    if not eos:
        return jnp.full(tokens.shape[:1], steps, jnp.int32)
    is_eos = jnp.isin(tokens, jnp.asarray(eos))
    return jnp.where(is_eos.any(axis=1), jnp.argmax(is_eos, axis=1) + 1, steps).astype(jnp.int32)


def _process(config: GenerationConfig, numbers, scores, seen, t, eos_mask):
    """Hugging Face's processor order: repetition penalty, then the min_new_tokens EOS ban.

    Both always run, with traced values: a penalty of 1 (``x * 1``, ``x / 1``) and
    ``min_new_tokens = 0`` leave every score bit for bit unchanged, as the absent
    ``transformers`` processors do, for O(rows * vocab) work per step.
    """
    penalty = numbers["penalty"]
    penalized = jnp.where(scores < 0, scores * penalty, scores / penalty)
    scores = jnp.where(seen, penalized, scores)
    if config._eos:
        scores = jnp.where(eos_mask & (t < numbers["min_new_tokens"]), -jnp.inf, scores)
    return scores


def _warp(config: GenerationConfig, numbers, scores):
    """Sampling warpers in Hugging Face's order: temperature, top-k, top-p."""
    scores = scores / numbers["temperature"]  # exact no-op at temperature 1
    if config.top_k is not None:
        k = min(config.top_k, scores.shape[-1])
        kth = jax.lax.top_k(scores, k)[0][..., -1:]
        scores = jnp.where(scores < kth, -jnp.inf, scores)
    if config.top_p < 1.0:
        order = jnp.argsort(scores, axis=-1)  # ascending
        ascending = jnp.take_along_axis(scores, order, axis=-1)
        cumulative = jnp.cumsum(jax.nn.softmax(ascending, axis=-1), axis=-1)
        remove_sorted = (cumulative <= numbers["top_p_cut"]).at[..., -1:].set(False)  # min_tokens_to_keep = 1
        remove = jnp.zeros_like(remove_sorted).at[jnp.arange(scores.shape[0])[:, None], order].set(remove_sorted)
        scores = jnp.where(remove, -jnp.inf, scores)
    return scores


def _greedy_or_sample(config, numbers, logits, cache, seen, decode, key, batch, steps, vocab):
    eos_mask = jnp.zeros(vocab, bool) if not config._eos else jnp.isin(jnp.arange(vocab), jnp.asarray(config._eos))
    rows = jnp.arange(batch)
    sample = config.method == "sample"
    row_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, rows) if sample else None

    def select(logits, seen, alive, total, t):
        scores = _process(config, numbers, logits, seen, t, eos_mask)
        if sample:
            scores = _warp(config, numbers, scores)
            step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys, t)
            token = jax.vmap(jax.random.categorical)(step_keys, scores)
        else:
            token = jnp.argmax(scores, axis=-1)
        token = token.astype(jnp.int32)
        logp = jnp.take_along_axis(jax.nn.log_softmax(scores, axis=-1), token[:, None], axis=-1)[:, 0]
        total = total + jnp.where(alive, logp, 0.0)
        if config._eos:
            token = jnp.where(alive, token, jnp.int32(config.pad_token_id))
            alive = alive & ~eos_mask[token]
        seen = seen.at[rows, token].set(True)
        return token, seen, alive, total

    def body(carry, t):
        logits, cache, seen, alive, total = carry
        token, seen, alive, total = select(logits, seen, alive, total, t)
        logits, cache = decode(token, t, cache)
        return (logits, cache, seen, alive, total), token

    alive = jnp.ones(batch, bool)
    total = jnp.zeros(batch, jnp.float32)
    (logits, cache, seen, alive, total), tokens = jax.lax.scan(
        body, (logits, cache, seen, alive, total), jnp.arange(steps - 1))
    last, _, _, total = select(logits, seen, alive, total, steps - 1)
    tokens = jnp.concatenate([tokens.T, last[:, None]], axis=1)
    return tokens, total


def _beam_search(config, numbers, fns, logits, cache, seen, decode, batch, beams, steps, vocab):
    """transformers 5.23 ``_beam_search`` with static shapes (see the module docstring)."""
    eos = config._eos
    eos_mask = jnp.zeros(vocab, bool) if not eos else jnp.isin(jnp.arange(vocab), jnp.asarray(eos))
    keep = max(2, 1 + len(eos)) * beams  # candidates per batch item
    if keep > beams * vocab:
        raise ConfigError(f"beam search keeps {keep} candidates of num_beams * vocab = {beams * vocab}; "
                          f"use fewer beams (num_beams={beams})")
    fill = jnp.int32(config.pad_token_id if config.pad_token_id is not None else -1)
    divisors, hypothetical = numbers["divisors"], numbers["hypothetical"]
    top_mask = jnp.arange(keep) < beams
    batch_offset = (jnp.arange(batch) * beams)[:, None]
    flat_rows = jnp.arange(batch * beams)

    def gather(x, index):  # x (batch, n, ...), index (batch, m) -> (batch, m, ...)
        index = index.reshape(index.shape + (1,) * (x.ndim - 2))
        return jnp.take_along_axis(x, index, axis=1)

    def select(state, logits, t):
        run_tokens, run_scores, fin_tokens, fin_scores, fin_done, improvable, seen, cache = state
        log_probs = _process(config, numbers, jax.nn.log_softmax(logits, axis=-1), seen, t, eos_mask)
        accumulated = (log_probs.reshape(batch, beams, vocab) + run_scores[:, :, None]).reshape(batch, -1)
        top_scores, top_index = jax.lax.top_k(accumulated, keep)
        parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        top_tokens = gather(run_tokens, parent).at[:, :, t].set(token)
        hits = eos_mask[token] | (t + 1 >= steps)  # EOS or the max-length criterion

        # the best num_beams candidates that did not stop keep running
        running = top_scores + hits.astype(jnp.float32) * _NEG
        _, survivors = jax.lax.top_k(running, beams)
        run_tokens = gather(top_tokens, survivors)
        run_scores = gather(running, survivors)
        run_parent = gather(parent, survivors)
        run_token = gather(token, survivors)

        # finished candidates among the top num_beams enter the buffer of finished hypotheses
        just_done = hits & top_mask[None, :]
        scored = top_scores / divisors[t]
        full = jnp.all(fin_done, axis=-1, keepdims=True) & numbers["early_stopping"]
        scored = scored + full.astype(jnp.float32) * _NEG
        scored = scored + (~improvable).astype(jnp.float32)[:, None] * _NEG
        scored = scored + (~just_done).astype(jnp.float32) * _NEG
        merged_scores = jnp.concatenate([fin_scores, scored], axis=1)
        _, best = jax.lax.top_k(merged_scores, beams)
        fin_tokens = gather(jnp.concatenate([fin_tokens, top_tokens], axis=1), best)
        fin_scores = gather(merged_scores, best)
        fin_done = gather(jnp.concatenate([fin_done, just_done], axis=1), best)

        # early-stop heuristic: can the best running beam still beat the worst finished one?
        best_possible = run_scores[:, :1] / hypothetical[t]
        worst_finished = jnp.where(fin_done, jnp.min(fin_scores, axis=1, keepdims=True), _NEG)
        improvable = improvable & jnp.any(best_possible > worst_finished, axis=-1)

        # follow the surviving beams to their parents (cache, seen tokens)
        source = (run_parent + batch_offset).reshape(-1)
        next_token = run_token.reshape(-1)
        seen = seen[source].at[flat_rows, next_token].set(True)
        cache = fns.reorder_cache(cache, source)
        return (run_tokens, run_scores, fin_tokens, fin_scores, fin_done, improvable, seen, cache), next_token

    def body(carry, t):
        state, logits = carry
        state, token = select(state, logits, t)
        logits, cache = decode(token, t, state[-1])
        return (state[:-1] + (cache,), logits), None

    run_scores = jnp.zeros((batch, beams), jnp.float32).at[:, 1:].set(_NEG)
    state = (
        jnp.full((batch, beams, steps), fill),  # running new tokens
        run_scores,
        jnp.full((batch, beams, steps), fill),  # finished hypotheses
        jnp.full((batch, beams), _NEG, jnp.float32),
        jnp.zeros((batch, beams), bool),
        jnp.ones((batch,), bool),  # early-stop heuristic still unsatisfied
        seen,
        cache,
    )
    (state, logits), _ = jax.lax.scan(body, (state, logits), jnp.arange(steps - 1))
    state, _ = select(state, logits, steps - 1)
    fin_tokens, fin_scores = state[2], state[3]
    return fin_tokens[:, 0], fin_scores[:, 0]
