"""The recursive language-model pipeline: end to end through the CLI, resume, real-fraction
mixing, fine-tuning, bad input."""

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcollapse import ConfigError
from jaxcollapse.cli import main
from jaxcollapse.lm.runs import PARTIAL_BLOCKS, LMStudy, run_lm

FIXTURE = Path(__file__).parent / "fixtures" / "opt" / "pre_ln"
SMALL = dict(generations=2, epochs=1, train_blocks=16, eval_blocks=8, block_size=16, new_tokens=16, vocab=24,
             beams=2, batch_size=8, generation_batch=8)
TIMING = ("train_seconds",)


def _rows(path):
    with open(path) as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


CLI_SETTINGS = {**SMALL, "real_fraction": 0.25, "repetition_penalty": 2.0}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One CLI run shared by the tests that read it (a whole, uninterrupted run)."""
    out = tmp_path_factory.mktemp("lm") / "lm"
    flags = [f"--{name.replace('_', '-')}" for name in CLI_SETTINGS]
    argv = [item for flag, value in zip(flags, CLI_SETTINGS.values()) for item in (flag, str(value))]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["lm", *argv, "--out", str(out), "--no-progress"])
    return out, code, printed.getvalue()


def test_cli_runs_two_generations_on_the_synthetic_language(cli_run):
    out, code, printed = cli_run
    assert code == 0
    assert "test perplexity" in printed
    rows = _rows(out / "summary.csv")
    assert [(row["generation"], row["run"]) for row in rows] == [("0", "0"), ("1", "0")]
    for column in ("test_perplexity", "synthetic_ppl_q05", "synthetic_ppl_q50", "synthetic_ppl_q95",
                   "lost_trigram_mass", "source_perplexity"):
        assert all(np.isfinite(float(row[column])) for row in rows), column
    for row in rows:  # infinite (a special id written) or a true perplexity above 1
        assert 0 <= float(row["synthetic_special_blocks"]) <= 1
        assert float(row["synthetic_true_ppl_q05"]) <= float(row["synthetic_true_ppl_q50"])
        assert float(row["synthetic_true_ppl_q50"]) > 1
    # generation 0 trains on the 16 real blocks; generation 1 on the written ones with 25 % real
    assert [int(row["real_blocks"]) for row in rows] == [16, 4]
    source = float(rows[0]["source_perplexity"])
    assert 1 < source < 24  # a Zipfian source over 24 symbols
    for generation in (0, 1):  # the engine's generation 1 is the first model
        where = out / "checkpoints" / f"generation_{generation + 1}"
        written = np.load(where / "samples_0-1.npz", allow_pickle=False)["samples"]
        assert written.shape == (1, 16, 16) and written.dtype == np.int32
        assert written.min() >= 0 and written.max() < 24 + 2
        assert (where / "params_0-1.safetensors").is_file()
    assert json.loads((out / "model_config.json").read_text())["model_type"] == "opt"
    assert (out / "report.md").is_file() and (out / "check.csv").is_file()
    for name in ("figure10_test_perplexity.png", "figure14_synthetic_perplexity.png",
                 "figure15_synthetic_perplexity_3d.png", "true_perplexity.png", "lost_mass.png"):
        assert (out / name).stat().st_size > 1000, name


def test_a_generations_model_exports_as_a_hugging_face_checkpoint(cli_run, tmp_path):
    from jaxcollapse.lm.checkpoint import load_opt
    from jaxcollapse.lm.finetune import perplexity
    from jaxcollapse.lm.opt import functional
    from jaxcollapse.lm.runs import _Setup, export_model

    out = cli_run[0]
    export_model(out, run=0, generation=1, destination=tmp_path / "model")
    config, model = load_opt(tmp_path / "model")
    apply, params = functional(model)
    test = _Setup(LMStudy(**CLI_SETTINGS)).splits.test
    row = _rows(out / "summary.csv")[1]
    np.testing.assert_allclose(perplexity(apply, params, test), float(row["test_perplexity"]), rtol=1e-5)
    with pytest.raises(ConfigError, match="no model of run 3"):
        export_model(out, run=3, generation=0, destination=tmp_path / "none")


def test_every_data_policy_applies_to_the_language_model(tmp_path):
    """Under accumulate, generation 1 trains on the real blocks and the written ones."""
    rows = run_lm(LMStudy(**{**SMALL, "regime": "accumulate"}), tmp_path / "run", progress=False, figures=False)
    assert [(row["real_blocks"], row["data_blocks"]) for row in rows] == [(16, 16), (16, 32)]


def test_real_fraction_takes_exactly_the_right_number_of_real_blocks(tmp_path):
    """The language model's real fraction is the engine's real-fraction policy on blocks:
    round(F M) distinct real blocks, the rest written ones, derived from the key."""
    from jaxcollapse.lm.runs import _Setup
    from jaxcollapse.policies import data_program

    study = LMStudy(**{**SMALL, "real_fraction": 0.3})
    setup = _Setup(study)
    real = jnp.asarray(setup.splits.train)
    policy = data_program(study.policy, np.full(study.generations, len(real)))
    written = jnp.full_like(real, 25)  # an id no real block holds (the pad id)

    def blocks(key):
        _, _, state = policy.init(key, real, 16)
        data, weights, _ = policy.step(key, state, written, 16, None)
        return np.asarray(data), np.asarray(weights)

    data, weights = blocks(jax.random.key(3))
    assert data.shape == setup.splits.train.shape and weights.sum() == 16
    real_rows = [i for i in range(16) if (data[i] != 25).all()]
    assert len(real_rows) == round(0.3 * 16) == 5
    train = {tuple(row) for row in setup.splits.train}
    assert all(tuple(data[i]) in train for i in real_rows)
    assert len({tuple(data[i]) for i in real_rows}) == 5  # distinct blocks
    np.testing.assert_array_equal(data, blocks(jax.random.key(3))[0])  # derived from the key
    assert not np.array_equal(data, blocks(jax.random.key(4))[0])


def test_an_interrupted_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, cli_run):
    whole = cli_run[0]
    study = LMStudy(**CLI_SETTINGS)
    broken = tmp_path / "broken"
    run_lm(study, broken, progress=False, figures=False, stop_after=(0, 1, "fit"))
    assert not (broken / "checkpoints" / "generation_2" / "samples_0-1.npz").exists()
    model_file = broken / "checkpoints" / "generation_2" / "params_0-1.safetensors"
    stamp = model_file.stat().st_mtime_ns
    rows = run_lm(study, broken, progress=False, figures=False)
    assert model_file.stat().st_mtime_ns == stamp  # the finished fine-tuning was not redone
    assert _rows(broken / "summary.csv") == _rows(whole / "summary.csv")
    assert (broken / "check.csv").read_bytes() == (whole / "check.csv").read_bytes()
    from safetensors.numpy import load_file

    for generation in (1, 2):
        name = f"checkpoints/generation_{generation}/samples_0-1.npz"
        assert (broken / name).read_bytes() == (whole / name).read_bytes()
        name = f"checkpoints/generation_{generation}/params_0-1.safetensors"
        resumed, uninterrupted = load_file(broken / name), load_file(whole / name)
        assert resumed.keys() == uninterrupted.keys()
        for leaf in set(resumed) - {"seconds"}:  # the fine-tuning's wall-clock time aside
            np.testing.assert_array_equal(resumed[leaf], uninterrupted[leaf])
    assert len(rows) == 2


@pytest.mark.parametrize("decoding", ["beam", pytest.param("sample", marks=pytest.mark.slow)])
def test_generation_resumes_from_its_saved_batches(tmp_path, decoding):
    study = LMStudy(**{**SMALL, "decoding": decoding})
    whole = tmp_path / "whole"
    run_lm(study, whole, progress=False, figures=False, stop_after=(0, 0, "sample"))
    partial = tmp_path / "partial"
    run_lm(study, partial, progress=False, figures=False, stop_after=(0, 0, "fit"))
    where = partial / "checkpoints" / "generation_1"
    full = np.load(whole / "checkpoints" / "generation_1" / "samples_0-1.npz")["samples"][0]
    scratch = where / "partial_sample_0-1"
    scratch.mkdir()
    np.save(scratch / PARTIAL_BLOCKS, full[:8])  # as if killed after the first batch
    run_lm(study, partial, progress=False, figures=False, stop_after=(0, 0, "sample"))
    np.testing.assert_array_equal(np.load(where / "samples_0-1.npz")["samples"][0], full)
    assert not scratch.exists()


@pytest.mark.slow  # 10 s; loading a Hugging Face folder is tested by default in test_lm_opt.py
def test_a_checkpoint_folder_is_the_base_model(tmp_path):
    study = LMStudy(**{**SMALL, "model": str(FIXTURE), "generations": 1})
    rows = run_lm(study, tmp_path / "run", progress=False, figures=False)
    assert rows[0]["generation"] == 0 and np.isfinite(rows[0]["test_perplexity"])
    saved = json.loads((tmp_path / "run" / "model_config.json").read_text())
    assert saved["model_type"] == "opt" and saved["vocab_size"] == 128


def test_finetuning_keeps_the_best_epoch_and_lowers_the_loss():
    from flax import nnx

    from jaxcollapse.lm.finetune import FinetuneConfig, finetune, perplexity
    from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM, functional

    config = OPTConfig.preset("tiny", vocab_size=16, max_position_embeddings=64)
    apply, params = functional(OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    blocks = np.tile((np.arange(12, dtype=np.int32) % 5) + 3, (24, 1))
    before = perplexity(apply, params, blocks)
    tuned, history = finetune(jax.random.key(0), apply, params, blocks, blocks[:4],
                              FinetuneConfig(epochs=4, batch_size=10, learning_rate=3e-3))
    after = perplexity(apply, tuned, blocks[:4])
    assert after < before / 2
    best = int(np.argmin(history["valid_loss"]))
    assert history["best_epoch"] == best + 1
    assert np.isclose(np.log(after), history["valid_loss"][best], rtol=1e-5)
    assert len(history["train_loss"]) == 4


@pytest.mark.parametrize("chunk_rows", [13, pytest.param(18, marks=pytest.mark.slow)])
def test_a_training_step_in_chunks_equals_one_pass(monkeypatch, chunk_rows):
    import optax
    from flax import nnx

    from jaxcollapse.lm import finetune as finetune_module
    from jaxcollapse.lm.opt import OPTConfig, OPTForCausalLM, functional

    config = OPTConfig.preset("tiny", vocab_size=32, max_position_embeddings=64)
    apply, params = functional(OPTForCausalLM(config, rngs=nnx.Rngs(0)))
    blocks = jax.random.randint(jax.random.key(1), (36, 12), 3, 32)
    weights = jnp.ones(36).at[jnp.array([5, 30])].set(0.0)

    def one_step(chunk_rows, dropout=False):
        monkeypatch.setattr(finetune_module, "train_chunk_rows", lambda rows: chunk_rows)
        optimizer = optax.sgd(1.0)  # the new parameters are the old minus the gradient
        step = finetune_module.make_train_step(apply, optimizer, dropout=dropout)
        copy = jax.tree.map(jnp.array, params)  # the step donates its inputs
        new, _, loss = step(copy, optimizer.init(copy), blocks, weights, jax.random.key(2))
        return loss, new

    whole_loss, whole = one_step(None)
    # 18: two lanes of one chunk each; 13: three chunks, one waiting, the last uneven
    loss, new = one_step(chunk_rows)
    np.testing.assert_allclose(loss, whole_loss, rtol=1e-5)
    for a, b, p in zip(jax.tree.leaves(new), jax.tree.leaves(whole), jax.tree.leaves(params)):
        np.testing.assert_allclose(a - p, b - p, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b - p))) + 1e-9)
    if chunk_rows == 18:  # dropout in chunks: with the slow case (a third compilation)
        dropped, _ = one_step(chunk_rows, dropout=True)
        assert np.isfinite(dropped) and dropped != loss
    monkeypatch.undo()
    if jax.default_backend() == "cpu":
        from jaxcollapse.lm.finetune import train_chunk_rows
        assert [train_chunk_rows(rows) for rows in (8, 31, 32, 33, 128)] == [None, None, 16, 17, 64]


@pytest.mark.parametrize("change, match", [
    (dict(model="no/such/folder"), "local OPT checkpoint folder"),
    (dict(real_fraction=1.5), r"real_fraction must lie in \[0, 1\]"),
    (dict(epochs=0), "epochs"),
    (dict(batch_size=0), "batch_size"),
    (dict(block_size=1), "block_size"),
    (dict(decoding="nucleus"), "decoding"),
    (dict(temperature=0.5), "temperature only applies"),
    (dict(new_tokens=12), "new_tokens must equal block_size"),
    (dict(regime="accumulate", real_fraction=0.1), "not both"),
    (dict(regime="mix:1,2"), "three proportions"),
])
def test_bad_settings_are_named(change, match):
    with pytest.raises(ConfigError, match=match):
        LMStudy(**{**SMALL, **change})


def test_a_block_longer_than_the_context_is_refused(tmp_path):
    study = LMStudy(**{**SMALL, "model": str(FIXTURE), "block_size": 40, "new_tokens": 40})
    with pytest.raises(ConfigError, match="exceeds the model's context"):
        run_lm(study, tmp_path / "run", progress=False)


def test_an_empty_corpus_is_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        run_lm(LMStudy(**{**SMALL, "corpus": str(empty)}), tmp_path / "run", progress=False)


def test_a_checkpoint_that_is_not_opt_is_refused(tmp_path):
    folder = tmp_path / "gpt2"
    shutil.copytree(FIXTURE, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "gpt2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="not an OPT"):
        run_lm(LMStudy(**{**SMALL, "model": str(folder)}), tmp_path / "run", progress=False)


def test_the_paper_preset_needs_a_checkpoint(capsys):
    assert main(["lm", "--preset", "paper-10pct-real", "--out", "unused"]) == 2
    assert "pass --model DIR" in capsys.readouterr().err


def test_figure_titles_say_how_the_blocks_were_written():
    import dataclasses

    from jaxcollapse.lm.figures import _decoding
    from jaxcollapse.lm.runs import LMStudy

    study = LMStudy()
    assert _decoding(dataclasses.replace(study, decoding="beam", beams=5)) == "beam search, 5 beams"
    assert _decoding(dataclasses.replace(study, decoding="sample", beams=5, temperature=0.7)) == (
        "sampled at temperature 0.7")  # not "5 beams": a sampled run uses none
    assert _decoding(dataclasses.replace(study, decoding="greedy")) == "greedy decoding"


def test_the_written_blocks_are_kept_readable(cli_run):
    """samples/generation_<g>.txt: the first blocks run 0's generation-g model wrote (the
    synthetic language's symbol ids), the same numbers as its saved samples."""
    out, code, _ = cli_run
    assert code == 0
    for generation in (0, 1):
        written = np.load(out / "checkpoints" / f"generation_{generation + 1}" / "samples_0-1.npz")["samples"][0]
        text = (out / "samples" / f"generation_{generation}.txt").read_text()
        blocks = [line for line in text.splitlines() if not line.startswith("--- block")]
        assert [[int(token) for token in line.split()] for line in blocks] == written[:16].tolist()


@pytest.mark.slow  # 10 s: a BPE tokenizer trained and an OPT fine-tuned on a text file
def test_a_text_corpus_run_keeps_its_tokenizer_and_decoded_samples(tmp_path):
    import random

    from jaxcollapse.lm.data import load_checkpoint_tokenizer

    rng = random.Random(0)
    words = ["the", "model", "data", "collapse", "tail", "mode", "sample", "train", "real", "fake"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(" ".join(rng.choice(words) for _ in range(12)) + "\n" for _ in range(400)))
    study = LMStudy(**{**SMALL, "generations": 1, "vocab": 300, "corpus": str(corpus)})
    run_lm(study, tmp_path / "run", progress=False, figures=False)
    tokenizer = load_checkpoint_tokenizer(tmp_path / "run" / "tokenizer")
    written = np.load(tmp_path / "run" / "checkpoints" / "generation_1" / "samples_0-1.npz")["samples"][0]
    text = (tmp_path / "run" / "samples" / "generation_0.txt").read_text()
    assert text.startswith("--- block 0 ---\n") and text.count("--- block") == 16
    assert tokenizer.decode(written[0]) in text  # the saved tokenizer decodes what the model wrote
