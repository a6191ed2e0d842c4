"""The recursive language-model pipeline (paper section 5.2, Figures 10, 11, 14, 15).

Per run and generation n = 0, 1, ..., G - 1 (the generational-step interface: ``fit`` =
fine-tune, ``sample`` = generate):

1. **fit**: fine-tune the *base* model (the same for every generation and run) on the
   generation's training blocks: the real training blocks for n = 0, the blocks written by
   generation n - 1 for n >= 1, with ``real_fraction`` of them replaced by randomly chosen
   real blocks (the paper: 10 %, data set sizes kept equal); the best epoch by validation
   perplexity is kept;
2. **sample**: every real training block is the prompt for exactly ``new_tokens`` new tokens
   (beam search, ``beams``, ``repetition_penalty``); the new tokens form the next training
   set, as many blocks as the real one;
3. **score**: the model's perplexity on the real test blocks (Figure 10); the perplexity of
   every block it wrote under the generation-0 model (Figures 11, 14, 15); on the synthetic
   language, the exact perplexity of the new tokens under the true source and the true
   probability mass the written blocks lost (tail).

A run folder keeps, per run and generation, ``model/`` (config.json + model.safetensors, a
Hugging Face checkpoint), ``synthetic.npy`` (the written blocks) and ``metrics.json``; each
is written atomically when its stage ends, so a run killed at any point resumes at the last
finished stage (an interrupted fine-tuning starts that fine-tuning again; generation
resumes at its last saved batch) and ends identical to an uninterrupted run.

Example (``run_lm(study, folder)`` runs it; ``tests/test_lm_runs.py`` runs small ones):
    >>> study = LMStudy(generations=2, epochs=1, train_blocks=16, block_size=16, new_tokens=16, vocab=24)
    >>> study.finetune_config().learning_rate, study.generation_config(eos=24, pad=25).method
    (0.001, 'beam')
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._files import atomic_bytes, atomic_text, claim_run_folder, folder_lock
from .._validation import ConfigError, require_choice, require_finite, require_int, require_positive
from ..check import TheoryRow, check_csv
from ..families.base import Family
from ..host import stage_scratch
from ..policies import DataPolicy, parse_policy
from .data import BlockSplits, load_checkpoint_tokenizer, load_corpus
from .data import tokenize_corpus, train_bpe_tokenizer
from .finetune import FinetuneConfig, finetune, perplexity, score_blocks
from .generate import GenerationConfig, generate
from .opt import OPTConfig, OPTForCausalLM, decoder_fns, functional
from .synthetic import MAX_VOCAB, SyntheticLanguage, synthetic_corpus

__all__ = ["LMStudy", "run_lm", "run_lm_checked", "opt_family", "check_rows", "export_model", "PRESETS", "QUANTILES", "study_preset"]

MODEL_PRESETS = ("tiny", "small")
DECODINGS = ("beam", "greedy", "sample")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
FORMAT_VERSION = 2
# limits checked before any work (beyond them a run cannot fit in memory or is a typo)
MAX_CONTEXT = 2048  # OPT's position embeddings (a checkpoint's own is checked when it loads)
MAX_BEAMS, MAX_BATCH, MAX_RUNS, MAX_GENERATIONS, MAX_EPOCHS = 64, 4096, 1000, 10_000, 10_000
MAX_BPE_VOCAB = 1 << 20


@dataclass(frozen=True)
class LMStudy:
    """Every setting of a recursive language-model run (saved as ``config.json``).

    ``model``: ``tiny`` or ``small`` (random OPT presets, trained from scratch) or a local
    Hugging Face OPT checkpoint folder (config.json + model.safetensors, and its tokenizer).
    ``corpus``: ``synthetic`` (the built-in order-2 Zipfian Markov language, exact
    likelihoods), ``wikitext2`` or a local text file or folder. ``generations``: models
    trained, generation 0 (on real data) to ``generations - 1``. ``train_blocks`` /
    ``eval_blocks`` cap the number of training and of validation/test blocks (None: all).
    ``vocab``: symbols of the synthetic language, or the BPE vocabulary trained on a text
    corpus when the model has no tokenizer. ``learning_rate`` None: 2e-5 (the authors')
    for a checkpoint, 1e-3 for a preset trained from scratch.
    """

    model: str = "tiny"
    corpus: str = "synthetic"
    generations: int = 3
    runs: int = 1
    epochs: int = 5
    real_fraction: float = 0.0
    beams: int = 5
    repetition_penalty: float = 1.0
    decoding: str = "beam"
    temperature: float = 1.0
    block_size: int = 64
    new_tokens: int = 64
    batch_size: int = 32
    learning_rate: float | None = None
    final_learning_rate: float | None = None
    train_blocks: int | None = 512
    eval_blocks: int | None = 64
    vocab: int = 16
    zipf_exponent: float = 1.1
    generation_batch: int = 16
    seed: int = 0
    regime: str = "replace"

    command: ClassVar[str] = "lm"

    def __post_init__(self):
        require_int("generations", self.generations, 1, MAX_GENERATIONS)
        require_int("runs", self.runs, 1, MAX_RUNS)
        require_int("epochs", self.epochs, 1, MAX_EPOCHS)
        require_int("beams", self.beams, 1, MAX_BEAMS, "the beam search keeps every beam's key/value cache")
        require_int("block_size", self.block_size, 2, MAX_CONTEXT, "OPT's longest context")
        require_int("new_tokens", self.new_tokens, 2, MAX_CONTEXT, "OPT's longest context")
        require_int("batch_size", self.batch_size, 1, MAX_BATCH)
        require_int("generation_batch", self.generation_batch, 1, MAX_BATCH)
        require_int("vocab", self.vocab, 2, MAX_BPE_VOCAB)
        require_int("seed", self.seed, 0, 2**32 - 1)
        require_positive("repetition_penalty", self.repetition_penalty)
        for name in ("learning_rate", "final_learning_rate"):
            if getattr(self, name) is not None:
                require_positive(name, getattr(self, name))
        if float(require_finite("zipf_exponent", self.zipf_exponent)) < 0:
            raise ConfigError(f"zipf_exponent must be >= 0 (0: uniform transitions); got {self.zipf_exponent!r}")
        if self.corpus == "synthetic" and self.vocab > MAX_VOCAB:
            raise ConfigError(f"vocab must be an integer >= 2 and <= {MAX_VOCAB} for the synthetic language (its exact "
                              f"likelihoods hold a V^3 table); got {self.vocab}")
        require_choice("decoding", self.decoding, DECODINGS)
        require_positive("temperature", self.temperature)
        if self.decoding != "sample" and self.temperature != 1.0:
            raise ConfigError(f"temperature only applies to decoding='sample'; got decoding={self.decoding!r}")
        if not 0.0 <= self.real_fraction <= 1.0:
            raise ConfigError(f"real_fraction must lie in [0, 1]; got {self.real_fraction!r}")
        policy = parse_policy(self.regime)
        if self.real_fraction > 0 and policy.kind != "replace":
            raise ConfigError(f"give real_fraction or regime, not both: real_fraction={self.real_fraction!r} means "
                              f"regime real-fraction:{self.real_fraction:g}; got regime={self.regime!r} as well")
        if self.new_tokens != self.block_size:
            raise ConfigError(f"new_tokens must equal block_size ({self.block_size}): the blocks a generation writes "
                              f"are the next generation's training blocks, in the data policy's buffers beside real "
                              f"blocks; got new_tokens={self.new_tokens}")
        for name in ("train_blocks", "eval_blocks"):
            if getattr(self, name) is not None:
                require_int(name, getattr(self, name), 1)
        if self.model not in MODEL_PRESETS and not Path(self.model).is_dir():
            raise ConfigError(f"model must be one of {MODEL_PRESETS} or a local OPT checkpoint folder "
                              f"(config.json + model.safetensors); {self.model!r} is neither. Download e.g. "
                              f"facebook/opt-125m's config.json, model.safetensors, vocab.json and merges.txt "
                              f"into a folder and pass its path")

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, blob: dict) -> "LMStudy":
        return cls(**blob)  # a config without "regime" (format 1) takes the default

    @property
    def policy(self) -> DataPolicy:
        """The data policy: ``regime``, or ``real-fraction:F`` for ``real_fraction`` F > 0."""
        if self.real_fraction > 0:
            return DataPolicy("real-fraction", fraction=self.real_fraction)
        return parse_policy(self.regime)

    @property
    def pretrained(self) -> bool:
        return self.model not in MODEL_PRESETS

    def finetune_config(self) -> FinetuneConfig:
        rate = self.learning_rate if self.learning_rate is not None else (2e-5 if self.pretrained else 1e-3)
        final = self.final_learning_rate if self.final_learning_rate is not None else min(1e-6 if self.pretrained
                                                                                          else 1e-5, rate)
        return FinetuneConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=rate,
                              final_learning_rate=final)

    def generation_config(self, eos: int | None, pad: int | None) -> GenerationConfig:
        method = self.decoding if self.decoding != "beam" or self.beams > 1 else "greedy"
        return GenerationConfig(max_new_tokens=self.new_tokens, min_new_tokens=self.new_tokens, method=method,
                                num_beams=self.beams, temperature=self.temperature,
                                repetition_penalty=self.repetition_penalty, eos_token_id=eos, pad_token_id=pad)


# The paper's two settings for OPT-125m on wikitext-2 (experiment-settings.md); they need a
# local facebook/opt-125m checkpoint (--model DIR) and, at this size, a GPU.
PRESETS = {
    "paper-no-real": dict(corpus="wikitext2", generations=10, runs=5, epochs=5, real_fraction=0.0, beams=5,
                          repetition_penalty=1.0, block_size=64, new_tokens=64, batch_size=128, learning_rate=2e-5,
                          final_learning_rate=1e-6, train_blocks=None, eval_blocks=None, generation_batch=64),
    "paper-10pct-real": dict(corpus="wikitext2", generations=10, runs=5, epochs=10, real_fraction=0.1, beams=5,
                             repetition_penalty=1.0, block_size=64, new_tokens=64, batch_size=128, learning_rate=2e-5,
                             final_learning_rate=1e-6, train_blocks=None, eval_blocks=None, generation_batch=64),
}


def study_preset(name: str, **overrides) -> LMStudy:
    """One of :data:`PRESETS` with fields overridden (``model`` must be given: a checkpoint)."""
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {tuple(PRESETS)}; got {name!r}")
    return LMStudy(**{**PRESETS[name], **overrides})


# ---------------------------------------------------------------------------- set-up

class _Setup:
    """Everything fixed for a run folder: blocks, model graph, base parameters, scorers."""

    def __init__(self, study: LMStudy):
        from .checkpoint import load_opt

        self.language = None
        self.tokenizer = None  # a text corpus's (trained or the checkpoint's), kept in the run folder
        if study.corpus == "synthetic":
            self.language = SyntheticLanguage(vocab_size=study.vocab, zipf_exponent=study.zipf_exponent,
                                              seed=study.seed)
            evaluation = study.eval_blocks or 256
            splits = synthetic_corpus(self.language, study.train_blocks or 1024, evaluation, evaluation,
                                      study.block_size, seed=study.seed)
            vocab_size, bos, eos, pad = (self.language.model_vocab_size, self.language.bos_id,
                                         self.language.eos_id, self.language.pad_id)
        else:
            corpus = load_corpus(study.corpus)
            tokenizer = (load_checkpoint_tokenizer(study.model) if study.pretrained
                         else train_bpe_tokenizer(corpus.train, study.vocab))
            self.tokenizer = tokenizer
            splits = tokenize_corpus(corpus, tokenizer, study.block_size)
            splits = BlockSplits(*(split[:limit] if limit else split for split, limit in zip(
                splits, (study.train_blocks, study.eval_blocks, study.eval_blocks))))
            vocab_size, bos, eos, pad = tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
        if study.pretrained:
            config, model = load_opt(study.model)
            if config.vocab_size < vocab_size:
                raise ConfigError(f"the checkpoint's vocabulary ({config.vocab_size}) is smaller than the "
                                  f"tokenizer's ({vocab_size})")
            eos = config.eos_token_id if config.eos_token_id is not None else eos
            pad = config.pad_token_id if config.pad_token_id is not None else pad
        else:
            config = OPTConfig.preset(study.model, vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos,
                                      pad_token_id=pad,
                                      max_position_embeddings=max(study.block_size + study.new_tokens, 64))
            from flax import nnx

            model = OPTForCausalLM(config, rngs=nnx.Rngs(params=jax.random.key(study.seed)))
        if study.block_size + study.new_tokens > config.max_position_embeddings:
            raise ConfigError(f"block_size + new_tokens = {study.block_size + study.new_tokens} exceeds the model's "
                              f"context (max_position_embeddings = {config.max_position_embeddings})")
        self.splits, self.config = splits, config
        self.apply, self.base = functional(model)
        self.graph_model = model
        self.decoder = decoder_fns(self.apply, config)
        self.generation = study.generation_config(eos, pad)


# ---------------------------------------------------------------------------- stages

class _Meter:
    """A one-line progress meter on stderr (only when it is a terminal, unless forced)."""

    def __init__(self, enabled: bool | None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.perf_counter()

    def __call__(self, label: str, done: int, total: int, unit: str, extra: str = "") -> None:
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        sys.stderr.write(f"\r{label}: {done}/{total} {unit} ({done / elapsed:.2f}/s){extra}   ")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_bytes(path, buffer.getvalue())


PARTIAL_BLOCKS = "blocks.partial.npy"  # finished batches of an interrupted generation, in the stage's scratch


def _write_blocks(setup: _Setup, study: LMStudy, params, progress, key) -> np.ndarray:
    """Continue every real training block by ``new_tokens`` tokens. Finished batches are
    saved in the stage's scratch folder (:func:`jaxcollapse.host.stage_scratch`), so that
    an interrupted generation resumes where it stopped (sampling keys derive from the
    batch's first block, so a resumed batch draws what it would have)."""
    prompts = setup.splits.train
    batch = min(study.generation_batch, len(prompts))
    scratch = stage_scratch()
    partial = None if scratch is None else scratch / PARTIAL_BLOCKS
    done = _partial_blocks(partial, study, setup)
    last_save = time.perf_counter()
    meter = _Meter(progress)
    for first in range(len(done), len(prompts), batch):
        chunk = prompts[first:first + batch]
        rows = len(chunk)
        if rows < batch:  # one compiled shape: pad the last batch with copies
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - rows, axis=0)])
        new = generate(setup.decoder, params, jnp.asarray(chunk), config=setup.generation,
                       key=jax.random.fold_in(key, first) if study.decoding == "sample" else None).tokens
        done = np.concatenate([done, np.asarray(new, np.int32)[:rows]])
        meter("  generating", len(done), len(prompts), "blocks")
        if partial is not None and (time.perf_counter() - last_save > 30 or len(done) == len(prompts)):
            _save_npy(partial, done)
            last_save = time.perf_counter()
    return done


def _partial_blocks(path: Path | None, study: LMStudy, setup: _Setup) -> np.ndarray:
    """The finished batches an interrupted generation saved, or none: a file that cannot be
    read or does not hold whole int32 blocks of valid ids is partial work, recomputed
    rather than trusted."""
    empty = np.zeros((0, study.new_tokens), np.int32)
    if path is None or not path.exists():
        return empty
    try:
        done = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return empty
    if (not isinstance(done, np.ndarray) or done.dtype != np.int32 or done.ndim != 2
            or done.shape[1] != study.new_tokens or len(done) > len(setup.splits.train)
            or (done.size and (done.min() < 0 or done.max() >= setup.config.vocab_size))):
        return empty
    return done


def _weighted_rows(data: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The training blocks a policy's buffer means: row i repeated weights[i] times (the
    policies' weights are 0/1 masks; a fractional weight cannot be a block count)."""
    counts = np.rint(weights).astype(np.int64)
    if not np.allclose(weights, counts) or counts.min() < 0:
        raise ConfigError("the language model trains on whole blocks: data weights must be whole numbers >= 0")
    return np.repeat(data, counts, axis=0)


def _one(tree, run: int):
    return jax.tree.map(lambda x: x[run], tree)


def opt_family(study: LMStudy, setup: _Setup, progress: bool | None = None) -> Family:
    """OPT as a :class:`~jaxcollapse.families.Family` for the host executor: rows are
    blocks of ``block_size`` int32 tokens; ``fit_runs`` fine-tunes the *base* model on each
    run's blocks (the best epoch by validation perplexity; the parameters carry the
    run's history: ``valid_loss``, ``train_loss``, ``best_epoch``, ``seconds``);
    ``sample_runs`` continues every real training block by ``new_tokens`` tokens (beam
    search, greedy or ancestral sampling), as many rows as there are prompts; ``metrics``
    is the perplexity of real blocks."""
    tune = study.finetune_config()
    row = jax.ShapeDtypeStruct((study.block_size,), jnp.int32)

    def fit_runs(keys, data, weights, previous):  # every generation fine-tunes the base model: previous unused
        fitted = []
        for run in range(len(keys)):
            blocks = _weighted_rows(np.asarray(data[run]), np.asarray(weights[run]))
            meter = _Meter(progress)
            params, history = finetune(keys[run], setup.apply, setup.base, blocks, setup.splits.valid, tune,
                                       on_step=lambda done, total, loss: meter("  training", done, total, "steps",
                                                                               f" loss {loss:.3f}"))
            fitted.append({"model": params, "valid_loss": np.asarray(history["valid_loss"], np.float32),
                           "train_loss": np.asarray(history["train_loss"], np.float32),
                           "best_epoch": np.int32(history["best_epoch"]), "seconds": np.float32(history["seconds"])})
        return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(leaf) for leaf in leaves]), *fitted)

    def sample_runs(keys, params, n):
        if n != len(setup.splits.train):
            raise ConfigError(f"the language model writes one block per real training block ({len(setup.splits.train)}); "
                              f"asked for {n}")
        return np.stack([_write_blocks(setup, study, _one(params["model"], run), progress, keys[run])
                         for run in range(len(keys))])

    def metrics(params, reference):
        return {"perplexity": perplexity(setup.apply, params["model"], np.asarray(reference))}

    return Family(name="opt", row=row, metrics=metrics, fit_runs=fit_runs, sample_runs=sample_runs)


def _params_shape(study: LMStudy, setup: _Setup):
    shape = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype)
    return {"model": jax.tree.map(lambda x: shape(x.shape, x.dtype), setup.base),
            "valid_loss": shape((study.epochs,), jnp.float32), "train_loss": shape((study.epochs,), jnp.float32),
            "best_epoch": shape((), jnp.int32), "seconds": shape((), jnp.float32)}


def _quantile_columns(prefix: str, values: np.ndarray) -> dict:
    """Mean over the finite values, quantiles over all (inverted-CDF: an infinite perplexity,
    a block the true source cannot produce, stays infinite instead of making NaNs)."""
    finite = values[np.isfinite(values)]
    columns = {f"{prefix}_mean": float(np.mean(finite)) if finite.size else float("nan")}
    for q in QUANTILES:
        columns[f"{prefix}_q{int(round(q * 100)):02d}"] = float(np.quantile(values, q, method="inverted_cdf"))
    return columns


def _metric_names(setup: _Setup) -> tuple[str, ...]:
    names = ("test_token_nll", "test_perplexity", "valid_perplexity", "best_epoch", "train_seconds", "synthetic_ppl",
             "real_blocks", "data_blocks")
    if setup.language is not None:
        names += ("synthetic_true_ppl", "synthetic_special_blocks", "source_perplexity", "lost_unigram_mass",
                  "lost_trigram_mass", "lost_tail_fraction")
    return names


def _scores(study: LMStudy, setup: _Setup, generation, progress) -> dict:
    """One generation's metrics for a group of runs (see :class:`jaxcollapse.host.Generation`):
    generation 0 is D_0, the real blocks (no model of its own)."""
    apply, train, test = setup.apply, setup.splits.train, setup.splits.test
    written = np.asarray(generation.samples)
    runs = written.shape[0]
    nan = np.full(runs, np.nan)
    synthetic_ppl = np.stack([np.exp(score_blocks(apply, _one(generation.reference["model"], run), written[run])
                                     / (written.shape[2] - 1)) for run in range(runs)])
    real_rows = {row.tobytes() for row in train}
    values = {"synthetic_ppl": synthetic_ppl}
    if generation.params is None:
        values.update(test_token_nll=np.full((runs, len(test)), np.nan), test_perplexity=nan, valid_perplexity=nan,
                      best_epoch=nan, train_seconds=nan, real_blocks=np.full(runs, float(len(train))),
                      data_blocks=np.full(runs, float(len(train))))
    else:
        fitted = generation.params
        test_nll = np.stack([score_blocks(apply, _one(fitted["model"], run), test) / (test.shape[1] - 1)
                             for run in range(runs)])
        data, weights = np.asarray(generation.data), np.asarray(generation.weights)
        values.update(
            test_token_nll=test_nll, test_perplexity=np.exp(test_nll.mean(axis=1)),
            valid_perplexity=np.exp(np.min(np.asarray(fitted["valid_loss"]), axis=1)),
            best_epoch=np.asarray(fitted["best_epoch"], np.float64), train_seconds=np.asarray(fitted["seconds"], np.float64),
            real_blocks=np.array([float(sum(row.tobytes() in real_rows for row in _weighted_rows(data[run], weights[run])))
                                  for run in range(runs)]),
            data_blocks=np.array([float(_weighted_rows(data[run], weights[run]).shape[0]) for run in range(runs)]))
    if setup.language is not None:
        language = setup.language
        # ids the source never emits (its bos/eos and pad, or a checkpoint's larger vocabulary)
        # have probability 0 under it: map them all to one special id
        mapped = np.where(written >= language.vocab_size, language.vocab_size, written)
        if generation.params is None:  # the real blocks themselves, scored from their third token
            true = np.stack([language.true_perplexity(mapped[run], prompt_length=2) for run in range(runs)])
        else:  # the continuation of each real prompt
            true = np.stack([language.true_perplexity(np.concatenate([train, mapped[run]], axis=1),
                                                      prompt_length=train.shape[1]) for run in range(runs)])
        lost = [language.lost_mass(mapped[run]) for run in range(runs)]
        values.update(
            synthetic_true_ppl=true,
            synthetic_special_blocks=np.mean(np.any(mapped >= language.vocab_size, axis=2), axis=1),
            source_perplexity=np.full(runs, float(language.perplexity)),
            lost_unigram_mass=np.array([m.unigram for m in lost]), lost_trigram_mass=np.array([m.trigram for m in lost]),
            lost_tail_fraction=np.array([m.tail_lost_fraction for m in lost]))
    if progress is not False and generation.params is not None:
        print(f"generation {generation.index - 1}, runs {generation.chains[0]}-{generation.chains[-1]}: test "
              f"perplexity {np.mean(values['test_perplexity']):.2f}, synthetic perplexity (generation-0 model) "
              f"median {np.median(synthetic_ppl):.2f}", file=sys.stderr, flush=True)
    return values


class _Stopped(Exception):
    """``run_lm(stop_after=...)`` ends the run here, as an interruption would."""


def run_lm(study: LMStudy, folder, *, force: bool = False, figures: bool = True, progress: bool | None = None,
           stop_after: tuple[int, int, str] | None = None) -> list[dict]:
    """Run (or resume) ``study`` in ``folder``; returns one summary row per (generation, run).

    The chain is :func:`opt_family` on the host executor (:func:`jaxcollapse.simulate` of
    a :func:`~jaxcollapse.programs.host_program`; runs fine-tuned and sampled one at a
    time, each stage saved as it ends under ``checkpoints/``). The engine's generation
    n >= 1 is the paper's (and this module's) generation n - 1; the engine's generation 0
    is D_0, the real training blocks. ``stop_after=(run, generation, stage)`` (stage
    ``"fit"``, ``"sample"`` or ``"score"``) returns right after that stage, as an
    interruption would (for tests).
    """
    return run_lm_checked(study, folder, force=force, figures=figures, progress=progress, stop_after=stop_after)[0]


def run_lm_checked(study: LMStudy, folder, *, force: bool = False, figures: bool = True,
                   progress: bool | None = None, stop_after: tuple[int, int, str] | None = None):
    """:func:`run_lm`'s summary rows and the theory rows it wrote to check.csv
    (:func:`check_rows`; none for a text corpus)."""
    with folder_lock(folder):  # one writer per run folder
        return _run_lm(study, folder, force=force, figures=figures, progress=progress, stop_after=stop_after)


def _run_lm(study, folder, *, force, figures, progress, stop_after):
    from ..engine import simulate
    from ..programs import host_program

    folder = Path(folder)
    blob = {"format_version": FORMAT_VERSION, "command": "lm", "study": study.to_json()}
    claim_run_folder(folder, blob, force=force)
    checkpoints = folder / "checkpoints"
    if force and checkpoints.exists():
        shutil.rmtree(checkpoints)
    setup = _Setup(study)
    atomic_bytes(folder / "model_config.json", (json.dumps(setup.config.to_hf_dict(), indent=1, sort_keys=True) + "\n").encode())
    real = jnp.asarray(setup.splits.train)
    count = len(setup.splits.train)

    def sample_initial(key, n):  # the real training blocks, in a random order
        return real[jax.random.permutation(key, count)[:n]]

    def on_stage(generation, stage, first, end):
        if stop_after is not None and (first, generation - 1, stage) == tuple(stop_after):
            raise _Stopped

    program = host_program(opt_family(study, setup, progress), study.policy, np.full(study.generations, count),
                           sample_initial, metrics=lambda generation: _scores(study, setup, generation, progress),
                           metric_names=_metric_names(setup), params_shape=_params_shape(study, setup),
                           chains_per_call=1, on_stage=on_stage)
    try:
        result = simulate(program, num_chains=study.runs, seed=study.seed, record="trajectories",
                          checkpoint=checkpoints, identity=study.to_json(), progress=progress is not False)
    except _Stopped:
        return [], []
    values = result.trajectories
    rows = [_row(study, setup, values, n, run) for n in range(1, study.generations + 1) for run in range(study.runs)]
    _write_summary(folder, rows)
    _write_decoded_samples(folder, setup, study.generations)
    check = check_rows(study, setup, values)
    atomic_text(folder / "check.csv", check_csv(check))
    if figures:
        from .figures import write_lm_figures

        scored = {n - 1: np.concatenate(list(values["synthetic_ppl"][n])) for n in range(1, study.generations + 1)}
        write_lm_figures(folder, rows, scored, study)
    return rows, check


def _row(study: LMStudy, setup: _Setup, values: dict, n: int, run: int) -> dict:
    row = {"generation": n - 1, "run": run, "train_blocks": int(len(setup.splits.train)),
           "real_blocks": int(values["real_blocks"][n, run]), "data_blocks": int(values["data_blocks"][n, run]),
           "test_perplexity": float(values["test_perplexity"][n, run]),
           "valid_perplexity": float(values["valid_perplexity"][n, run]),
           "best_epoch": int(values["best_epoch"][n, run]), "train_seconds": float(values["train_seconds"][n, run]),
           **_quantile_columns("synthetic_ppl", values["synthetic_ppl"][n, run])}
    if setup.language is not None:
        row.update(_quantile_columns("synthetic_true_ppl", values["synthetic_true_ppl"][n, run]))
        for name in ("synthetic_special_blocks", "source_perplexity", "lost_unigram_mass", "lost_trigram_mass",
                     "lost_tail_fraction"):
            row[name] = float(values[name][n, run])
    return row


def check_rows(study: LMStudy, setup: _Setup, values: dict) -> list[TheoryRow]:
    """The synthetic language's exact likelihoods against the run (none for a text corpus).

    * generation 0's data, the real blocks: their mean per-token log-loss under the true
      source is its entropy rate H exactly (every block is an independent stationary
      sequence, so every scored token has expected log-loss H); standard error over blocks;
    * every model's per-token cross-entropy on the real test blocks is at least H (no
      predictor beats the source on its own data: a lower bound); its standard error is
      over test blocks, each block's loss averaged over the runs first (the runs share
      the test blocks).
    """
    if setup.language is None:
        return []
    entropy = float(setup.language.entropy_rate)
    rows = []
    real = np.log(values["synthetic_true_ppl"][0, 0])  # the real blocks' per-token true log-loss
    error = real.std(ddof=1) / np.sqrt(real.size)
    rows.append(TheoryRow(0, "E[real_token_nll]", "entropy rate H", "exact", float(real.mean()), float(error), entropy,
                          float((real.mean() - entropy) / error) if error > 0 else float("nan")))
    for n in range(1, study.generations + 1):
        per_block = values["test_token_nll"][n].mean(axis=0)
        error = per_block.std(ddof=1) / np.sqrt(per_block.size) if per_block.size > 1 else float("nan")
        rows.append(TheoryRow(n - 1, "E[test_token_nll]", "entropy rate H", "lower bound", float(per_block.mean()),
                              float(error), entropy,
                              float((per_block.mean() - entropy) / error) if error > 0 else float("nan")))
    return rows
def export_model(folder, run: int, generation: int, destination) -> Path:
    """The model of ``run`` at ``generation`` (this module's numbering: 0 is the model
    fine-tuned on real data) of the run folder ``folder`` as a Hugging Face checkpoint
    folder (``config.json`` + ``model.safetensors``), which ``transformers`` and
    :func:`jaxcollapse.lm.checkpoint.load_opt` read. Returns ``destination``."""
    from flax import nnx
    from safetensors.numpy import load_file

    from ..host import _leaf_name
    from .checkpoint import save_opt
    from .opt import OPTConfig

    folder = Path(folder)
    config = OPTConfig.from_hf_dict(json.loads((folder / "model_config.json").read_text()))
    path = folder / "checkpoints" / f"generation_{generation + 1}" / f"params_{run}-{run + 1}.safetensors"
    if not path.is_file():
        raise ConfigError(f"no model of run {run} at generation {generation} in {folder} ({path.name} is missing: "
                          f"an unfinished run, or no such run or generation)")
    stored = load_file(str(path))
    model = nnx.eval_shape(lambda: OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    graph, state = nnx.split(model)
    template = nnx.to_pure_dict(state)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(stored["model/" + _leaf_name(key_path)][0])
                                                    for key_path, _ in leaves])
    nnx.replace_by_pure_dict(state, params)
    save_opt(destination, config, nnx.merge(graph, state))
    return Path(destination)


DECODED_BLOCKS = 16  # written blocks of run 0 kept as text per generation


def _write_decoded_samples(folder: Path, setup: _Setup, generations: int) -> None:
    """What the models wrote, readable: ``samples/generation_<g>.txt`` holds the first
    :data:`DECODED_BLOCKS` blocks run 0's generation-g model wrote (a text corpus's blocks
    decoded by its tokenizer, saved in ``tokenizer/``; the synthetic language's as its
    symbol ids)."""
    from .._integrity import load_npz

    if setup.tokenizer is not None:
        setup.tokenizer.save(folder / "tokenizer")
    for generation in range(1, generations + 1):
        path = folder / "checkpoints" / f"generation_{generation}" / "samples_0-1.npz"
        blocks = np.asarray(load_npz(path, "saved samples")["samples"])[0, :DECODED_BLOCKS]  # (runs, rows, L)
        if setup.tokenizer is not None:
            texts = setup.tokenizer.decode_batch(blocks)
        else:
            texts = [" ".join(str(int(token)) for token in block) for block in blocks]
        body = "".join(f"--- block {index} ---\n{text}\n" for index, text in enumerate(texts))
        atomic_text(folder / "samples" / f"generation_{generation - 1}.txt", body)


def _write_summary(folder: Path, rows: list[dict]) -> None:
    columns = list(rows[0])
    for row in rows[1:]:
        columns += [name for name in row if name not in columns]
    atomic_bytes(folder / "summary.csv", _csv(columns, rows))
    by_generation = []
    for generation in sorted({row["generation"] for row in rows}):
        values = np.array([row["test_perplexity"] for row in rows if row["generation"] == generation])
        medians = np.array([row["synthetic_ppl_q50"] for row in rows if row["generation"] == generation])
        by_generation.append({
            "generation": generation, "runs": len(values),
            "test_perplexity_mean": float(values.mean()),
            "test_perplexity_sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "test_perplexity_min": float(values.min()), "test_perplexity_max": float(values.max()),
            "synthetic_ppl_median_mean": float(medians.mean()),
        })
    atomic_bytes(folder / "summary_by_generation.csv", _csv(list(by_generation[0]), by_generation))


def _csv(columns: list[str], rows: list[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: row.get(name, "") for name in columns})
    return text.getvalue().encode()

