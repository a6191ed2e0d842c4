"""The ``lm`` study command: an OPT language model fine-tuned on its own text (paper
section 5.2, Figures 10, 11, 14, 15). The language-model modules load on first use.

Examples:
    >>> study, settings = COMMAND.build(COMMAND.values({"generations": 2, "beams": 1}))
    >>> study.model, study.generations, study.beams
    ('tiny', 2, 1)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._validation import ConfigError
from .base import (
    HostSettings, Option, RunOutcome, StudyCommand, host_run_options, host_settings_from_config, write_host_report,
)

__all__ = ["COMMAND"]

REPORT_COLUMNS = ["generation", "run", "test_perplexity", "valid_perplexity", "synthetic_ppl_q50",
                  "synthetic_true_ppl_q50", "lost_trigram_mass", "real_blocks"]

# flags whose value None means "the preset's, else LMStudy's default", by the study's field names
_STUDY_FLAGS = {
    "model": "model", "corpus": "corpus", "generations": "generations", "runs": "runs", "epochs": "epochs",
    "real_fraction": "real_fraction", "beams": "beams", "repetition_penalty": "repetition_penalty",
    "decoding": "decoding", "temperature": "temperature", "block_size": "block_size", "new_tokens": "new_tokens",
    "batch_size": "batch_size", "lr": "learning_rate", "train_blocks": "train_blocks",
    "eval_blocks": "eval_blocks", "vocab": "vocab", "generation_batch": "generation_batch", "seed": "seed",
    "regime": "regime",
}


def _build(values: dict):
    from ..lm.runs import PRESETS, LMStudy

    settings = {}
    if values["preset"] is not None:
        if values["preset"] not in PRESETS:
            raise ConfigError(f"--preset must be one of {tuple(PRESETS)}; got {values['preset']!r}")
        settings.update(PRESETS[values["preset"]])
    given = {field: values[flag] for flag, field in _STUDY_FLAGS.items() if values[flag] is not None}
    if values["preset"] is not None and given.get("corpus") == "synthetic":
        given.pop("corpus")  # the preset's corpus unless one is named
    for cap in ("train_blocks", "eval_blocks"):
        if given.get(cap) == 0:
            given[cap] = None  # 0: no cap
    settings.update(given)
    if values["preset"] is not None and settings["model"] in ("tiny", "small"):
        raise ConfigError(f"--preset {values['preset']} fine-tunes a pretrained OPT: pass --model DIR, a folder with "
                          f"facebook/opt-125m's config.json, model.safetensors, vocab.json and merges.txt")
    return LMStudy(**settings), HostSettings(progress=False if values["no_progress"] else None)


def _from_json(blob: dict):
    from ..lm.runs import LMStudy

    return LMStudy.from_json(blob)


def _run(study, settings: HostSettings, folder, *, force: bool = False, figures: bool = True) -> RunOutcome:
    from ..lm.runs import run_lm_checked

    rows, check = run_lm_checked(study, folder, force=force, figures=figures, progress=settings.progress)
    report = write_host_report(folder, "jaxcollapse language-model study", study, rows, REPORT_COLUMNS, check)
    last = [row for row in rows if row["generation"] == study.generations - 1]
    first = [row for row in rows if row["generation"] == 0]
    return RunOutcome({"report": report, "check": Path(folder) / "check.csv"}, check, (
        f"generation {study.generations - 1}: test perplexity {np.mean([r['test_perplexity'] for r in last]):.2f} "
        f"(generation 0: {np.mean([r['test_perplexity'] for r in first]):.2f})",
        f"wrote summary.csv, report.md, runs/ (models, written blocks, metrics) and figures to {folder}",
    ))


def _programs_inline():
    # an OPT-125m training step's 814 MB of temporaries from the kept main heap, not mmapped
    # afresh at every step: 10-17 % faster (jaxcollapse.heap); process-wide, so only the CLI asks
    from .._xla_cpu.heap import run_cpu_programs_inline

    return run_cpu_programs_inline()


COMMAND = StudyCommand(
    name="lm",
    help="an OPT language model fine-tuned on its own text (paper section 5.2, Figures 10, 11, 14, 15)",
    options=(
        Option("model", "tiny", "tiny | small (random OPT presets) | DIR (a local Hugging Face OPT checkpoint: "
               "config.json, model.safetensors, tokenizer files)"),
        Option("corpus", "synthetic", "synthetic (built-in Markov language, exact likelihoods) | wikitext2 (cached or "
               "reachable) | PATH (a text file or a folder of them)"),
        Option("preset", None, "paper-no-real | paper-10pct-real: the paper's settings for OPT-125m on wikitext-2 "
               "(use with --model DIR, on a GPU); other flags given override them"),
        Option("generations", None, "fitted generations G, as for every command (default 3); the rows number "
               "them from 0, the paper's numbering for its language-model figures: 0 is fine-tuned on real data", int),
        Option("runs", None, "independent runs (default 1)", int),
        Option("epochs", None, "fine-tuning epochs per generation (default 5)", int),
        Option("real_fraction", None, "share of each later generation's blocks replaced by random real blocks "
               "(default 0; the same as --regime real-fraction:F)", float),
        Option("regime", None, "data policy: replace (default) | accumulate | accumulate-subsample | real-fraction:F | "
               "fresh-real:F | mix:A,B,G (fresh real blocks are drawn from the real training blocks)"),
        Option("beams", None, "beam search width; 1 = greedy (default 5)", int),
        Option("repetition_penalty", None, "Hugging Face's (default 1: none)", float),
        Option("decoding", None, "beam (the paper's, --beams wide) | greedy | sample (ancestral sampling at "
               "--temperature) (default beam)"),
        Option("temperature", None, "for --decoding sample (default 1)", float),
        Option("block_size", None, "tokens per block (default 64)", int),
        Option("new_tokens", None, "tokens written per prompt (default 64)", int),
        Option("batch_size", None, "fine-tuning batch (default 32)", int),
        Option("lr", None, "AdamW learning rate, cosine schedule (default 1e-3 for presets, 2e-5 for a checkpoint)",
               float),
        Option("train_blocks", None, "cap on real training blocks (default 512; 0 = all)", int),
        Option("eval_blocks", None, "cap on validation and test blocks (default 64; 0 = all)", int),
        Option("vocab", None, "symbols of the synthetic language, or BPE vocabulary for a preset model (default 16)",
               int),
        Option("generation_batch", None, "prompts per generation call (default 16)", int),
        Option("seed", None, "", int),
        Option("check", False, "print the theory check (synthetic corpus: the source's exact entropy rate against "
               "the real blocks and, as a lower bound, every model's test cross-entropy)", None),
    ) + host_run_options("results/lm"),
    build=_build,
    from_json=_from_json,
    settings_from_config=host_settings_from_config,
    run=_run,
    chains=False,
    prepare=_programs_inline,
    rank=5,
)
