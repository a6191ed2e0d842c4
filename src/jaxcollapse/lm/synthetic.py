"""A synthetic language with a known distribution: an order-2 Markov source with Zipfian
transitions, whose exact log-likelihood, perplexity, entropy rate and lost tail mass are
computable, so that collapse of a language model can be measured against the truth.

**The source.** ``V`` symbols ``0 .. V-1``. Zipf weights over ranks ``k = 0 .. V-1`` are
``z_k = (k + 1) ** -s / H`` with ``H = sum_k (k + 1) ** -s``. The next symbol after the
context ``(a, b)`` (the two previous symbols) has probability

    p(c | a, b) = (1 - lam) * z[G(c)] + lam * z[R_b(S_a(c))]

* ``G`` is one global ranking (a uniformly random permutation of the symbols): the
  ``1 - lam`` part is shared by all contexts and makes the unigram law Zipf-like;
* ``R_b(S_a(.))`` is the context's own ranking, the composition of two uniformly random
  permutations ``S_a`` (one per first context symbol) and ``R_b`` (one per second). Each
  context's ranking is a uniform random permutation and those of two different contexts
  are independent; storing ``2 V`` permutations instead of ``V**2`` keeps the description
  at ``O(V**2)`` integers;
* ``lam = context_weight`` in [0, 1] mixes the two (0: independent Zipf symbols;
  1: every context has its own Zipf law). Every transition has positive probability, so
  the chain on contexts is irreducible and aperiodic (any context is reachable in two
  steps), and it has a unique stationary law ``pi(a, b)``.

The permutations come from ``numpy.random.default_rng(seed)`` and do not depend on ``s``
or ``lam`` (changing those keeps the same rankings). The tail is substantial: with
V = 128 and s = 1.1 the ranks beyond 16 carry about 30 % of each transition law.

**Exact quantities.** ``pi`` solves ``pi(b, c) = sum_a pi(a, b) p(c | a, b)`` (power
iteration on the V**2 contexts from the uniform law, to an L1 change below 1e-14); the
unigram law is its marginal ``u(b) = sum_a pi(a, b)``; the entropy rate is
``H = -sum_{a,b} pi(a, b) sum_c p(c | a, b) log p(c | a, b)`` nats per symbol, the limit
of ``-log p(x_1..x_n) / n`` (Cover and Thomas, Theorem 4.2.4) and the cross-entropy a
perfect model reaches; ``exp(H)`` is its perplexity. These use the full (V, V, V) table of
``p``, ``8 V**3`` bytes (17 MB at V = 128, 64 MB at V = 200, 134 MB at V = 256), so
``vocab_size`` is limited to :data:`MAX_VOCAB` = 256 (intended use: 100 to 200).

**Sampling** starts every sequence from the stationary law of contexts: ``(x_0, x_1)`` is
drawn from ``pi``, so every position of every sequence is stationary (no burn-in) and
sequences are independent.

**Token ids.** Symbols are ids ``0 .. V-1``; :attr:`SyntheticLanguage.bos_id` =
:attr:`SyntheticLanguage.eos_id` = ``V`` (one document-boundary token, as OPT's ``</s>``)
and :attr:`SyntheticLanguage.pad_id` = ``V + 1``; a model needs
:attr:`SyntheticLanguage.model_vocab_size` = ``V + 2`` ids. The source never emits the
special ids; their true probability is 0 (log-probability ``-inf``).

Examples:
    >>> language = SyntheticLanguage(vocab_size=32, zipf_exponent=1.1, context_weight=0.75, seed=0)
    >>> tokens = language.sample(0, n_sequences=200, length=64)
    >>> tokens.shape, tokens.dtype.name, language.model_vocab_size
    ((200, 64), 'int32', 34)
    >>> bool(abs(language.log_prob(tokens).sum() / (200 * 62) + language.entropy_rate) < 0.05)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from .._validation import ConfigError, require_finite, require_fraction, require_int
from .data import BlockSplits, numpy_rng

__all__ = ["SyntheticLanguage", "LostMass", "synthetic_corpus", "MAX_VOCAB"]

MAX_VOCAB = 256
_STATIONARY_TOL = 1e-14
_STATIONARY_MAX_ITER = 20_000


class LostMass(NamedTuple):
    """True stationary probability mass that a token set never shows (see
    :meth:`SyntheticLanguage.lost_mass`)."""

    unigram: float  # sum of u(c) over symbols c absent from the tokens
    trigram: float  # sum of q(a, b, c) over trigrams absent from the tokens
    tail: float  # sum of q over absent trigrams of the tail set T(tail_fraction)
    tail_mass: float  # sum of q over the whole tail set (<= tail_fraction)
    tail_fraction: float
    unigrams_seen: int  # distinct symbols present
    trigrams_seen: int  # distinct trigrams present

    @property
    def tail_lost_fraction(self) -> float:
        """Share of the tail's mass that is missing (``tail / tail_mass``; 0 for an empty tail)."""
        return self.tail / self.tail_mass if self.tail_mass > 0 else 0.0


@dataclass(frozen=True)
class SyntheticLanguage:
    """The order-2 Zipfian Markov source of the module docstring.

    Args:
        vocab_size: number of symbols V, 2 <= V <= :data:`MAX_VOCAB`.
        zipf_exponent: s >= 0 (0: uniform transitions; larger: lighter tail).
        context_weight: lam in [0, 1], the weight of the context-specific ranking.
        seed: integer >= 0 fixing the rankings.

    Examples:
        >>> language = SyntheticLanguage(vocab_size=8, seed=1)
        >>> table = language.transition_table()
        >>> table.shape, bool(np.allclose(table.sum(-1), 1.0))
        ((8, 8, 8), True)
    """

    vocab_size: int = 128
    zipf_exponent: float = 1.1
    context_weight: float = 0.75
    seed: int = 0

    def __post_init__(self):
        vocab = require_int("vocab_size", self.vocab_size, 2)
        if vocab > MAX_VOCAB:
            raise ConfigError(f"vocab_size must be <= {MAX_VOCAB} (exact quantities use the full V**3 "
                              f"transition table, {8 * MAX_VOCAB**3 / 1e6:.0f} MB at {MAX_VOCAB}); got {vocab}")
        exponent = float(require_finite("zipf_exponent", self.zipf_exponent))
        if exponent < 0:
            raise ConfigError(f"zipf_exponent must be >= 0; got {self.zipf_exponent!r}")
        weights = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
        if weights[-1] <= 0:
            raise ConfigError(f"zipf_exponent {exponent} is too large: rank {vocab} gets probability 0")
        object.__setattr__(self, "vocab_size", vocab)
        object.__setattr__(self, "zipf_exponent", exponent)
        object.__setattr__(self, "context_weight", require_fraction("context_weight", self.context_weight))
        object.__setattr__(self, "seed", require_int("seed", self.seed, 0))

    # ------------------------------------------------------------------ token ids

    @property
    def bos_id(self) -> int:
        """Start-of-sequence id (= :attr:`eos_id` = V); never emitted by the source."""
        return self.vocab_size

    @property
    def eos_id(self) -> int:
        return self.vocab_size

    @property
    def pad_id(self) -> int:
        """Padding id, V + 1."""
        return self.vocab_size + 1

    @property
    def model_vocab_size(self) -> int:
        """Ids a model must cover: V symbols, bos/eos, pad."""
        return self.vocab_size + 2

    # ------------------------------------------------------------------ construction

    @cached_property
    def _rankings(self):
        v = self.vocab_size
        rng = np.random.default_rng(self.seed)
        global_rank = rng.permutation(v)
        second = rng.permuted(np.tile(np.arange(v), (v, 1)), axis=1)  # R_b: position -> rank
        first = rng.permuted(np.tile(np.arange(v), (v, 1)), axis=1)  # S_a: symbol -> position
        return global_rank, second, first

    @cached_property
    def _inverse_rankings(self):
        global_rank, second, first = self._rankings
        rows = np.arange(self.vocab_size)[:, None]
        global_symbol = np.argsort(global_rank)  # rank -> symbol
        second_inv = np.empty_like(second)
        second_inv[rows, second] = np.arange(self.vocab_size)[None, :]  # R_b^-1: rank -> position
        first_inv = np.empty_like(first)
        first_inv[rows, first] = np.arange(self.vocab_size)[None, :]  # S_a^-1: position -> symbol
        return global_symbol, second_inv, first_inv

    @cached_property
    def zipf_weights(self) -> np.ndarray:
        """``z_k``, k = 0 .. V-1: the Zipf law over ranks (float64, sums to 1)."""
        weights = np.arange(1, self.vocab_size + 1, dtype=np.float64) ** -self.zipf_exponent
        return weights / weights.sum()

    @cached_property
    def _zipf_cdf(self) -> np.ndarray:
        cdf = np.cumsum(self.zipf_weights)
        cdf[-1] = 1.0
        return cdf

    def transition_prob(self, a, b, c) -> np.ndarray:
        """``p(c | a, b)`` elementwise over broadcast integer arrays of symbols (float64)."""
        a, b, c = (np.asarray(x, np.intp) for x in (a, b, c))
        global_rank, second, first = self._rankings
        z = self.zipf_weights
        lam = self.context_weight
        return (1.0 - lam) * z[global_rank[c]] + lam * z[second[b, first[a, c]]]

    def next_probs(self, a, b) -> np.ndarray:
        """The next-symbol law after context(s) ``(a, b)``: shape ``broadcast(a, b).shape + (V,)``."""
        a, b = np.broadcast_arrays(np.asarray(a, np.intp), np.asarray(b, np.intp))
        c = np.arange(self.vocab_size)
        return self.transition_prob(a[..., None], b[..., None], c)

    def transition_table(self) -> np.ndarray:
        """The full table ``T[a, b, c] = p(c | a, b)``, shape (V, V, V), float64 (8 V**3 bytes)."""
        global_rank, second, first = self._rankings
        z = self.zipf_weights
        lam = self.context_weight
        by_position = z[second]  # (b, position)
        context = np.take(by_position, first, axis=1).transpose(1, 0, 2)  # [a, b, c] = z[R_b[S_a[c]]]
        table = context * lam
        table += (1.0 - lam) * z[global_rank][None, None, :]
        return table

    # ------------------------------------------------------------------ stationary law

    @cached_property
    def _stationary(self):
        table = self.transition_table()
        v = self.vocab_size
        pi = np.full((v, v), 1.0 / v**2)
        for _ in range(_STATIONARY_MAX_ITER):
            new = np.einsum("ab,abc->bc", pi, table)
            new /= new.sum()
            change = np.abs(new - pi).sum()
            pi = new
            if change < _STATIONARY_TOL:
                break
        else:
            raise ConfigError(f"the context chain did not mix within {_STATIONARY_MAX_ITER} power iterations "
                              f"(L1 change {change:.2g}); lower zipf_exponent or context_weight")
        entropy = -np.einsum("ab,abc->", pi, table * np.log(table))
        return pi, float(entropy)

    @property
    def context_distribution(self) -> np.ndarray:
        """Stationary law ``pi[a, b]`` of the context (two consecutive symbols), (V, V)."""
        return self._stationary[0]

    @cached_property
    def unigram_distribution(self) -> np.ndarray:
        """Stationary symbol law ``u(b) = sum_a pi(a, b)``, (V,)."""
        return self._stationary[0].sum(axis=0)

    @property
    def entropy_rate(self) -> float:
        """Exact entropy rate in nats per symbol (see the module docstring)."""
        return self._stationary[1]

    @property
    def perplexity(self) -> float:
        """``exp(entropy_rate)``: the per-token perplexity of the true model on long samples."""
        return math.exp(self._stationary[1])

    @cached_property
    def _context_cdf(self) -> np.ndarray:
        cdf = np.cumsum(self._stationary[0].reshape(-1))
        cdf /= cdf[-1]
        return cdf

    # ------------------------------------------------------------------ sampling

    def sample(self, seed, n_sequences: int, length: int) -> np.ndarray:
        """``n_sequences`` independent stationary sequences of ``length`` symbols, int32.

        Args:
            seed: an integer >= 0, a ``numpy.random.Generator`` (consumed) or a JAX key.
            n_sequences: >= 1.
            length: >= 1. The first two symbols are a draw from :attr:`context_distribution`.

        Sequence i uses row i of one (n_sequences, 2 * length - 3) array of uniforms, so
        the first sequences do not change when more are asked for.

        Examples:
            >>> language = SyntheticLanguage(vocab_size=16)
            >>> bool((language.sample(3, 4, 10) == language.sample(3, 4, 10)).all())
            True
        """
        n = require_int("n_sequences", n_sequences, 1)
        length = require_int("length", length, 1)
        v = self.vocab_size
        steps = max(length, 2) - 2
        # row i holds sequence i's uniforms, so the first rows do not depend on n_sequences
        uniforms = numpy_rng(seed).random((n, 1 + 2 * steps))
        out = np.empty((n, steps + 2), np.int32)
        start = np.minimum(np.searchsorted(self._context_cdf, uniforms[:, 0], side="right"), v * v - 1)
        out[:, 0], out[:, 1] = np.divmod(start, v)
        if steps:
            ranks = np.minimum(np.searchsorted(self._zipf_cdf, uniforms[:, 1:1 + steps].T, side="right"), v - 1)
            use_context = uniforms[:, 1 + steps:].T < self.context_weight
            global_symbol, second_inv, first_inv = self._inverse_rankings
            for t in range(steps):
                a, b, r = out[:, t], out[:, t + 1], ranks[t]
                contextual = first_inv[a, second_inv[b, r]]
                out[:, t + 2] = np.where(use_context[t], contextual, global_symbol[r])
        return out[:, :length]

    # ------------------------------------------------------------------ likelihood

    def _check_tokens(self, tokens, minimum_length: int) -> np.ndarray:
        array = np.asarray(tokens)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise ConfigError(f"tokens must be an integer array (n_sequences, length); got {array.dtype} "
                              f"of shape {np.shape(tokens)}")
        if array.shape[1] < minimum_length:
            raise ConfigError(f"sequences need at least {minimum_length} tokens; got length {array.shape[1]}")
        if array.size and (array.min() < 0 or array.max() >= self.model_vocab_size):
            raise ConfigError(f"token ids must lie in [0, {self.model_vocab_size}) (symbols 0..{self.vocab_size - 1}, "
                              f"specials {self.vocab_size}, {self.vocab_size + 1}); got range "
                              f"[{array.min()}, {array.max()}]")
        return array.astype(np.intp)

    def token_log_probs(self, tokens) -> np.ndarray:
        """``log p(t_i | t_{i-2}, t_{i-1})`` for i = 2 .. L-1: shape (n, L - 2) for (n, L) tokens
        (a 1-D sequence counts as one row). A special id anywhere in the trigram gives ``-inf``
        (the source never emits them)."""
        array = self._check_tokens(tokens, 3)
        a, b, c = array[:, :-2], array[:, 1:-1], array[:, 2:]
        v = self.vocab_size
        special = (a >= v) | (b >= v) | (c >= v)
        probs = self.transition_prob(np.where(special, 0, a), np.where(special, 0, b), np.where(special, 0, c))
        with np.errstate(divide="ignore"):
            return np.where(special, -np.inf, np.log(probs))

    def log_prob(self, tokens, prompt_length: int = 2) -> np.ndarray:
        """Exact log-probability (nats) of each sequence's continuation given its prompt.

        ``sum_{i = prompt_length}^{L-1} log p(t_i | t_{i-2}, t_{i-1})`` per row of ``(n, L)``
        tokens: the first ``prompt_length`` tokens are context only (at least 2: the first
        two symbols have no order-2 context). For the LM pipeline, pass the prompt and its
        generated continuation concatenated, with ``prompt_length`` = the prompt's length.
        Returns shape (n,) (a scalar for a 1-D sequence).

        Examples:
            >>> language = SyntheticLanguage(vocab_size=4, seed=0)
            >>> t = np.array([0, 1, 2, 3])
            >>> bool(np.isclose(language.log_prob(t), np.log(language.transition_prob(0, 1, 2))
            ...                                           + np.log(language.transition_prob(1, 2, 3))))
            True
        """
        array = np.asarray(tokens)
        length = array.shape[-1] if array.ndim else 0
        start = self._check_span(prompt_length, length)
        total = self.token_log_probs(array)[:, start - 2:].sum(axis=1)
        return total[0] if array.ndim == 1 else total

    def true_perplexity(self, tokens, prompt_length: int = 2) -> np.ndarray:
        """Per-sequence true perplexity of the continuation: ``exp(-log_prob / n_scored)`` with
        ``n_scored = L - prompt_length`` (the quantity of the paper's Figures 11, 14, 15, here
        under the true model instead of the generation-0 model). Pool sequences as
        ``exp(-sum(log_prob) / sum(n_scored))``.

        Examples:
            >>> language = SyntheticLanguage(vocab_size=8)
            >>> language.true_perplexity(language.sample(0, 5, 128), prompt_length=64).shape
            (5,)
        """
        array = np.asarray(tokens)
        length = array.shape[-1] if array.ndim else 0
        start = self._check_span(prompt_length, length)
        return np.exp(-self.log_prob(array, start) / (length - start))

    @staticmethod
    def _check_span(prompt_length, length) -> int:
        start = require_int("prompt_length", prompt_length, 2)
        if start >= length:
            raise ConfigError(f"prompt_length ({start}) must be smaller than the sequence length ({length}): "
                              "nothing is left to score")
        return start

    # ------------------------------------------------------------------ lost mass

    def trigram_distribution(self) -> np.ndarray:
        """Stationary trigram law ``q[a, b, c] = pi(a, b) p(c | a, b)``, (V, V, V), sums to 1."""
        return self.transition_table() * self.context_distribution[:, :, None]

    def tail_threshold(self, tail_fraction: float = 0.1) -> float:
        """The threshold ``tau`` defining the tail set ``T = {(a, b, c): q(a, b, c) <= tau}``.

        ``tau`` is the largest trigram probability ``q`` such that the trigrams with
        ``q <= tau`` carry at most ``tail_fraction`` of the mass: T is the rarest
        ``tail_fraction`` of the stationary trigram mass, without tie-breaking (trigrams of
        equal probability are all in or all out). ``-inf`` (empty tail) when even the rarest
        trigram weighs more than ``tail_fraction``. Cached per fraction.

        Computed without sorting all V**3 values: the bit patterns of positive float64
        numbers are ordered as the numbers, so their top bits make 2**16 value-ordered bins;
        the bins entirely below the crossing bin are in T, and only the crossing bin is
        sorted (equal values share a bin, so ties are never split).

        Examples:
            >>> language = SyntheticLanguage(vocab_size=6)
            >>> q = language.trigram_distribution()
            >>> tau = language.tail_threshold(0.2)
            >>> bool(q[q <= tau].sum() <= 0.2 < q[q <= tau].sum() + q[q > tau].min())
            True
        """
        fraction = require_fraction("tail_fraction", tail_fraction)
        cache = self.__dict__.setdefault("_tail_thresholds", {})
        if fraction not in cache:
            cache[fraction] = _mass_threshold(self.trigram_distribution().reshape(-1), fraction)
        return cache[fraction]

    def lost_mass(self, tokens, tail_fraction: float = 0.1) -> LostMass:
        """Stationary probability mass of what never occurs in a token set.

        Definitions (``u`` the stationary unigram law, ``q(a, b, c) = pi(a, b) p(c | a, b)``
        the stationary probability that three consecutive symbols are ``a, b, c``):

        * ``unigram = sum of u(c)`` over symbols c that occur nowhere in ``tokens``;
        * ``trigram = sum of q(a, b, c)`` over trigrams that never occur as three consecutive
          tokens of one sequence (trigrams are not formed across sequences, nor through
          special ids);
        * ``tail`` = the same sum restricted to the tail set ``T`` of
          :meth:`tail_threshold` (the rarest ``tail_fraction`` of trigram mass), and
          ``tail_mass = sum of q over T``; ``tail / tail_mass`` is the share of the tail lost.

        All are 0 for a token set containing every symbol and trigram; the missing mass is
        summed directly (not as 1 minus the seen mass), so a complete set gives exactly 0.

        Args:
            tokens: an integer array (n, L) or (L,), or a list of 1-D sequences of any lengths.
            tail_fraction: in [0, 1].

        Examples:
            >>> language = SyntheticLanguage(vocab_size=3, zipf_exponent=1.0)
            >>> lost = language.lost_mass(np.array([[0, 1, 0, 1, 0]]))
            >>> bool(np.isclose(lost.unigram, language.unigram_distribution[2])), lost.trigrams_seen
            (True, 2)
        """
        fraction = require_fraction("tail_fraction", tail_fraction)
        v = self.vocab_size
        if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
            rows = [self._check_tokens(tokens, 0)] if tokens.size else []
        else:
            rows = [self._check_tokens(np.asarray(row), 0) for row in (
                [tokens] if isinstance(tokens, np.ndarray) and tokens.ndim == 1 else tokens) if len(row)]
        seen_symbols = np.zeros(v, bool)
        seen_trigrams = np.zeros(v**3, bool)
        for row in rows:
            symbols = row[row < v]
            seen_symbols[symbols] = True
            if row.shape[1] >= 3:
                a, b, c = row[:, :-2], row[:, 1:-1], row[:, 2:]
                ok = (a < v) & (b < v) & (c < v)
                seen_trigrams[((a * v + b) * v + c)[ok]] = True
        unigram = float(self.unigram_distribution[~seen_symbols].sum())
        q = self.trigram_distribution().reshape(-1)
        missing = ~seen_trigrams
        tau = self.tail_threshold(fraction)
        in_tail = q <= tau
        return LostMass(
            unigram=unigram,
            trigram=float(q[missing].sum()),
            tail=float(q[missing & in_tail].sum()),
            tail_mass=float(q[in_tail].sum()),
            tail_fraction=fraction,
            unigrams_seen=int(seen_symbols.sum()),
            trigrams_seen=int(seen_trigrams.sum()),
        )


def _mass_threshold(values: np.ndarray, fraction: float, bin_bits: int = 16) -> float:
    """The largest ``v`` in ``values`` (all > 0) with ``sum(values[values <= v]) <= fraction``;
    ``-inf`` when there is none (see :meth:`SyntheticLanguage.tail_threshold`)."""
    bits = values.view(np.int64)
    low = int(bits.min())
    shift = max(0, (int(bits.max()) - low).bit_length() - bin_bits)
    bins = (bits - low) >> shift
    n_bins = int(bins.max()) + 1
    cumulative = np.cumsum(np.bincount(bins, weights=values, minlength=n_bins))
    crossing = int(np.searchsorted(cumulative, fraction, side="right"))  # first bin with cumulative > fraction
    if crossing == n_bins or fraction >= 1.0:
        return float(values.max())
    below = float(cumulative[crossing - 1]) if crossing else 0.0
    candidates = np.sort(values[bins == crossing])
    running = below + np.cumsum(candidates)
    last_of_tie = np.flatnonzero(np.append(candidates[1:] != candidates[:-1], True))
    admissible = last_of_tie[running[last_of_tie] <= fraction]
    if admissible.size:
        return float(candidates[admissible[-1]])
    nonempty = np.flatnonzero(np.bincount(bins, minlength=n_bins)[:crossing])
    if not nonempty.size:
        return -math.inf
    return float(values[bins == nonempty[-1]].max())


def synthetic_corpus(language: SyntheticLanguage, n_train_blocks: int, n_valid_blocks: int,
                     n_test_blocks: int, block_size: int, seed=0) -> BlockSplits:
    """Train/validation/test token blocks drawn from ``language`` (no tokenizer: id = symbol).

    Every block is an independent stationary sequence of ``block_size`` symbols
    (:meth:`SyntheticLanguage.sample`). Split i uses the stream derived from ``(seed, i)``
    (i = 0, 1, 2 for train, valid, test), so one split does not change when another's
    size does. ``seed``: an integer >= 0 or a JAX key.

    Examples:
        >>> language = SyntheticLanguage(vocab_size=16)
        >>> splits = synthetic_corpus(language, 100, 10, 10, block_size=64, seed=0)
        >>> splits.train.shape, splits.test.dtype.name
        ((100, 64), 'int32')
        >>> bool((synthetic_corpus(language, 100, 5, 5, 64, 0).train == splits.train).all())
        True
    """
    if not isinstance(language, SyntheticLanguage):
        raise ConfigError(f"language must be a SyntheticLanguage; got {type(language).__name__}")
    if isinstance(seed, np.random.Generator):
        raise ConfigError("synthetic_corpus needs an integer seed or a JAX key (each split derives its own stream)")
    block_size = require_int("block_size", block_size, 2)
    counts = [require_int(name, value, 1) for name, value in (
        ("n_train_blocks", n_train_blocks), ("n_valid_blocks", n_valid_blocks), ("n_test_blocks", n_test_blocks))]
    return BlockSplits(*(language.sample(numpy_rng(seed, i), n, block_size) for i, n in enumerate(counts)))
