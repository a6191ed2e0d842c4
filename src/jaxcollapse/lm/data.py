"""Text corpora, tokenizers and fixed-size token blocks for the language-model experiment.

* :func:`load_corpus`: ``"wikitext2"`` (wikitext-2-raw-v1 through Hugging Face
  ``datasets``, when cached locally or reachable; offline without a cache, a clear error
  says what to download and where, without a network call), a local text file, or a folder
  of text files. A corpus is three lists of lines (rows, as ``datasets`` gives wikitext).
* :func:`train_bpe_tokenizer` (a byte-level BPE trained on the training text with
  ``tokenizers``) and :func:`load_checkpoint_tokenizer` (a checkpoint's own tokenizer from
  local files) share one small interface, :class:`TextTokenizer`.
* :func:`make_blocks`: the Hugging Face ``run_clm`` rule (concatenate, drop the remainder,
  cut into blocks); :func:`tokenize_corpus` applies it to each split.
* :func:`sample_real_fraction`: a generation's training set with a random share of the
  original blocks (the paper's "10% of original training data preserved" setting).

Examples:
    >>> texts = ["the cat sat on the mat\\n", "a dog sat on a log\\n"] * 200
    >>> tokenizer = train_bpe_tokenizer(texts, vocab_size=300)
    >>> ids = tokenizer.encode(texts)
    >>> tokenizer.decode(ids[0]) == texts[0], int(ids[0][0]) == tokenizer.bos_id
    (True, True)
    >>> make_blocks(ids, block_size=16).shape[1]
    16
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._validation import ConfigError, require_choice, require_fraction, require_int

__all__ = [
    "TextCorpus", "BlockSplits", "RealMix", "TextTokenizer", "load_corpus", "train_bpe_tokenizer",
    "load_checkpoint_tokenizer", "make_blocks", "tokenize_corpus", "sample_real_fraction", "numpy_rng",
    "HUB_CORPORA", "SPLIT_FRACTIONS", "MIX_MODES",
]

HUB_CORPORA = ("wikitext2",)
_WIKITEXT_ALIASES = ("wikitext2", "wikitext-2", "wikitext-2-raw-v1")
_WIKITEXT_REPOS = ("wikitext", "Salesforce/wikitext")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, valid, test of a single file, by lines, contiguous
_SPLIT_FILES = {
    "train": ("train.txt", "wiki.train.raw", "train.raw"),
    "valid": ("valid.txt", "validation.txt", "wiki.valid.raw", "valid.raw", "validation.raw"),
    "test": ("test.txt", "wiki.test.raw", "test.raw"),
}
MIX_MODES = ("replace", "add")


class TextCorpus(NamedTuple):
    """Rows of text per split; each row keeps its trailing newline (as wikitext rows do)."""

    train: list[str]
    valid: list[str]
    test: list[str]
    name: str


class BlockSplits(NamedTuple):
    """Token blocks per split, each ``(n_blocks, block_size)`` int32."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


class RealMix(NamedTuple):
    """A training set mixing synthetic and real blocks (:func:`sample_real_fraction`)."""

    blocks: np.ndarray  # (n, block_size) int32
    real_indices: np.ndarray  # sorted indices into real_blocks of the real blocks taken, int64
    is_real: np.ndarray  # (n,) bool: which rows of ``blocks`` are real


# ----------------------------------------------------------------------------- randomness


def numpy_rng(seed, *path: int) -> np.random.Generator:
    """A numpy Generator from an integer seed >= 0, a JAX key, or a Generator.

    ``path`` derives an independent stream: ``SeedSequence([seed, *path])`` for an integer,
    ``fold_in`` along ``path`` for a JAX key (typed or raw ``uint32[2]``). A Generator is
    returned as is (it is consumed; ``path`` is not allowed with it).

    Examples:
        >>> float(numpy_rng(0, 1).random()) == float(numpy_rng(0, 1).random())
        True
    """
    if isinstance(seed, np.random.Generator):
        if path:
            raise ConfigError("a numpy Generator cannot derive sub-streams; pass an integer seed or a JAX key")
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng([require_int("seed", seed, 0), *path])
    if hasattr(seed, "dtype") and hasattr(seed, "shape"):
        import jax
        import jax.numpy as jnp

        key = seed
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            raw = jnp.asarray(key)
            if raw.dtype != jnp.uint32 or raw.shape != (2,):
                raise ConfigError(f"seed must be an integer >= 0, a JAX key or a numpy Generator; "
                                  f"got an array of {raw.dtype} with shape {raw.shape}")
            key = jax.random.wrap_key_data(raw)
        if key.shape != ():
            raise ConfigError(f"seed must be a single JAX key; got a batch of shape {key.shape}")
        for step in path:
            key = jax.random.fold_in(key, step)
        words = np.asarray(jax.random.bits(key, (4,), jnp.uint32))
        return np.random.default_rng(words.astype(np.uint64))
    raise ConfigError(f"seed must be an integer >= 0, a JAX key or a numpy Generator; got {seed!r}")


# ----------------------------------------------------------------------------- corpora


def load_corpus(name_or_path, *, cache_dir=None) -> TextCorpus:
    """A text corpus as train/valid/test rows.

    * ``"wikitext2"`` (aliases ``"wikitext-2"``, ``"wikitext-2-raw-v1"``): wikitext-2-raw-v1
      through ``datasets.load_dataset("wikitext", "wikitext-2-raw-v1")`` (then
      ``"Salesforce/wikitext"``, the same data under its current Hub name), from
      ``cache_dir``, else ``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``, else the
      ``datasets`` default ``~/.cache/huggingface/datasets``. With ``HF_DATASETS_OFFLINE=1``
      (set before ``datasets`` is imported) and no cache it fails at once with a
      :class:`ConfigError` saying what to download. A known name wins over a folder of the
      same name: write ``./wikitext2`` for the folder.
    * A text file: its lines (``str.splitlines(keepends=True)``, UTF-8) split contiguously
      90 / 5 / 5 % into train / valid / test: valid and test get
      ``max(1, floor(0.05 * n_lines + 0.5))`` lines each, from the end (valid before test),
      train the rest.
    * A folder with one file per split: train from ``train.txt`` (or ``wiki.train.raw``,
      ``train.raw``), valid from ``valid.txt`` / ``validation.txt`` (or ``wiki.valid.raw``, ...),
      test from ``test.txt`` (or ``wiki.test.raw``) - the layout of the original
      wikitext-2-raw-v1 zip works as is. A folder without those names: all its ``*.txt``
      files, sorted by name, concatenated, then split as one file.

    Every split must contain some non-blank text, else :class:`ConfigError`.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "corpus.txt"
        ...     _ = path.write_text("".join(f"line {i}\\n" for i in range(100)))
        ...     corpus = load_corpus(path)
        >>> len(corpus.train), len(corpus.valid), len(corpus.test), corpus.test[-1]
        (90, 5, 5, 'line 99\\n')
    """
    if isinstance(name_or_path, str) and name_or_path in _WIKITEXT_ALIASES:
        return _load_wikitext(cache_dir)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"corpus must be a name or a path; got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _split_rows(_read_rows(path), str(path))
    if path.is_dir():
        return _load_folder(path)
    raise ConfigError(f"corpus {str(name_or_path)!r} is neither an existing file or folder nor a known corpus "
                      f"({', '.join(map(repr, HUB_CORPORA))})")


def _read_rows(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"corpus file {path} is not UTF-8 text ({error})") from error
    return text.splitlines(keepends=True)


def _check_split(rows: list[str], split: str, where: str) -> list[str]:
    if not any(row.strip() for row in rows):
        raise ConfigError(f"corpus {where}: the {split} split is empty (no non-blank text)")
    return rows


def _split_rows(rows: list[str], where: str) -> TextCorpus:
    if not any(row.strip() for row in rows):
        raise ConfigError(f"corpus {where} is empty (no non-blank text)")
    n = len(rows)
    n_held = max(1, math.floor(SPLIT_FRACTIONS[1] * n + 0.5))
    if n < 2 * n_held + 1:
        raise ConfigError(f"corpus {where} has {n} lines: at least 3 are needed to split it "
                          f"{SPLIT_FRACTIONS[0]:.0%} / {SPLIT_FRACTIONS[1]:.0%} / {SPLIT_FRACTIONS[2]:.0%} by lines; "
                          "give a folder with train.txt, valid.txt and test.txt instead")
    train, valid, test = rows[: n - 2 * n_held], rows[n - 2 * n_held: n - n_held], rows[n - n_held:]
    return TextCorpus(*(_check_split(part, split, where) for part, split in
                        ((train, "train"), (valid, "valid"), (test, "test"))), name=where)


def _load_folder(folder: Path) -> TextCorpus:
    found = {split: next((folder / name for name in names if (folder / name).is_file()), None)
             for split, names in _SPLIT_FILES.items()}
    if any(found.values()):
        missing = [split for split, path in found.items() if path is None]
        if missing:
            raise ConfigError(f"corpus folder {folder} has a split file but no {' or '.join(missing)} file "
                              f"(expected one of {', '.join(n for s in missing for n in _SPLIT_FILES[s])})")
        rows = {split: _check_split(_read_rows(path), split, str(path)) for split, path in found.items()}
        return TextCorpus(rows["train"], rows["valid"], rows["test"], name=str(folder))
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise ConfigError(f"corpus folder {folder} has no train.txt / valid.txt / test.txt and no *.txt files")
    rows: list[str] = []
    for path in files:
        part = _read_rows(path)
        if part and not part[-1].endswith(("\n", "\r")):
            part[-1] += "\n"
        rows.extend(part)
    return _split_rows(rows, str(folder))


def _hf_cache_dir(cache_dir) -> str | None:
    if cache_dir is not None:
        return os.fspath(cache_dir)
    if os.environ.get("HF_DATASETS_CACHE"):
        return os.environ["HF_DATASETS_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "datasets")
    return None


def _load_wikitext(cache_dir) -> TextCorpus:
    try:
        import datasets
    except ImportError as error:
        raise ConfigError("corpus wikitext2 needs the datasets package (pip install datasets), or pass a folder "
                          "holding wiki.train.raw, wiki.valid.raw and wiki.test.raw") from error
    cache = _hf_cache_dir(cache_dir)
    offline = any(os.environ.get(var, "").upper() in ("1", "TRUE", "YES", "ON")
                  for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    failures = []
    for repo in _WIKITEXT_REPOS:
        try:
            data = datasets.load_dataset(repo, "wikitext-2-raw-v1", cache_dir=cache)
            break
        except Exception as error:  # datasets raises many kinds when the Hub is out of reach
            failures.append(f"{repo}: {type(error).__name__}: {error}")
    else:
        where = cache or "~/.cache/huggingface/datasets"
        raise ConfigError(
            f"corpus wikitext2 is not available{' offline' if offline else ''} in the datasets cache {where}. "
            "On a machine with network access run "
            "`python -c \"import datasets; datasets.load_dataset('Salesforce/wikitext', 'wikitext-2-raw-v1')\"` "
            f"and copy its cache folder (~/.cache/huggingface/datasets, or $HF_DATASETS_CACHE there) to {where} "
            "here (or point HF_DATASETS_CACHE / HF_HOME at the copy); or download wikitext-2-raw-v1 "
            "(wiki.train.raw, wiki.valid.raw, wiki.test.raw) and pass that folder as the corpus "
            f"({'; '.join(failures)})"
        )
    rows = {split: list(data[split]["text"]) for split in ("train", "validation", "test")}
    return TextCorpus(rows["train"], rows["validation"], rows["test"], name="wikitext2")


# ----------------------------------------------------------------------------- tokenizers


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as error:
        raise ConfigError("tokenizers are built with the tokenizers package: pip install tokenizers") from error
    return tokenizers


@dataclass(frozen=True, eq=False)
class TextTokenizer:
    """The small tokenizer interface the LM pipeline uses.

    ``backend`` is a ``tokenizers.Tokenizer``, or a ``transformers`` tokenizer when a
    checkpoint carries a ``tokenizer_config.json`` (then it is called as is, so the
    checkpoint's own rules apply, e.g. OPT prepending ``</s>`` to every text, as in the
    authors' ``tokenizer(examples["text"])``).

    Attributes:
        bos_id, eos_id, pad_id: special-token ids (bos may equal eos, as in OPT).
        name: where it came from.
    """

    backend: Any
    bos_id: int
    eos_id: int
    pad_id: int
    name: str = "bpe"

    @property
    def _is_raw(self) -> bool:
        return isinstance(self.backend, _require_tokenizers().Tokenizer)

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids the tokenizer produces, special tokens included (a model's
        embedding may be larger: OPT-125m has 50265 token ids and 50272 rows)."""
        if self._is_raw:
            return self.backend.get_vocab_size(with_added_tokens=True)
        return len(self.backend)

    def encode(self, texts, *, add_special_tokens: bool = True):
        """Token ids (int32 arrays) of a list of texts; a single string gives one array.

        ``add_special_tokens=True`` applies the tokenizer's own rule (for
        :func:`train_bpe_tokenizer` with ``prepend_bos``, and for OPT: bos first).
        """
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not all(isinstance(text, str) for text in batch):
            raise ConfigError("encode takes a string or a list of strings")
        if self._is_raw:
            ids = [encoding.ids for encoding in self.backend.encode_batch(batch, add_special_tokens=add_special_tokens)]
        else:
            ids = self.backend(batch, add_special_tokens=add_special_tokens)["input_ids"] if batch else []
        arrays = [np.asarray(row, np.int32) for row in ids]
        return arrays[0] if single else arrays

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        """Text of one id sequence."""
        row = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self.backend.decode(row, skip_special_tokens=skip_special_tokens)

    def decode_batch(self, rows, *, skip_special_tokens: bool = True) -> list[str]:
        """Texts of a batch of id sequences (e.g. a (n, L) array of generated blocks)."""
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in rows]

    def save(self, directory) -> Path:
        """Write the tokenizer to ``directory`` (``tokenizer.json`` and
        ``special_tokens_map.json``, or ``save_pretrained`` for a ``transformers`` backend),
        loadable with :func:`load_checkpoint_tokenizer`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if not self._is_raw:
            self.backend.save_pretrained(os.fspath(directory))
            return directory
        self.backend.save(os.fspath(directory / "tokenizer.json"))
        names = {key: self.backend.id_to_token(value) for key, value in
                 (("bos_token", self.bos_id), ("eos_token", self.eos_id), ("pad_token", self.pad_id))}
        (directory / "special_tokens_map.json").write_text(json.dumps(names, indent=1) + "\n")
        return directory


def train_bpe_tokenizer(texts, vocab_size: int = 8192, *, min_frequency: int = 2,
                        prepend_bos: bool = True) -> TextTokenizer:
    """A byte-level BPE tokenizer (GPT-2 / OPT style) trained on ``texts``.

    Byte-level pre-tokenization without an added prefix space, so ``decode(encode(text))``
    gives back ``text`` exactly for any Unicode text. Special tokens: ``<pad>`` = 0 and
    ``</s>`` = 1, used as both bos and eos (as OPT does); with ``prepend_bos`` (default)
    ``encode`` puts ``</s>`` before every text, as OPT's tokenizer does. The 256 byte
    symbols are always in the vocabulary, so ``vocab_size`` must be >= 258; merges stop
    earlier when the text has no more pairs seen ``min_frequency`` times.

    Examples:
        >>> tokenizer = train_bpe_tokenizer(["hello world\\n"] * 50, vocab_size=270)
        >>> tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size <= 270
        (0, 1, 1, True)
    """
    tk = _require_tokenizers()
    vocab_size = require_int("vocab_size", vocab_size, 258)
    min_frequency = require_int("min_frequency", min_frequency, 1)
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not any(isinstance(text, str) and text.strip() for text in texts):
        raise ConfigError("train_bpe_tokenizer needs some non-blank training text")
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                     special_tokens=["<pad>", "</s>"],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if prepend_bos:
        tokenizer.post_processor = tk.processors.TemplateProcessing(
            single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", 1)])
    return TextTokenizer(tokenizer, bos_id=1, eos_id=1, pad_id=0, name="bpe")


def load_checkpoint_tokenizer(directory) -> TextTokenizer:
    """A checkpoint's own tokenizer, from local files only (no network).

    * ``tokenizer_config.json`` present (Hugging Face checkpoints, facebook/opt-125m among
      them): ``transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)``,
      so the checkpoint's class and settings apply (OPT: GPT-2 BPE from ``vocab.json`` +
      ``merges.txt``, ``</s>`` prepended);
    * else ``tokenizer.json`` (as :meth:`TextTokenizer.save` writes): loaded with ``tokenizers``;
    * else ``vocab.json`` + ``merges.txt``: a GPT-2 style byte-level BPE, no special token
      added on encode.

    Special ids come from the tokenizer's settings (``special_tokens_map.json`` for the
    last two), else from the tokens ``</s>``, ``<|endoftext|>``, ``<s>`` (bos/eos) and
    ``<pad>`` (pad; eos when absent).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ConfigError(f"tokenizer folder {directory} does not exist")
    if (directory / "tokenizer_config.json").is_file():
        return _load_transformers_tokenizer(directory)
    tk = _require_tokenizers()
    if (directory / "tokenizer.json").is_file():
        backend = tk.Tokenizer.from_file(os.fspath(directory / "tokenizer.json"))
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        backend = tk.Tokenizer(tk.models.BPE.from_file(os.fspath(directory / "vocab.json"),
                                                       os.fspath(directory / "merges.txt")))
        backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = tk.decoders.ByteLevel()
        specials = [token for token in ("<s>", "<pad>", "</s>", "<unk>", "<|endoftext|>")
                    if backend.token_to_id(token) is not None]
        backend.add_special_tokens(specials)
    else:
        raise ConfigError(f"tokenizer folder {directory} has no tokenizer_config.json, no tokenizer.json and no "
                          "vocab.json + merges.txt pair")
    names = {}
    if (directory / "special_tokens_map.json").is_file():
        for key, value in json.loads((directory / "special_tokens_map.json").read_text()).items():
            names[key] = value["content"] if isinstance(value, dict) else value

    def lookup(key, fallbacks):
        for token in ([names[key]] if isinstance(names.get(key), str) else []) + list(fallbacks):
            token_id = backend.token_to_id(token)
            if token_id is not None:
                return token_id
        return None

    eos = lookup("eos_token", ("</s>", "<|endoftext|>"))
    bos = lookup("bos_token", ("</s>", "<|endoftext|>", "<s>"))
    pad = lookup("pad_token", ("<pad>",))
    return _with_special_ids(backend, bos, eos, pad, str(directory))


def _load_transformers_tokenizer(directory: Path) -> TextTokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError as error:
        raise ConfigError(f"the tokenizer in {directory} (tokenizer_config.json) needs the transformers package: "
                          "pip install transformers") from error
    try:
        backend = AutoTokenizer.from_pretrained(os.fspath(directory), local_files_only=True)
    except Exception as error:  # transformers raises OSError, ValueError, ... for incomplete folders
        raise ConfigError(f"could not load the tokenizer in {directory} from local files "
                          f"(tokenizer_config.json with vocab.json + merges.txt, or tokenizer.json, expected): "
                          f"{type(error).__name__}: {error}") from error
    return _with_special_ids(backend, backend.bos_token_id, backend.eos_token_id, backend.pad_token_id,
                             str(directory))


def _with_special_ids(backend, bos, eos, pad, name) -> TextTokenizer:
    eos = eos if eos is not None else bos
    bos = bos if bos is not None else eos
    pad = pad if pad is not None else eos
    if eos is None:
        raise ConfigError(f"the tokenizer in {name} defines no bos/eos token (looked for </s>, <|endoftext|>, <s>)")
    return TextTokenizer(backend, bos_id=int(bos), eos_id=int(eos), pad_id=int(pad), name=name)


# ----------------------------------------------------------------------------- blocks


def make_blocks(token_ids, block_size: int) -> np.ndarray:
    """Fixed-size training blocks by the Hugging Face ``run_clm`` ``group_texts`` rule.

    All token sequences are concatenated in order, the remainder shorter than one block is
    dropped and the rest is cut into ``(total // block_size, block_size)`` int32 blocks.
    (``run_clm`` applies the rule per ``datasets.map`` batch of 1000 rows, dropping one
    remainder per batch; here it is applied once to the whole split.)

    Args:
        token_ids: a list of 1-D id sequences (e.g. :meth:`TextTokenizer.encode` output) or
            one 1-D array.
        block_size: >= 1.

    Examples:
        >>> make_blocks([[1, 2, 3], [4, 5], [6, 7, 8]], block_size=3)
        array([[1, 2, 3],
               [4, 5, 6]], dtype=int32)
    """
    block_size = require_int("block_size", block_size, 1)
    if isinstance(token_ids, np.ndarray) and token_ids.ndim == 1:
        token_ids = [token_ids]
    parts = [np.asarray(part).reshape(-1) for part in token_ids]
    parts = [part for part in parts if part.size]
    if parts and not all(np.issubdtype(part.dtype, np.integer) for part in parts):
        raise ConfigError("token ids must be integers")
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if flat.size and (flat.min() < 0 or flat.max() > np.iinfo(np.int32).max):
        raise ConfigError("token ids must be non-negative int32 values")
    n_blocks = flat.size // block_size
    if n_blocks == 0:
        raise ConfigError(f"the corpus has {flat.size} tokens, fewer than one block of {block_size}")
    return flat[: n_blocks * block_size].reshape(n_blocks, block_size).astype(np.int32)


def tokenize_corpus(corpus: TextCorpus, tokenizer: TextTokenizer, block_size: int) -> BlockSplits:
    """Encode every split of ``corpus`` and cut it into blocks (:func:`make_blocks`).

    Examples:
        >>> rows = [f"row {i} of the corpus\\n" for i in range(400)]
        >>> corpus = TextCorpus(rows[:360], rows[360:380], rows[380:], "toy")
        >>> splits = tokenize_corpus(corpus, train_bpe_tokenizer(rows, 300), block_size=32)
        >>> splits.train.shape[1], splits.valid.dtype.name
        (32, 'int32')
    """
    blocks = []
    for split, rows in zip(("train", "valid", "test"), corpus[:3]):
        try:
            blocks.append(make_blocks(tokenizer.encode(rows), block_size))
        except ConfigError as error:
            raise ConfigError(f"{corpus.name} {split} split: {error}") from error
    return BlockSplits(*blocks)


def sample_real_fraction(seed, real_blocks, synthetic_blocks, fraction: float, *,
                         mode: str = "replace") -> RealMix:
    """A generation's training set keeping a random share of the original (real) blocks.

    ``k = floor(fraction * n_real + 0.5)`` real blocks (rounded half up, so exact) are
    chosen uniformly without replacement.

    * ``mode="replace"`` (default): the set keeps its size ``n``; real block ``i`` takes the
      place of synthetic block ``i`` (the continuation of prompt ``i``) for each chosen
      ``i``. This is the authors' code (``--generate_percentage``: the first 10 % of the
      shuffled batches are kept real and only the rest are continued), and the paper's
      "all generated datasets equal in size". Needs as many synthetic as real blocks;
      prompts in ``real_indices`` need no continuation.
    * ``mode="add"``: the ``k`` real blocks are appended after all synthetic blocks
      (``n_synthetic + k`` rows, real ones last; shuffle when training).

    Args:
        seed: an integer >= 0, a JAX key, or a numpy Generator.
        real_blocks: ``(n, block_size)`` integer array of real blocks.
        synthetic_blocks: ``(n, block_size)`` integer array of written blocks.
        fraction: in [0, 1].

    Examples:
        >>> real = np.zeros((10, 4), np.int32); synthetic = np.ones((10, 4), np.int32)
        >>> mix = sample_real_fraction(0, real, synthetic, 0.3)
        >>> mix.blocks.shape, int(mix.is_real.sum()), bool((mix.blocks[mix.real_indices] == 0).all())
        ((10, 4), 3, True)
        >>> sample_real_fraction(0, real, synthetic, 0.3, mode="add").blocks.shape
        (13, 4)
    """
    mode = require_choice("mode", mode, MIX_MODES)
    fraction = require_fraction("fraction", fraction)
    real = _check_blocks("real_blocks", real_blocks)
    synthetic = _check_blocks("synthetic_blocks", synthetic_blocks)
    if real.shape[1] != synthetic.shape[1]:
        raise ConfigError(f"real and synthetic blocks must have the same block size; got {real.shape[1]} "
                          f"and {synthetic.shape[1]}")
    n_real = real.shape[0]
    if mode == "replace" and synthetic.shape[0] != n_real:
        raise ConfigError(f"mode='replace' puts real block i in place of synthetic block i: both need the same "
                          f"number of blocks; got {n_real} real and {synthetic.shape[0]} synthetic")
    k = math.floor(fraction * n_real + 0.5)
    chosen = np.sort(numpy_rng(seed).choice(n_real, size=k, replace=False)).astype(np.int64)
    if mode == "replace":
        blocks = synthetic.copy()
        blocks[chosen] = real[chosen]
        is_real = np.zeros(n_real, bool)
        is_real[chosen] = True
    else:
        blocks = np.concatenate([synthetic, real[chosen]])
        is_real = np.concatenate([np.zeros(synthetic.shape[0], bool), np.ones(k, bool)])
    return RealMix(blocks, chosen, is_real)


def _check_blocks(name, blocks) -> np.ndarray:
    array = np.asarray(blocks)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(f"{name} must be an integer array (n_blocks, block_size); got {array.dtype} "
                          f"of shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ConfigError(f"{name} is empty: shape {array.shape}")
    return array.astype(np.int32)
