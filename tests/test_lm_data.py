"""The LM data side: the synthetic order-2 Zipfian language (exact quantities against
simulation, z-tests at 5 standard errors) and corpora, tokenizers, blocks, real-fraction mixing."""

import json
import time

import numpy as np
import pytest
from conftest import assert_z

from jaxcollapse import ConfigError
from jaxcollapse.lm.data import (
    BlockSplits,
    TextCorpus,
    load_checkpoint_tokenizer,
    load_corpus,
    make_blocks,
    numpy_rng,
    sample_real_fraction,
    tokenize_corpus,
    train_bpe_tokenizer,
)
from jaxcollapse.lm.synthetic import SyntheticLanguage, synthetic_corpus

# ----------------------------------------------------------------------------- synthetic language


@pytest.fixture(scope="module")
def small_language():
    return SyntheticLanguage(vocab_size=5, zipf_exponent=1.0, context_weight=0.75, seed=4)


@pytest.mark.parametrize("weight", [0.0, 0.6, 1.0])
def test_transition_rows_are_laws_and_match_the_formula(weight):
    language = SyntheticLanguage(vocab_size=7, zipf_exponent=1.3, context_weight=weight, seed=2)
    table = language.transition_table()
    assert table.shape == (7, 7, 7) and np.all(table > 0)
    np.testing.assert_allclose(table.sum(-1), 1.0, rtol=0, atol=1e-13)
    a, b, c = np.meshgrid(np.arange(7), np.arange(7), np.arange(7), indexing="ij")
    np.testing.assert_array_equal(language.transition_prob(a, b, c), table)
    np.testing.assert_array_equal(language.next_probs(a[..., 0], b[..., 0]), table)
    # each context's law is a mixture of Zipf laws over rankings: sorted, it is the Zipf law when weight = 1
    if weight == 1.0:
        zipf = np.broadcast_to(language.zipf_weights, table.shape)
        np.testing.assert_allclose(np.sort(table, axis=-1)[..., ::-1], zipf)


def test_stationary_distribution_is_stationary(small_language):
    pi = small_language.context_distribution
    table = small_language.transition_table()
    assert np.all(pi > 0) and abs(pi.sum() - 1) < 1e-13
    np.testing.assert_allclose(np.einsum("ab,abc->bc", pi, table), pi, rtol=0, atol=1e-14)
    np.testing.assert_allclose(pi.sum(0), pi.sum(1), atol=1e-14)  # both marginals are the unigram law
    np.testing.assert_allclose(small_language.unigram_distribution, pi.sum(0), atol=1e-15)
    q = small_language.trigram_distribution()
    np.testing.assert_allclose(q.sum(), 1.0, atol=1e-13)
    entropy = -np.sum(q * np.log(table))
    assert small_language.entropy_rate == pytest.approx(entropy, rel=1e-12)
    assert small_language.perplexity == pytest.approx(np.exp(entropy), rel=1e-12)


def test_sampled_transitions_and_contexts_match_exact_laws(small_language):
    v = small_language.vocab_size
    tokens = small_language.sample(20260521, 2000, 200)
    assert tokens.dtype == np.int32 and tokens.min() >= 0 and tokens.max() < v
    # given the number of visits to a context, its successors are i.i.d. draws from p(. | a, b)
    a, b, c = tokens[:, :-2].ravel(), tokens[:, 1:-1].ravel(), tokens[:, 2:].ravel()
    counts = np.bincount((a * v + b) * v + c, minlength=v**3).reshape(v * v, v).astype(float)
    visits = counts.sum(1, keepdims=True)
    keep = visits[:, 0] >= 100
    p = small_language.transition_table().reshape(v * v, v)[keep]
    assert_z(counts[keep] / visits[keep], np.sqrt(p * (1 - p) / visits[keep]), p, "p(c | a, b)")
    # the first pair and a late pair are independent draws from the stationary context law
    pi = small_language.context_distribution.ravel()
    for first in (0, 150):
        pairs = np.bincount(tokens[:, first] * v + tokens[:, first + 1], minlength=v * v) / 2000
        assert_z(pairs, np.sqrt(pi * (1 - pi) / 2000), pi, f"contexts at position {first}")


def test_log_prob_matches_a_naive_loop(small_language):
    tokens = small_language.sample(1, 6, 40)
    table = small_language.transition_table()
    for prompt in (2, 17, 39):
        naive = [sum(np.log(table[row[i - 2], row[i - 1], row[i]]) for i in range(prompt, 40)) for row in tokens]
        np.testing.assert_allclose(small_language.log_prob(tokens, prompt), naive, rtol=1e-12)
        np.testing.assert_allclose(small_language.true_perplexity(tokens, prompt),
                                   np.exp(-np.asarray(naive) / (40 - prompt)), rtol=1e-12)
    assert np.ndim(small_language.log_prob(tokens[0])) == 0
    with_special = tokens.copy()
    with_special[0, 30] = small_language.eos_id
    assert small_language.log_prob(with_special, 2)[0] == -np.inf
    np.testing.assert_allclose(small_language.log_prob(with_special, 33)[0], small_language.log_prob(tokens, 33)[0])
    for bad, prompt in ((tokens, 1), (tokens, 40)):
        with pytest.raises(ConfigError, match="prompt_length"):
            small_language.log_prob(bad, prompt)
    with pytest.raises(ConfigError, match="token ids"):
        small_language.log_prob(tokens + 10)


def test_empirical_cross_entropy_matches_the_entropy_rate():
    language = SyntheticLanguage(vocab_size=48, zipf_exponent=1.1, context_weight=0.75, seed=0)
    tokens = language.sample(7, 2000, 256)
    per_sequence = -language.log_prob(tokens) / 254  # i.i.d. across sequences, mean H at stationarity
    assert_z(per_sequence.mean(), per_sequence.std(ddof=1) / np.sqrt(2000), language.entropy_rate, "entropy rate")


def test_lost_mass_is_zero_for_a_sample_covering_everything():
    language = SyntheticLanguage(vocab_size=3, zipf_exponent=0.5, context_weight=0.5, seed=1)
    lost = language.lost_mass(language.sample(0, 400, 400), tail_fraction=0.3)
    assert lost.trigrams_seen == 27 and lost.unigrams_seen == 3
    assert lost.unigram == 0.0 and lost.trigram == 0.0 and lost.tail == 0.0
    assert 0 < lost.tail_mass <= 0.3 and lost.tail_lost_fraction == 0.0


def test_lost_mass_on_a_constructed_example():
    language = SyntheticLanguage(vocab_size=4, zipf_exponent=1.0, context_weight=0.8, seed=5)
    u, pi = language.unigram_distribution, language.context_distribution
    p = language.transition_prob
    # symbol 3 never occurs; trigrams (0,1,0), (1,0,1), (0,1,2); the pad id breaks (1, 2, pad, 2, 2, 2)
    tokens = [np.array([0, 1, 0, 1]), np.array([0, 1, 2, language.pad_id, 2, 2])]
    seen = {(0, 1, 0), (1, 0, 1), (0, 1, 2)}
    lost = language.lost_mass(tokens, tail_fraction=0.25)
    assert lost.unigrams_seen == 3 and lost.trigrams_seen == 3
    assert lost.unigram == pytest.approx(u[3], rel=1e-12)
    seen_mass = sum(pi[a, b] * p(a, b, c) for a, b, c in seen)
    assert lost.trigram == pytest.approx(1 - seen_mass, rel=1e-12)
    # the tail by its definition: sort all 64 trigram probabilities, keep the smallest while the mass is <= 0.25
    q = {(a, b, c): pi[a, b] * p(a, b, c) for a in range(4) for b in range(4) for c in range(4)}
    tail, mass = set(), 0.0
    for trigram, value in sorted(q.items(), key=lambda item: item[1]):
        if mass + value > 0.25:
            break
        tail.add(trigram)
        mass += value
    assert lost.tail_mass == pytest.approx(mass, rel=1e-12)
    assert lost.tail == pytest.approx(sum(q[t] for t in tail - seen), rel=1e-12)
    assert language.tail_threshold(0.25) == pytest.approx(max(q[t] for t in tail), rel=0)
    assert language.tail_threshold(0.0) == -np.inf
    # a 2-D array gives the same as its rows as a list
    block = language.sample(3, 5, 30)
    assert language.lost_mass(block) == language.lost_mass(list(block))


def test_tail_threshold_keeps_ties_together():
    language = SyntheticLanguage(vocab_size=6, zipf_exponent=1.0, context_weight=0.0, seed=0)  # many equal q
    q = language.trigram_distribution().ravel()
    for fraction in (0.01, 0.1, 0.3, 0.7):
        tau = language.tail_threshold(fraction)
        assert q[q <= tau].sum() <= fraction
        assert q[q <= tau].sum() + q[q > tau].min() * np.sum(q == q[q > tau].min()) > fraction


def test_language_and_samples_are_determined_by_the_seed():
    import jax

    one, two = SyntheticLanguage(32, 1.1, 0.75, seed=3), SyntheticLanguage(32, 1.1, 0.75, seed=3)
    np.testing.assert_array_equal(one.transition_table(), two.transition_table())
    assert not np.array_equal(one.transition_table(), SyntheticLanguage(32, 1.1, 0.75, seed=4).transition_table())
    np.testing.assert_array_equal(one.sample(9, 50, 64), two.sample(9, 50, 64))
    assert not np.array_equal(one.sample(9, 50, 64), one.sample(10, 50, 64))
    key = jax.random.key(0)
    np.testing.assert_array_equal(one.sample(key, 8, 16), one.sample(jax.random.key(0), 8, 16))
    np.testing.assert_array_equal(one.sample(key, 8, 16), one.sample(jax.random.PRNGKey(0), 8, 16))
    assert one.sample(0, 3, 1).shape == (3, 1)
    for kwargs in ({"vocab_size": 1}, {"vocab_size": 257}, {"zipf_exponent": -1.0}, {"context_weight": 1.5}):
        with pytest.raises(ConfigError):
            SyntheticLanguage(**kwargs)


def test_synthetic_corpus_blocks():
    language = SyntheticLanguage(vocab_size=40)
    assert (language.bos_id, language.eos_id, language.pad_id, language.model_vocab_size) == (40, 40, 41, 42)
    splits = synthetic_corpus(language, 300, 20, 30, block_size=64, seed=1)
    assert isinstance(splits, BlockSplits)
    assert [part.shape for part in splits] == [(300, 64), (20, 64), (30, 64)]
    assert all(part.dtype == np.int32 and part.max() < 40 for part in splits)
    again = synthetic_corpus(language, 300, 5, 60, block_size=64, seed=1)
    np.testing.assert_array_equal(again.train, splits.train)  # a split does not depend on the others' sizes
    np.testing.assert_array_equal(again.test[:30], splits.test)
    assert not np.array_equal(splits.train[:20], splits.valid)
    with pytest.raises(ConfigError, match="n_valid_blocks"):
        synthetic_corpus(language, 10, 0, 10, 64)


def test_sampling_is_fast():
    language = SyntheticLanguage(vocab_size=200)
    assert language.entropy_rate > 0  # the exact stationary law is computed once, before timing
    start = time.perf_counter()
    tokens = language.sample(0, 2000, 128)
    assert time.perf_counter() - start < 1.0 and tokens.shape == (2000, 128)


# ----------------------------------------------------------------------------- tokenizers


def _random_text(rng, n_rows):
    words = ["the", "model", "collapse", "tail", "of", "a", "distribution", "Zipf", "naïve", "日本", "ß", "x=3.5;",
             "(and)", "don't", "--"]
    rows = []
    for _ in range(n_rows):
        parts = rng.choice(words, size=rng.integers(0, 15))
        gaps = rng.choice([" ", "  ", "\t", " \n "], size=len(parts))
        rows.append("".join(g + w for g, w in zip(gaps, parts)).lstrip(" ") + "\n")
    return rows


def test_bpe_tokenizer_round_trip(rng, tmp_path):
    texts = _random_text(rng, 3000)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=400)
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 1)
    assert 258 <= tokenizer.vocab_size <= 400
    ids = tokenizer.encode(texts)
    assert all(row.dtype == np.int32 and row[0] == tokenizer.bos_id for row in ids)
    assert all(tokenizer.decode(row) == text for row, text in zip(ids, texts))
    unseen = "Ünïcode never seen: 🙂 \r\n\ttabs  "
    assert tokenizer.decode(tokenizer.encode(unseen)) == unseen
    assert tokenizer.encode(unseen, add_special_tokens=False).tolist() == tokenizer.encode(unseen).tolist()[1:]
    assert tokenizer.decode_batch(ids[:3]) == texts[:3]
    no_bos = train_bpe_tokenizer(texts, vocab_size=400, prepend_bos=False)
    assert no_bos.encode("the model").tolist() == tokenizer.encode("the model").tolist()[1:]
    # saved and loaded back from tokenizer.json, and from vocab.json + merges.txt
    loaded = load_checkpoint_tokenizer(tokenizer.save(tmp_path / "saved"))
    assert (loaded.pad_id, loaded.bos_id, loaded.eos_id, loaded.vocab_size) == (0, 1, 1, tokenizer.vocab_size)
    assert [r.tolist() for r in loaded.encode(texts[:50])] == [r.tolist() for r in ids[:50]]
    (tmp_path / "bpe").mkdir()
    tokenizer.backend.model.save(str(tmp_path / "bpe"))
    plain = load_checkpoint_tokenizer(tmp_path / "bpe")
    assert (plain.pad_id, plain.bos_id) == (0, 1)
    assert [r.tolist() for r in plain.encode(texts[:50])] == [r.tolist()[1:] for r in ids[:50]]
    assert plain.decode(plain.encode(unseen)) == unseen
    with pytest.raises(ConfigError, match="non-blank"):
        train_bpe_tokenizer(["", "  \n"], vocab_size=300)
    with pytest.raises(ConfigError, match="vocab_size"):
        train_bpe_tokenizer(texts, vocab_size=100)


def test_checkpoint_tokenizer_through_transformers(rng, tmp_path):
    """An OPT-like folder (vocab.json, merges.txt, tokenizer_config.json): transformers' GPT-2
    tokenizer, bos prepended, gives the same ids as the trained tokenizer."""
    texts = _random_text(rng, 500)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=350)
    folder = tmp_path / "opt-like"
    folder.mkdir()
    tokenizer.backend.model.save(str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "bos_token": "</s>", "eos_token": "</s>",
        "pad_token": "<pad>", "unk_token": "</s>"}))
    checkpoint = load_checkpoint_tokenizer(folder)
    assert (checkpoint.pad_id, checkpoint.bos_id, checkpoint.eos_id) == (0, 1, 1)
    assert [r.tolist() for r in checkpoint.encode(texts[:100])] == [r.tolist() for r in tokenizer.encode(texts[:100])]
    assert checkpoint.decode(checkpoint.encode(texts[0])) == texts[0]
    with pytest.raises(ConfigError, match="no tokenizer_config.json"):
        load_checkpoint_tokenizer(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint_tokenizer(tmp_path / "missing")


# ----------------------------------------------------------------------------- blocks and mixing


def test_make_blocks_group_texts_rule():
    blocks = make_blocks([np.array([1, 2, 3]), [4], [], np.array([5, 6, 7, 8, 9])], block_size=4)
    np.testing.assert_array_equal(blocks, [[1, 2, 3, 4], [5, 6, 7, 8]])  # 9 dropped
    assert blocks.dtype == np.int32
    np.testing.assert_array_equal(make_blocks(np.arange(7), 7), [np.arange(7)])
    np.testing.assert_array_equal(make_blocks(np.arange(5), 1), np.arange(5)[:, None])
    with pytest.raises(ConfigError, match="block_size"):
        make_blocks([[1, 2]], 0)
    with pytest.raises(ConfigError, match="fewer than one block"):
        make_blocks([[1, 2], [3]], 4)
    with pytest.raises(ConfigError, match="fewer than one block"):
        make_blocks([], 4)


def test_tokenize_corpus_and_short_split(rng):
    rows = _random_text(rng, 600)
    tokenizer = train_bpe_tokenizer(rows, vocab_size=300)
    splits = tokenize_corpus(TextCorpus(rows[:500], rows[500:550], rows[550:], "toy"), tokenizer, 64)
    flat = np.concatenate(tokenizer.encode(rows[:500]))
    np.testing.assert_array_equal(splits.train.ravel(), flat[: splits.train.size])
    with pytest.raises(ConfigError, match="toy valid split"):
        tokenize_corpus(TextCorpus(rows[:500], ["a\n"], rows[550:], "toy"), tokenizer, 64)


@pytest.mark.parametrize("n, fraction, expected", [(100, 0.1, 10), (10, 0.05, 1), (10, 0.25, 3), (7, 0.0, 0),
                                                   (7, 1.0, 7), (2334, 0.1, 233), (1, 0.5, 1)])
def test_real_fraction_exact_counts(n, fraction, expected):
    real = np.arange(n * 3, dtype=np.int32).reshape(n, 3)
    synthetic = -np.ones((n, 3), np.int32)
    mix = sample_real_fraction(0, real, synthetic, fraction)
    assert mix.blocks.shape == (n, 3) and mix.real_indices.size == expected == mix.is_real.sum()
    assert np.all(np.diff(mix.real_indices) > 0)
    np.testing.assert_array_equal(mix.blocks[mix.is_real], real[mix.real_indices])
    np.testing.assert_array_equal(np.flatnonzero(mix.is_real), mix.real_indices)
    assert np.all(mix.blocks[~mix.is_real] == -1)
    added = sample_real_fraction(0, real, synthetic[: max(1, n // 2)], fraction, mode="add")
    assert added.blocks.shape == (max(1, n // 2) + expected, 3) and added.is_real.sum() == expected
    np.testing.assert_array_equal(added.blocks[added.is_real], real[added.real_indices])


def test_real_fraction_is_uniform_and_seeded():
    real, synthetic = np.zeros((20, 2), np.int32), np.ones((20, 2), np.int32)
    draws = np.stack([sample_real_fraction(seed, real, synthetic, 0.15).is_real for seed in range(2000)])
    assert np.all(draws.sum(1) == 3)
    assert_z(draws.mean(0), np.sqrt(0.15 * 0.85 / 2000), 0.15, "inclusion probability")
    one, two = (sample_real_fraction(numpy_rng(5, 2), real, synthetic, 0.5) for _ in range(2))
    np.testing.assert_array_equal(one.real_indices, two.real_indices)
    with pytest.raises(ConfigError, match="same number of blocks"):
        sample_real_fraction(0, real, synthetic[:10], 0.1)
    with pytest.raises(ConfigError, match="block size"):
        sample_real_fraction(0, real, np.ones((20, 3), np.int32), 0.1)
    with pytest.raises(ConfigError, match="fraction"):
        sample_real_fraction(0, real, synthetic, 1.5)


# ----------------------------------------------------------------------------- corpora


def test_load_corpus_from_a_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i}\n" for i in range(200)), encoding="utf-8")
    corpus = load_corpus(path)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (180, 10, 10)
    assert corpus.train[0] == "line 0\n" and corpus.valid[0] == "line 180\n" and corpus.test[-1] == "line 199\n"
    assert load_corpus(str(path)) == corpus
    path.write_text("one\ntwo\nthree")
    assert load_corpus(path)[:3] == (["one\n"], ["two\n"], ["three"])
    path.write_text("one\ntwo\n")
    with pytest.raises(ConfigError, match="at least 3"):
        load_corpus(path)
    path.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_corpus(path)
    path.write_text("\n \n\t\n\n")
    with pytest.raises(ConfigError, match="empty"):
        load_corpus(path)
    path.write_text("text\ntext\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n")  # the held-out lines are blank
    with pytest.raises(ConfigError, match="valid split is empty"):
        load_corpus(path)
    with pytest.raises(ConfigError, match="neither"):
        load_corpus(tmp_path / "nothing-here")


def test_load_corpus_from_a_folder(tmp_path):
    split_folder = tmp_path / "splits"
    split_folder.mkdir()
    for name, text in (("train.txt", "a\nb\n"), ("validation.txt", "c\n"), ("test.txt", "d\n")):
        (split_folder / name).write_text(text)
    assert load_corpus(split_folder)[:3] == (["a\n", "b\n"], ["c\n"], ["d\n"])
    raw = tmp_path / "wikitext-2-raw"
    raw.mkdir()
    for split in ("train", "valid", "test"):
        (raw / f"wiki.{split}.raw").write_text(f" = {split} = \n")
    assert load_corpus(raw).valid == [" = valid = \n"]
    (split_folder / "test.txt").unlink()
    with pytest.raises(ConfigError, match="no test file"):
        load_corpus(split_folder)
    (split_folder / "test.txt").write_text("  \n")
    with pytest.raises(ConfigError, match="test split is empty"):
        load_corpus(split_folder)
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "b.txt").write_text("".join(f"b{i}\n" for i in range(10)))
    (loose / "a.txt").write_text("".join(f"a{i}\n" for i in range(10)))  # no final newline is fine too
    (loose / "notes.md").write_text("ignored\n")
    corpus = load_corpus(loose)
    assert corpus.train[0] == "a0\n" and corpus.test == ["b9\n"] and len(corpus.train) == 18
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no train.txt"):
        load_corpus(empty)


def test_wikitext_offline_without_cache_fails_fast(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    assert datasets.config.HF_HUB_OFFLINE, "datasets was imported before the offline flags were set"
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_corpus("wikitext2")
    assert time.perf_counter() - start < 5.0
    message = str(error.value)
    assert "offline" in message and str(tmp_path / "hf" / "datasets") in message
    assert "load_dataset('Salesforce/wikitext', 'wikitext-2-raw-v1')" in message and "wiki.train.raw" in message


def test_numpy_rng_sources():
    import jax

    assert numpy_rng(3).random() == numpy_rng(3).random()
    assert numpy_rng(3, 1).random() != numpy_rng(3, 2).random()
    assert numpy_rng(jax.random.key(1), 4).random() == numpy_rng(jax.random.PRNGKey(1), 4).random()
    generator = np.random.default_rng(0)
    assert numpy_rng(generator) is generator
    for bad in (-1, 1.5, "seed", True, np.zeros(3)):
        with pytest.raises(ConfigError):
            numpy_rng(bad)
