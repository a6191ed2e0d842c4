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
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._files import atomic_bytes, claim_run_folder
from .._validation import ConfigError, require_choice, require_int, require_positive
from .data import BlockSplits, load_checkpoint_tokenizer, load_corpus, numpy_rng, sample_real_fraction
from .data import tokenize_corpus, train_bpe_tokenizer
from .finetune import FinetuneConfig, finetune, perplexity, score_blocks
from .generate import GenerationConfig, generate
from .opt import OPTConfig, OPTForCausalLM, decoder_fns, functional
from .synthetic import SyntheticLanguage, synthetic_corpus

__all__ = ["LMStudy", "run_lm", "PRESETS", "QUANTILES", "study_preset"]

MODEL_PRESETS = ("tiny", "small")
DECODINGS = ("beam", "greedy", "sample")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
FORMAT_VERSION = 1


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

    command: ClassVar[str] = "lm"

    def __post_init__(self):
        require_int("generations", self.generations, 1)
        require_int("runs", self.runs, 1)
        require_int("epochs", self.epochs, 1)
        require_int("beams", self.beams, 1)
        require_int("block_size", self.block_size, 2)
        require_int("new_tokens", self.new_tokens, 2)
        require_int("batch_size", self.batch_size, 1)
        require_int("generation_batch", self.generation_batch, 1)
        require_int("vocab", self.vocab, 2)
        require_int("seed", self.seed, 0)
        require_positive("repetition_penalty", self.repetition_penalty)
        require_choice("decoding", self.decoding, DECODINGS)
        require_positive("temperature", self.temperature)
        if self.decoding != "sample" and self.temperature != 1.0:
            raise ConfigError(f"temperature only applies to decoding='sample'; got decoding={self.decoding!r}")
        if not 0.0 <= self.real_fraction <= 1.0:
            raise ConfigError(f"real_fraction must lie in [0, 1]; got {self.real_fraction!r}")
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
        return cls(**blob)

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


# ---------------------------------------------------------------------------- files

def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_bytes(path, buffer.getvalue())


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _save_model(folder: Path, setup: _Setup, params) -> None:
    from flax import nnx

    from .checkpoint import save_opt

    staging = folder.with_name(f".{folder.name}.partial")
    if staging.exists():
        for stale in staging.iterdir():
            stale.unlink()
    model = nnx.merge(nnx.split(setup.graph_model)[0], params)
    save_opt(staging, setup.config, model)
    if folder.exists():
        for stale in folder.iterdir():
            stale.unlink()
        folder.rmdir()
    os.replace(staging, folder)


def _load_params(folder: Path):
    from .checkpoint import load_opt

    return functional(load_opt(folder)[1])[1]  # the same parameter tree as the setup's


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


def _write_blocks(setup: _Setup, study: LMStudy, params, path: Path, meter, key) -> np.ndarray:
    """Continue every real training block by ``new_tokens`` tokens, saving finished batches
    (``.partial.npy``) so that an interrupted generation resumes where it stopped (sampling
    keys derive from the batch's first block, so a resumed batch draws what it would have)."""
    prompts = setup.splits.train
    batch = min(study.generation_batch, len(prompts))
    partial = path.with_name(path.stem + ".partial.npy")
    done = _load_npy(partial) if partial.is_file() else np.zeros((0, study.new_tokens), np.int32)
    last_save = time.perf_counter()
    meter = _Meter(meter)
    for first in range(len(done), len(prompts), batch):
        chunk = prompts[first:first + batch]
        rows = len(chunk)
        if rows < batch:  # one compiled shape: pad the last batch with copies
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - rows, axis=0)])
        new = generate(setup.decoder, params, jnp.asarray(chunk), config=setup.generation,
                       key=jax.random.fold_in(key, first) if study.decoding == "sample" else None).tokens
        done = np.concatenate([done, np.asarray(new, np.int32)[:rows]])
        meter("  generating", len(done), len(prompts), "blocks")
        if time.perf_counter() - last_save > 30 or len(done) == len(prompts):
            _save_npy(partial, done)
            last_save = time.perf_counter()
    _save_npy(path, done)
    partial.unlink(missing_ok=True)
    return done


def _stage_key(study: LMStudy, run: int, generation: int):
    """The key of one (run, generation): fine-tuning takes fold_in(., 0), sampling fold_in(., 1)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(study.seed), run), generation)


def _training_blocks(study: LMStudy, setup: _Setup, run: int, generation: int, previous: np.ndarray | None):
    real = setup.splits.train
    if generation == 0:
        return real, len(real)
    if study.real_fraction == 0:
        return previous, 0
    mix = sample_real_fraction(numpy_rng(study.seed, 1, run, generation), real, previous, study.real_fraction)
    return mix.blocks, int(mix.is_real.sum())


def _quantile_columns(prefix: str, values: np.ndarray) -> dict:
    """Mean over the finite values, quantiles over all (inverted-CDF: an infinite perplexity,
    a block the true source cannot produce, stays infinite instead of making NaNs)."""
    finite = values[np.isfinite(values)]
    columns = {f"{prefix}_mean": float(np.mean(finite)) if finite.size else float("nan")}
    for q in QUANTILES:
        columns[f"{prefix}_q{int(round(q * 100)):02d}"] = float(np.quantile(values, q, method="inverted_cdf"))
    return columns


def _metrics(study: LMStudy, setup: _Setup, run: int, generation: int, params, first_params, written: np.ndarray,
             history: dict, real_count: int) -> dict:
    apply = setup.apply
    scored = np.exp(score_blocks(apply, first_params, written) / (written.shape[1] - 1))
    row = {
        "generation": generation, "run": run, "train_blocks": int(len(setup.splits.train)),
        "real_blocks": real_count,
        "test_perplexity": perplexity(apply, params, setup.splits.test),
        "valid_perplexity": float(np.exp(min(history["valid_loss"]))),
        "best_epoch": int(history["best_epoch"]),
        "train_seconds": float(history["seconds"]),
        **_quantile_columns("synthetic_ppl", scored),
    }
    if setup.language is not None:
        language = setup.language
        # ids the source never emits (its bos/eos and pad, or a checkpoint's larger vocabulary)
        # have probability 0 under it: map them all to one special id
        written = np.where(written >= language.vocab_size, language.vocab_size, written)
        whole = np.concatenate([setup.splits.train, written], axis=1)
        true = language.true_perplexity(whole, prompt_length=setup.splits.train.shape[1])
        lost = language.lost_mass(written)
        row.update(_quantile_columns("synthetic_true_ppl", true))
        row["synthetic_special_blocks"] = float(np.mean(np.any(written >= language.vocab_size, axis=1)))
        row.update(source_perplexity=float(language.perplexity), lost_unigram_mass=float(lost.unigram),
                   lost_trigram_mass=float(lost.trigram), lost_tail_fraction=float(lost.tail_lost_fraction))
    return row, scored


def run_lm(study: LMStudy, folder, *, force: bool = False, figures: bool = True, progress: bool | None = None,
           stop_after: tuple[int, int, str] | None = None) -> list[dict]:
    """Run (or resume) ``study`` in ``folder``; returns one summary row per (generation, run).

    ``stop_after=(run, generation, stage)`` (stage ``"fit"``, ``"sample"`` or ``"score"``)
    returns right after that stage, as an interruption would (for tests).
    """
    folder = Path(folder)
    blob = {"format_version": FORMAT_VERSION, "command": "lm", "study": study.to_json()}
    claim_run_folder(folder, blob, force=force)
    if force and (folder / "runs").exists():
        import shutil

        shutil.rmtree(folder / "runs")

    setup = _Setup(study)
    tune = study.finetune_config()
    rows, scored_by_generation = [], {}
    for run in range(study.runs):
        first_params, written = None, None
        for generation in range(study.generations):
            where = folder / "runs" / f"run_{run}" / f"generation_{generation}"
            metrics_path, model_path, blocks_path = where / "metrics.json", where / "model", where / "synthetic.npy"
            if metrics_path.is_file():  # finished: nothing is redone
                row = json.loads(metrics_path.read_text())
                written = _load_npy(blocks_path)
                rows.append(row)
                scored_by_generation.setdefault(generation, []).append(_load_npy(where / "synthetic_ppl.npy"))
                if first_params is None:
                    first_params = _load_params(model_path)
                continue
            train_blocks, real_count = _training_blocks(study, setup, run, generation, written)
            if (model_path / "model.safetensors").is_file():
                params = _load_params(model_path)
                history = json.loads((where / "history.json").read_text())
            else:
                if progress is not False:
                    print(f"run {run}, generation {generation}: fine-tuning on {len(train_blocks)} blocks "
                          f"({real_count} real)", file=sys.stderr, flush=True)
                meter = _Meter(progress)
                params, history = finetune(
                    jax.random.fold_in(_stage_key(study, run, generation), 0),
                    setup.apply, setup.base, train_blocks, setup.splits.valid, tune,
                    on_step=lambda done, total, loss: meter("  training", done, total, "steps",
                                                            f" loss {loss:.3f}"))
                atomic_bytes(where / "history.json", (json.dumps(history, indent=1) + "\n").encode())
                _save_model(model_path, setup, params)
            if stop_after == (run, generation, "fit"):
                return rows
            if first_params is None:
                first_params = params
            sample_key = jax.random.fold_in(_stage_key(study, run, generation), 1)
            written = _load_npy(blocks_path) if blocks_path.is_file() else _write_blocks(
                setup, study, params, blocks_path, progress, sample_key)
            if stop_after == (run, generation, "sample"):
                return rows
            row, scored = _metrics(study, setup, run, generation, params, first_params, written, history, real_count)
            _save_npy(where / "synthetic_ppl.npy", scored)
            atomic_bytes(metrics_path, (json.dumps(row, indent=1) + "\n").encode())
            rows.append(row)
            scored_by_generation.setdefault(generation, []).append(scored)
            if progress is not False:
                print(f"run {run}, generation {generation}: test perplexity {row['test_perplexity']:.2f}, "
                      f"synthetic perplexity (generation-0 model) median {row['synthetic_ppl_q50']:.2f}",
                      file=sys.stderr, flush=True)
            if stop_after == (run, generation, "score"):
                return rows
    rows.sort(key=lambda row: (row["generation"], row["run"]))
    _write_summary(folder, rows)
    if figures:
        from .figures import write_lm_figures

        write_lm_figures(folder, rows, {g: np.concatenate(v) for g, v in scored_by_generation.items()}, study)
    return rows


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

