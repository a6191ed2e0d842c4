"""Nothing silently wrong, nothing lost (issue 23): each case a review found, tested.

Cases so far: a sweep's cell folders stay inside OUT/cells whatever the TOML keys say; a
run refused for an unfinished run of other settings leaves that run's folder untouched
(it stays resumable); a discrete chain over more than 64 states (per-state records off)
is checked on the formulas it records."""

import json

import pytest

from jaxcollapse import ConfigError, _checkpoint
from jaxcollapse.cli import main
from jaxcollapse.sweep import load_sweep, run_sweep


class _Stop(Exception):
    pass


def test_a_sweep_key_cannot_put_a_cell_outside_its_folder(tmp_path):
    victim = tmp_path / "victim"
    config = tmp_path / "sweep.toml"
    config.write_text('command = "gaussian"\n[base]\nchains = 16\ngenerations = 2\n'
                      f'[grid]\n"samples=/../../../../../{victim}/x" = [10]\n')
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        run_sweep(config, tmp_path / "out")
    assert not victim.exists() and not (tmp_path / "out").exists()
    # a legitimate key with a value full of separators still names a folder inside cells/
    config.write_text('command = "gaussian"\n[base]\nchains = 16\ngenerations = 2\n'
                      '[grid]\nschedule = ["list:5,6/../../x"]\n')
    with pytest.raises(ConfigError):  # the schedule itself is refused, and the name is clean
        load_sweep(config)
    from jaxcollapse.sweep import SweepCell, _cell_folder

    with pytest.raises(ConfigError, match="does not make a folder inside"):
        _cell_folder(tmp_path / "out", SweepCell("../escape", {}, {}))
    assert _cell_folder(tmp_path / "out", SweepCell("000-a=1", {}, {})) == tmp_path / "out" / "cells" / "000-a=1"


def test_a_refused_run_leaves_the_unfinished_run_resumable(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    original, counter = _checkpoint.save, [0]

    def save(path, identity, state):  # Ctrl-C right after the first checkpoint
        original(path, identity, state)
        counter[0] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(_checkpoint, "save", save)
    argv = ["gaussian", "--chains", "32", "--generations", "30", "--samples", "10", "--checkpoint-every", "10",
            "--out", str(out), "--no-figures", "--no-progress"]
    assert main(argv) == 130
    assert f"`jaxcollapse resume {out}`" in capsys.readouterr().err
    monkeypatch.setattr(_checkpoint, "save", original)
    config = (out / "config.json").read_bytes()
    checkpoint = (out / "checkpoint.npz").read_bytes()
    # another run pointed at the folder: refused, and nothing of the first is touched
    assert main(argv[:-4] + ["--seed", "5"] + argv[-4:]) == 2
    assert "run.seed differ" in capsys.readouterr().err
    assert (out / "config.json").read_bytes() == config and (out / "checkpoint.npz").read_bytes() == checkpoint
    assert main(["gaussian", "--chains", "32", "--generations", "30", "--samples", "11", "--out", str(out)]) == 2
    assert "study differ" in capsys.readouterr().err
    # the interrupted run resumes, and a display setting (progress) is no other run
    assert main(argv[:-1]) == 0
    assert (out / "summary.csv").is_file() and json.loads((out / "config.json").read_text())["run"]["seed"] == 0


def test_a_discrete_chain_over_65_states_checks_what_it_records(tmp_path, capsys):
    out = tmp_path / "d65"
    assert main(["discrete", "--states", "65", "--chains", "32", "--generations", "3", "--samples", "20",
                 "--out", str(out), "--check", "--no-figures"]) == 0
    check = (out / "check.csv").read_text()
    assert "E[support]" in check and "state_p" not in check
    assert (out / "summary.csv").is_file() and not (out / "states.csv").exists()
    assert "AGREES" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the CLI's one error boundary

@pytest.mark.parametrize("raised, code, said", [
    (RuntimeError("boom"), 1, "internal error (a bug, please report it): RuntimeError: boom"),
    (KeyboardInterrupt(), 130, "interrupted; every finished stage is kept"),
    (MemoryError(), 2, "out of memory; lower --chunk-size"),
    (OSError(28, "No space left on device", "summary.csv"), 2, "cannot use summary.csv: No space left on device"),
])
def test_the_cli_answers_every_failure_in_one_line(tmp_path, monkeypatch, capsys, raised, code, said):
    from jaxcollapse import runs

    def fail(*args, **kwargs):
        (tmp_path / "run").mkdir(exist_ok=True)
        raise raised

    monkeypatch.setattr(runs, "run_command", fail)
    assert main(["gaussian", "--chains", "16", "--out", str(tmp_path / "run")]) == code
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    if code == 1:  # the traceback is kept in the run folder, and the message says where
        log = tmp_path / "run" / "error.log"
        assert str(log) in err and "RuntimeError: boom" in log.read_text()


def test_an_out_path_through_a_file_is_named(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    assert main(["gaussian", "--chains", "16", "--generations", "2", "--out", str(blocker / "sub")]) == 2
    assert "Not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------- limits before work

@pytest.mark.parametrize("change, match", [
    (dict(learning_rate=-1.0), "learning_rate must be > 0"),
    (dict(learning_rate=float("nan")), "learning_rate must be finite"),
    (dict(final_learning_rate=0.0), "final_learning_rate must be > 0"),
    (dict(zipf_exponent=-1.0), "zipf_exponent must be >= 0"),
    (dict(zipf_exponent=float("nan")), "zipf_exponent must be finite"),
    (dict(block_size=10**9, new_tokens=10**9), r"block_size must be an integer >= 2 and <= 2048"),
    (dict(beams=10**6), r"beams must be an integer >= 1 and <= 64"),
    (dict(vocab=1000), r"vocab must be an integer >= 2 and <= 256 for the synthetic language"),
])
def test_language_model_settings_out_of_range_are_named(change, match):
    from jaxcollapse.lm.runs import LMStudy

    with pytest.raises(ConfigError, match=match):
        LMStudy(**change)


def test_a_vae_that_cannot_fit_in_memory_is_refused_before_work(tmp_path, capsys):
    assert main(["vae", "--dataset", "digits", "--latent", "1000000000", "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "this VAE run needs about" in err and "GiB of memory" in err and "--latent" in err
    assert not (tmp_path / "v" / "checkpoints").exists()


# ---------------------------------------------------------------------------- the Python API's types

@pytest.mark.parametrize("factory, kwargs, match", [
    ("gaussian_study", dict(regime=None), "regime must be a DataPolicy or its spelling"),
    ("gaussian_study", dict(schedule=5), "schedule must be a Schedule, its spelling"),
    ("gaussian_study", dict(sigma="abc"), "sigma must be a number"),
    ("gaussian_study", dict(sigma=[1, 2]), "sigma must be one number"),
    ("gaussian_study", dict(dim=2, mean=[0, 0, 0]), "mean must be a number or a vector of length dim = 2"),
    ("gaussian_study", dict(sigma=1e300), r"sigma must lie in \[1e-15, 1e\+15\]"),
    ("gaussian_study", dict(sigma=1e30), r"sigma must lie in \[1e-15, 1e\+15\]"),
    ("gaussian_study", dict(mean=1e39), r"mean must lie in \[-1e\+15, 1e\+15\]"),
    ("gmm_study", dict(p0=None), "p0 must be two-blobs"),
    ("discrete_study", dict(init=None), "init must be a string"),
    ("regression_study", dict(regime=None), "regression chains support the regimes"),
])
def test_study_factories_name_wrong_types_and_ranges(factory, kwargs, match):
    import jaxcollapse as jc

    with pytest.raises(ConfigError, match=match):
        getattr(jc, factory)(**kwargs)


def test_natural_spellings_are_accepted():
    import jaxcollapse as jc

    study = jc.gaussian_study(samples=10, schedule=[10, 20, 30], generations=3.0)
    assert study.generations == 3 and isinstance(study.generations, int)
    assert study.schedule.sizes(3).tolist() == [10, 20, 30]
    with pytest.raises(ConfigError, match="program must be a ChainProgram"):
        jc.simulate("x", num_chains=2)


# ---------------------------------------------------------------------------- saved state is verified

def _corruptions(path):
    """Ways a saved file can go wrong: each writes the damaged file in place."""
    original = path.read_bytes()
    pickled = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01."  # pickle.dumps(1)

    def flip(where):
        data = bytearray(original)
        data[where % len(data)] ^= 0x40
        return bytes(data)

    return {
        "truncated": original[: len(original) // 2],
        "empty": b"",
        "flipped early": flip(len(original) // 7),
        "flipped late": flip(len(original) - 9),
        "flipped middle": flip(len(original) // 2),
        "pickle": pickled,
        "huge header": (1 << 40).to_bytes(8, "little") + original[8:],
    }


def _expect_refused_or_harmless(run, path, reference, label):
    """``run()`` with ``path`` damaged each way: a ConfigError naming the file, or a result
    equal to ``reference`` (a damaged file that is only partial work, recomputed)."""
    tried = 0
    for kind, content in _corruptions(path).items():
        saved = path.read_bytes()
        path.write_bytes(content)
        try:
            result = run()
        except ConfigError as error:
            assert path.name in str(error), (label, kind, str(error))
        else:
            assert result == reference, (label, kind)
        finally:
            path.write_bytes(saved)
        tried += 1
    return tried


def test_a_damaged_engine_checkpoint_or_config_is_refused(tmp_path, monkeypatch):
    import numpy as np

    from jaxcollapse.runs import resume

    out = tmp_path / "run"
    original = _checkpoint.save

    def save(path, identity, state):
        original(path, identity, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(_checkpoint, "save", save)
    argv = ["gaussian", "--chains", "32", "--generations", "30", "--samples", "10", "--checkpoint-every", "10",
            "--out", str(out), "--no-figures", "--no-progress"]
    assert main(argv) == 130
    monkeypatch.setattr(_checkpoint, "save", original)
    whole = tmp_path / "whole"
    assert main(argv[:-4] + ["--out", str(whole), "--no-figures", "--no-progress"]) == 0
    reference = (whole / "summary.csv").read_text()

    def run():
        resume(out, figures=False)
        text = (out / "summary.csv").read_text()
        (out / "summary.csv").unlink()  # unfinished again, for the next corruption
        return text

    tried = 0
    for name in ("checkpoint.npz", "config.json"):
        tried += _expect_refused_or_harmless(run, out / name, reference, name)
    # an edited config (valid JSON, another seed) and a checkpoint whose metadata says a
    # negative segment count with a digest to match: both refused
    config = json.loads((out / "config.json").read_text())
    edited = dict(config, run=dict(config["run"], seed=9))
    (out / "config.json").write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="edited or is damaged"):
        resume(out, figures=False)
    (out / "config.json").write_text(json.dumps(config))
    from jaxcollapse import _integrity

    arrays = _integrity.load_npz(out / "checkpoint.npz")
    meta = json.loads(str(arrays["meta"]))
    _integrity.save_npz(out / "checkpoint.npz", {**arrays, "meta": np.array(json.dumps(dict(meta, segments=-1)))})
    with pytest.raises(ConfigError, match="'segments' is -1"):
        resume(out, figures=False)
    # a carry replaced by NaNs with a digest recomputed to match (the record of finite arrays as
    # the run wrote it): refused, because the carry was finite when written
    forged = {name: np.full_like(value, np.nan) if name.startswith("carry/") and value.dtype.kind == "f" else value
              for name, value in arrays.items()}
    assert any(name.startswith("carry/") for name in forged)
    forged[_integrity.FINITE_KEY] = np.array(json.dumps(_integrity.finite_names(arrays)))
    np.savez(out / "checkpoint.npz", **forged, **{_integrity.DIGEST_KEY: np.array(_integrity.arrays_digest(forged))})
    with pytest.raises(ConfigError, match=r"'carry/0' holds NaN or infinite values but was finite when it was written"):
        resume(out, figures=False)
    assert tried == 14


def test_damaged_host_artefacts_are_refused_with_the_generation_to_recompute_from(tmp_path):
    import jax.numpy as jnp
    import numpy as np

    import jaxcollapse as jc
    from jaxcollapse.programs import host_program

    def fit(key, data, weights):
        return {"mean": jnp.sum(data * weights[:, None], axis=0) / jnp.sum(weights)}

    family = jc.Family("shift", dim=2, fit=fit, sample=lambda key, params, n: params["mean"] + jax.random.normal(
        key, (n, 2)), metrics=None)
    import jax

    program = host_program(family, jc.DataPolicy("accumulate"), np.full(3, 10), lambda key, n: jax.random.normal(
        key, (n, 2)), metrics=lambda g: {"m": np.zeros(len(g.chains)) if g.params is None
                                         else np.asarray(g.params["mean"][:, 0])}, metric_names=("m",))

    def run():
        return jc.simulate(program, num_chains=3, record="trajectories", checkpoint=tmp_path / "ck").trajectories[
            "m"].tobytes()

    reference = run()
    tried = 0
    for name in ("identity.json", "generation_2/params_0-3.safetensors", "generation_2/samples_0-3.npz",
                 "generation_2/metrics_0-3.npz"):
        tried += _expect_refused_or_harmless(run, tmp_path / "ck" / name, reference, name)
    assert tried == 28
    # a parameter stored as float16 with the right shape, with a digest to match: refused by its dtype
    from safetensors.numpy import load_file, save

    from jaxcollapse._integrity import arrays_digest

    path = tmp_path / "ck" / "generation_2" / "params_0-3.safetensors"
    tensors = {k: v.astype(np.float16) for k, v in load_file(path).items()}
    saved = path.read_bytes()
    path.write_bytes(save(tensors, metadata={"jaxcollapse": json.dumps({"sha256": arrays_digest(tensors)})}))
    with pytest.raises(ConfigError, match=r"'mean' is float16\[3, 2\], expected float32\[3, 2\]"):
        run()
    # the same parameter replaced by NaNs, with a digest to match and the record of finite tensors as written
    from safetensors import safe_open

    path.write_bytes(saved)
    with safe_open(str(path), "numpy") as handle:
        written = json.loads(handle.metadata()["jaxcollapse"])
    nan = {k: np.full_like(v, np.nan) for k, v in load_file(path).items()}
    path.write_bytes(save(nan, metadata={"jaxcollapse": json.dumps(dict(written, sha256=arrays_digest(nan)))}))
    with pytest.raises(ConfigError, match="'mean' holds NaN or infinite values but was finite"):
        run()
    path.write_bytes(saved)
    (path.parent / "samples_0-3.npz").unlink()
    path.unlink()
    path.mkdir()  # a folder in the file's place
    with pytest.raises(ConfigError, match="not a regular file.*recompute from generation 1"):
        run()


# ---------------------------------------------------------------------------- one writer per folder

def test_two_processes_cannot_write_one_run_folder(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    from jaxcollapse._files import LOCK_FILE

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        argv = ["gaussian", "--chains", "16", "--generations", "2", "--out", str(out), "--no-figures"]
        assert main(argv) == 2
        assert f"is being written by process {holder.pid}" in capsys.readouterr().err
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(argv) == 0  # the holder is gone: its lock is stale and taken over
    assert not (out / LOCK_FILE).exists()  # and released when the run ends
    (out / LOCK_FILE).write_text("{half a lock")  # a writer killed mid-write: stale too
    assert main(argv + ["--force"]) == 0


# ---------------------------------------------------------------------------- limits before work (chains)

@pytest.mark.parametrize("argv, said", [
    (["gaussian", "--dim", "50000"], "50000-dimensional Gaussian's covariance matrices needs about"),
    (["discrete", "--states", "3000000000"], "a distribution over 3000000000 states needs about"),
    (["gaussian", "--samples", "100000000", "--path", "data"], "one chunk of 16 chains of this program needs about"),
    (["gaussian", "--generations", "1000000000000"], r"generations must be an integer >= 0 and <= 10000000"),
    (["gaussian", "--chains", str(2**33)], "chains must be an integer >= 1 and <= 2147483648"),
    (["regression", "--dim", "100000"], "dim d must be an integer >= 1 and <= 4096"),
    (["kde", "--heldout", "1000000000"], "heldout must be an integer >= 1 and <= 1000000"),
    (["gmm", "--heldout", "1000000000"], "heldout must be an integer >= 1 and <= 1000000"),
])
def test_runs_that_cannot_fit_are_refused_before_work(tmp_path, capsys, argv, said):
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_sweep_of_too_many_cells_is_refused_before_it_is_enumerated(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text('command = "gaussian"\n[grid]\n' + "".join(
        f"{name} = [{', '.join(str(v) for v in range(1, 101))}]\n" for name in ("samples", "seed", "chains")))
    with pytest.raises(ConfigError, match="makes 1000000 cells; a sweep holds at most 10000"):
        load_sweep(config)


# ---------------------------------------------------------------------------- faults

def test_a_failed_write_leaves_no_temporary_file_and_a_killed_ones_are_swept(tmp_path, monkeypatch):
    import errno
    import os

    from jaxcollapse import _files

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        _files.atomic_bytes(tmp_path / "summary.csv", b"x" * 1000)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # nothing left to keep the disk full
    leftover = tmp_path / f".checkpoint.npz{_files.TEMPORARY_MARK}abc123"
    leftover.write_bytes(b"half a checkpoint")  # a writer killed with SIGKILL mid-write
    with _files.folder_lock(tmp_path):
        assert not leftover.exists()


def test_a_fifo_in_place_of_a_checkpoint_is_refused_not_waited_on(tmp_path):
    import os

    import jaxcollapse as jc

    path = tmp_path / "checkpoint.npz"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="is not a regular file"):
        jc.simulate(jc.gaussian_study(samples=10, generations=2).program(), num_chains=16, checkpoint=path)


# ---------------------------------------------------------------------------- an OPT checkpoint folder is untrusted input

def _opt_folder(tmp_path):
    import shutil
    from pathlib import Path

    folder = tmp_path / "opt"
    shutil.copytree(Path(__file__).parent / "fixtures" / "opt" / "pre_ln", folder)
    return folder


def test_an_opt_config_too_large_for_memory_is_refused_before_loading(tmp_path):
    from jaxcollapse.lm.checkpoint import load_opt

    folder = _opt_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=200_000, ffn_dim=65536,
                                                        hidden_size=4096, num_attention_heads=32)))
    with pytest.raises(ConfigError, match="parameters by its config.json\\) needs about .* GiB"):
        load_opt(folder)


def test_an_opt_index_cannot_point_outside_its_folder(tmp_path):
    from jaxcollapse.lm.checkpoint import load_opt

    folder = _opt_folder(tmp_path)
    (folder / "model.safetensors").rename(folder / "shard.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "shard.safetensors", "b": "../../../../etc/passwd"}}))
    with pytest.raises(ConfigError, match="names shards outside"):
        load_opt(folder)


@pytest.mark.parametrize("content, match", [
    ((1 << 40).to_bytes(8, "little") + b"{}", "cannot be read as safetensors"),
    (b"", "cannot be read as safetensors"),
    (None, "pytorch_model.bin is a pickle and is not read"),
])
def test_damaged_or_pickled_opt_weights_are_named(tmp_path, capsys, content, match):
    from jaxcollapse.lm.checkpoint import load_opt

    folder = _opt_folder(tmp_path)
    if content is None:
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    else:
        (folder / "model.safetensors").write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_opt(folder)
    assert main(["lm", "--model", str(folder), "--generations", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "jaxcollapse: error:" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- float32 and int32 ranges

@pytest.mark.parametrize("argv, said", [
    (["discrete", "--family", "poisson", "--init", "poisson:1e8", "--samples", "100"], "counts are int32"),
    (["gaussian", "--mean", "1e39"], "mean must lie in [-1e+15, 1e+15]"),
    (["gaussian", "--sigma", "1e30"], "sigma must lie in [1e-15, 1e+15]"),
    (["kde", "--mean", "1e39"], "mean must lie in [-1e+15, 1e+15]"),
    (["regression", "--noise", "1e30"], "noise sigma must lie in [1e-15, 1e+15]"),
    (["gmm", "--p0", "two-blobs:1e30"], "two-blobs separation must lie in [1e-15, 1e+15]"),
])
def test_values_beyond_the_arithmetics_range_are_refused(tmp_path, capsys, argv, said):
    assert main(argv + ["--chains", "16", "--generations", "2", "--out", str(tmp_path / "run")]) == 2
    assert said in capsys.readouterr().err


def test_distributed_outside_a_cluster_is_named(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", "gaussian", "--distributed", "--chains", "16",
                           "--generations", "2", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "SLURM_JOB_ID": "", "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 2, done.stderr
    assert "could not join a multi-process run" in done.stderr and "--coordinator HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------------- kill -9 at any moment

def _killed_then_resumed(tmp_path, argv, kill_after, compare):
    """``argv`` run in a process that SIGKILLs itself after its ``kill_after``-th saved
    state, then resumed (``jaxcollapse resume``); its files equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = dict(os.environ, **{_checkpoint.KILL_AFTER_ENV: str(kill_after)})
    process = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", *argv, "--out", str(killed)], env=env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert main(["resume", str(killed), "--no-figures"]) == 0
    assert main(argv + ["--out", str(whole)]) == 0
    for name in compare:
        assert _without_timings(killed / name) == _without_timings(whole / name), name


def _without_timings(path):
    import csv

    with open(path) as handle:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(handle)]


VAE_ARGV = ["vae", "--dataset", "digits", "--generations", "2", "--runs", "2", "--epochs", "1", "--batch-size", "128",
            "--heldout", "200", "--regime", "accumulate", "--no-figures", "--no-progress"]
LM_ARGV = ["lm", "--generations", "2", "--epochs", "1", "--train-blocks", "16", "--eval-blocks", "8", "--block-size", "16",
           "--new-tokens", "16", "--vocab", "24", "--beams", "2", "--batch-size", "8", "--generation-batch", "8",
           "--regime", "mix:0.5,0.25,0.25", "--no-figures", "--no-progress"]


@pytest.mark.slow  # 25 s cold; kill -9 is tested by default on the discrete command and a sweep (test_resume.py,
# test_sweep.py), and the host executor's resume after every stage in-process (test_host_executor.py)
def test_a_killed_vae_run_resumes_bit_for_bit(tmp_path):
    _killed_then_resumed(tmp_path, VAE_ARGV, 3, ["summary.csv"])  # after generation 1's samples


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 2, 4, 5, 6])  # every stage of both generations
def test_a_vae_run_killed_anywhere_resumes_bit_for_bit(tmp_path, kill_after):
    _killed_then_resumed(tmp_path, VAE_ARGV, kill_after, ["summary.csv"])


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 3, 5])  # fine-tuned, sampled, scored (one run: stages in turn)
def test_a_language_model_run_killed_anywhere_resumes_bit_for_bit(tmp_path, kill_after):
    _killed_then_resumed(tmp_path, LM_ARGV, kill_after, ["summary.csv", "check.csv"])


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 2, 3])
def test_a_killed_sweep_of_chain_runs_resumes_bit_for_bit(tmp_path, kill_after):
    import os
    import signal
    import subprocess
    import sys

    config = tmp_path / "sweep.toml"
    config.write_text('command = "gaussian"\n[base]\nchains = 32\ngenerations = 20\nsamples = 10\n'
                      'checkpoint-every = 5\nno-figures = true\n[grid]\nseed = [1, 2]\n')
    env = dict(os.environ, **{_checkpoint.KILL_AFTER_ENV: str(kill_after)})
    process = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", "sweep", str(config), "--out",
                              str(tmp_path / "killed")], env=env, capture_output=True, text=True, timeout=600)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert main(["resume", str(tmp_path / "killed")]) == 0
    assert main(["sweep", str(config), "--out", str(tmp_path / "whole")]) == 0
    assert (tmp_path / "killed" / "summary.csv").read_bytes() == (tmp_path / "whole" / "summary.csv").read_bytes()


@pytest.mark.slow  # a VAE run (10 s cold); the host artefacts' verification has its fast test above
def test_a_refused_vae_resume_leaves_the_finished_summary_as_it_was(tmp_path, capsys):
    out = tmp_path / "vae"
    argv = VAE_ARGV[:-2] + ["--out", str(out), "--no-figures", "--no-progress"]
    assert main(argv) == 0
    summary = (out / "summary.csv").read_bytes()
    params = out / "checkpoints" / "generation_1" / "params_0-2.safetensors"
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0x01  # one weight bit
    params.write_bytes(bytes(data))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "params_0-2.safetensors" in err and "recompute from generation 0" in err
    assert (out / "summary.csv").read_bytes() == summary


# ---------------------------------------------------------------------------- kill -9 during a write

MID_WRITE_ARGV = ["gaussian", "--chains", "32", "--generations", "12", "--samples", "10", "--checkpoint-every", "3",
                  "--path", "data", "--regime", "accumulate", "--no-figures", "--no-progress", "--check"]
MID_WRITE_FILES = ("summary.csv", "check.csv")


def _killed_mid_write_then_finished(tmp_path, argv, write, whole):
    """``argv`` killed (SIGKILL) halfway through its ``write``-th file write, then finished:
    by ``resume`` where config.json was written, else by the same command; the folder ends
    with no temporary file and the files of the uninterrupted run ``whole``. False when the
    run makes fewer writes than ``write`` (it finished unkilled)."""
    import os
    import signal
    import subprocess
    import sys

    from jaxcollapse._files import KILL_MID_WRITE_ENV, TEMPORARY_MARK

    killed = tmp_path / f"killed-{write}"
    process = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", *argv, "--out", str(killed)],
                             env=dict(os.environ, **{KILL_MID_WRITE_ENV: str(write)}), capture_output=True,
                             text=True, timeout=600)
    if process.returncode == 0:
        return False
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert len(list(killed.rglob(f".*{TEMPORARY_MARK}*"))) == 1  # the half-written file, under its temporary name
    finished = main(["resume", str(killed), "--no-figures"]) if (killed / "config.json").exists() else main(
        argv + ["--out", str(killed)])
    assert finished == 0
    assert not list(killed.rglob(f".*{TEMPORARY_MARK}*"))
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in whole.iterdir())
    for name in MID_WRITE_FILES:
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), (write, name)
    return True


@pytest.mark.slow  # 7 s; the default suite sweeps a killed writer's temporary file (test_a_failed_write_leaves_no_temporary_file...)
def test_a_run_killed_while_writing_its_checkpoint_resumes_bit_for_bit(tmp_path):
    whole = tmp_path / "whole"
    assert main(MID_WRITE_ARGV + ["--out", str(whole)]) == 0
    assert _killed_mid_write_then_finished(tmp_path, MID_WRITE_ARGV, 3, whole)  # config.json, 1st checkpoint, 2nd


@pytest.mark.slow  # one subprocess per write of the run (about 12)
def test_a_run_killed_during_any_of_its_writes_finishes_bit_for_bit(tmp_path):
    whole = tmp_path / "whole"
    assert main(MID_WRITE_ARGV + ["--out", str(whole)]) == 0
    write = 1
    while _killed_mid_write_then_finished(tmp_path, MID_WRITE_ARGV, write, whole):
        write += 1
    assert write == 8  # config.json, 3 checkpoints, check.csv, report.md and summary.csv were each interrupted


# ---------------------------------------------------------------------------- kill -9 at a random moment

RANDOM_KILL_ARGV = {
    "gmm": ["gmm", "--chains", "16", "--generations", "24", "--samples", "64", "--checkpoint-every", "2"],
    "kde": ["kde", "--chains", "64", "--generations", "30", "--samples", "32", "--heldout", "64",
            "--checkpoint-every", "3"],
    "regression": ["regression", "--chains", "256", "--generations", "30", "--samples", "20", "--dim", "4",
                   "--path", "data", "--regime", "accumulate", "--checkpoint-every", "3"],
    "discrete": ["discrete", "--chains", "64", "--generations", "40", "--samples", "10", "--states", "5",
                 "--init", "uniform", "--checkpoint-every", "4"],
}


def _killed_at_random_then_finished(tmp_path, argv, tries, seed, compare):
    """``argv`` (a command line, or a Python script file to run) killed with SIGKILL ``tries``
    times at moments drawn uniformly over an uninterrupted run's duration (a fresh folder
    each), then finished: ``resume`` where config.json was written, else the same command
    again; each folder's ``compare`` files equal the uninterrupted run's. Returns how many
    processes were killed before they finished."""
    import random

    import os
    import signal
    import subprocess
    import sys
    import time

    from jaxcollapse._files import TEMPORARY_MARK

    def command(out):
        return [sys.executable, *([str(argv)] if isinstance(argv, os.PathLike) else ["-m", "jaxcollapse.cli", *argv]),
                "--out", str(out)]

    whole = tmp_path / "whole"
    started = time.perf_counter()
    subprocess.run(command(whole), check=True, capture_output=True, timeout=600)
    duration = time.perf_counter() - started
    rng = random.Random(seed)
    killed_count = 0
    for index in range(tries):
        delay = rng.uniform(0.0, duration)
        killed = tmp_path / f"killed-{index}"
        process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        killed_count += process.wait() == -signal.SIGKILL
        resumable = not isinstance(argv, os.PathLike) and (killed / "config.json").exists()
        if resumable:
            assert main(["resume", str(killed), "--no-figures"]) == 0, (index, delay)
        else:
            subprocess.run(command(killed), check=True, capture_output=True, timeout=600)
        assert not list(killed.rglob(f".*{TEMPORARY_MARK}*")), (index, delay)
        for name in compare:
            assert _without_timings(killed / name) == _without_timings(whole / name), (index, delay, name)
    return killed_count


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RANDOM_KILL_ARGV))
def test_chain_commands_killed_at_random_moments_finish_bit_for_bit(tmp_path, name):
    argv = RANDOM_KILL_ARGV[name] + ["--no-figures", "--no-progress", "--check"]
    assert _killed_at_random_then_finished(tmp_path, argv, 4, name, ["summary.csv", "check.csv"]) >= 2


REPRODUCE_SCRIPT = '''
import sys
from jaxcollapse import reproduce as module
from jaxcollapse.reproduce import Section

def sections(scale="quick", opt_checkpoint=None):
    return [
        Section("gaussian", "Gaussian", "bounded", "gaussian",
                {"samples": 20, "generations": 30, "chains": 256, "regime": "accumulate", "checkpoint_every": 2,
                 "no_figures": True, "check": True}, ()),
        Section("discrete", "Discrete", "absorbs", "discrete",
                {"samples": 10, "generations": 40, "chains": 64, "states": 4, "checkpoint_every": 4,
                 "no_figures": True, "check": True}, ()),
        Section("estimation", "Estimation", "1/sqrt(M)", "sweep", {}, (),
                sweep='command = "gaussian"\\n[base]\\nchains = 400\\ngenerations = 6\\ncheckpoint-every = 2\\n'
                      'figure-samples = ""\\n[grid]\\nsamples = [10, 1000]\\n'),
    ]

module.sections = sections
module.reproduce(sys.argv[sys.argv.index("--out") + 1])
'''


@pytest.mark.slow
def test_reproduce_killed_at_random_moments_finishes_bit_for_bit(tmp_path):
    script = tmp_path / "reproduce_small.py"
    script.write_text(REPRODUCE_SCRIPT)
    compare = ["gaussian/summary.csv", "gaussian/check.csv", "discrete/summary.csv", "discrete/check.csv"]
    assert _killed_at_random_then_finished(tmp_path, script, 4, "reproduce", compare) >= 2


# ---------------------------------------------------------------------------- a language-model run folder, damaged

@pytest.mark.slow  # 52 runs of the lm command over a finished folder (12 s: each loads every stage)
def test_every_file_of_a_language_model_run_folder_damaged_is_refused_or_harmless(tmp_path, capsys):
    out = tmp_path / "lm"
    argv = LM_ARGV + ["--out", str(out)]
    assert main(argv) == 0
    reference = _without_timings(out / "summary.csv")
    capsys.readouterr()

    def run():
        code = main(argv)
        said = capsys.readouterr().err
        if code == 2:
            raise ConfigError(said)
        assert code == 0, said
        return _without_timings(out / "summary.csv")

    checkpoints = out / "checkpoints"
    tried = 0
    for name in ("config.json", "identity.json", "generation_1/params_0-1.safetensors",
                 "generation_1/samples_0-1.npz", "generation_2/metrics_0-1.npz", "generation_0/metrics_0-1.npz"):
        path = out / name if name == "config.json" else checkpoints / name
        tried += _expect_refused_or_harmless(run, path, reference, path.name)
    # what the run writes from its stages is written again: any damage to it is harmless
    for name in ("summary.csv", "summary_by_generation.csv", "check.csv", "report.md", "model_config.json"):
        path = out / name
        for content in (_corruptions(path)["flipped middle"], b""):
            path.write_bytes(content)
            assert run() == reference, name
            tried += 1
    assert tried == 6 * 7 + 5 * 2


def test_files_are_written_with_the_users_umask(tmp_path):
    import os

    from jaxcollapse._files import atomic_text

    before = os.umask(0o027)
    try:
        atomic_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
        os.umask(0o022)
        atomic_text(tmp_path / "b.txt", "x")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(before)
