"""Checkpoints of chain runs: a run stopped at any checkpoint (or killed) resumes and ends
bit-identical to an uninterrupted one; a checkpoint of another run is refused."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse import _checkpoint
from jaxcollapse.cli import main
from jaxcollapse.studies.discrete import discrete_study


class _Stop(Exception):
    pass


def _stopping_after(monkeypatch, writes):
    """Make the engine raise right after its ``writes``-th checkpoint (as if interrupted)."""
    original, counter = _checkpoint.save, [0]

    def save(path, identity, state):
        original(path, identity, state)
        counter[0] += 1
        if counter[0] >= writes:
            raise _Stop

    monkeypatch.setattr(_checkpoint, "save", save)
    return original


def _equal_results(a, b):
    for name in ("moments", "sketches", "trajectories", "final"):
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None), name
        for key in left or {}:
            np.testing.assert_array_equal(left[key], right[key], err_msg=f"{name}/{key}")
    assert (a.params is None) == (b.params is None)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("writes", [1, 3, 4])  # inside the first chunk, at a chunk's end, inside a later chunk
def test_summary_run_resumes_bit_for_bit_from_any_checkpoint(tmp_path, monkeypatch, writes):
    program = jc.gaussian_study(samples=12, generations=7).program()
    options = dict(num_chains=40, num_generations=7, seed=3, chunk_size=16, segment_length=3,
                   quantile_metrics=("w2_risk",), metrics=("w2_risk", "sigma"))
    whole = jc.simulate(program, **options)
    path = tmp_path / "state.npz"
    original = _stopping_after(monkeypatch, writes)
    with pytest.raises(_Stop):
        jc.simulate(program, checkpoint=path, checkpoint_every=3, **options)
    monkeypatch.setattr(_checkpoint, "save", original)
    from jaxcollapse import _integrity

    tampered, forged = tmp_path / "tampered.npz", tmp_path / "forged.npz"
    arrays = _integrity.load_npz(path)  # the same checkpoint with its saved numbers moved
    moved_arrays = {k: v + 1 if k.startswith(("carry/", "moments/")) else v for k, v in arrays.items()}
    np.savez(tampered, **moved_arrays, **{_integrity.DIGEST_KEY: np.array(_integrity.arrays_digest(arrays))})
    _integrity.save_npz(forged, moved_arrays)  # moved, with a digest that matches the move
    resumed = jc.simulate(program, checkpoint=path, checkpoint_every=3, **options)
    _equal_results(resumed, whole)
    with pytest.raises(jc.ConfigError, match="does not match the digest written with it"):
        jc.simulate(program, checkpoint=tampered, checkpoint_every=3, **options)
    moved = jc.simulate(program, checkpoint=forged, checkpoint_every=3, **options)
    assert not np.array_equal(moved.moments["w2_risk"], whole.moments["w2_risk"])  # the checkpoint was used


def test_trajectories_and_final_metrics_resume_bit_for_bit(tmp_path, monkeypatch):
    study = discrete_study(samples=8, generations=6, states=3, init="probs:0.2,0.3,0.5", regime="accumulate-subsample")
    options = dict(num_chains=20, num_generations=6, seed=1, chunk_size=16, segment_length=2, record="trajectories",
                   final_metrics=study.final_metrics(), metrics=("support", "heterozygosity"))
    whole = jc.simulate(study.program(), **options)
    path = tmp_path / "state.npz"
    original = _stopping_after(monkeypatch, 3)  # the second chunk's first segment is done
    with pytest.raises(_Stop):
        jc.simulate(study.program(), checkpoint=path, checkpoint_every=1, **options)
    monkeypatch.setattr(_checkpoint, "save", original)
    resumed = jc.simulate(study.program(), checkpoint=path, checkpoint_every=1, **options)
    _equal_results(resumed, whole)
    for name in whole.final:
        np.testing.assert_array_equal(resumed.final[name], whole.final[name])


def test_a_checkpoint_of_another_run_is_refused(tmp_path, monkeypatch):
    program = jc.gaussian_study(samples=12, generations=4).program()
    path = tmp_path / "state.npz"
    _stopping_after(monkeypatch, 1)
    with pytest.raises(_Stop):
        jc.simulate(program, num_chains=40, num_generations=4, seed=3, chunk_size=16, checkpoint=path)
    with pytest.raises(jc.ConfigError, match="different run.*seed"):
        jc.simulate(program, num_chains=40, num_generations=4, seed=4, chunk_size=16, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(jc.ConfigError, match="cannot be read"):
        jc.simulate(program, num_chains=40, num_generations=4, seed=3, chunk_size=16, checkpoint=path)


def test_a_killed_cli_run_resumes_and_equals_an_uninterrupted_one(tmp_path, capsys):
    flags = ["discrete", "--chains", "48", "--generations", "8", "--samples", "10", "--states", "4",
             "--init", "uniform", "--chunk-size", "16", "--no-figures", "--no-progress", "--checkpoint-every", "2"]
    killed = tmp_path / "killed"
    env = dict(os.environ, **{_checkpoint.KILL_AFTER_ENV: "5"})
    process = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", *flags, "--out", str(killed)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert (killed / "checkpoint.npz").is_file() and not (killed / "summary.csv").exists()
    assert main(["resume", str(killed), "--no-figures"]) == 0
    assert main(flags + ["--out", str(tmp_path / "whole")]) == 0
    for name in ("summary.csv", "chains.csv", "check.csv"):
        assert (killed / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert not (killed / "checkpoint.npz").exists()
    capsys.readouterr()
    assert main(["resume", str(killed)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
