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

    def save(path, identity, state):
        original(path, identity, state)
        counter[0] += 1
        raise _Stop

    monkeypatch.setattr(_checkpoint, "save", save)
    argv = ["gaussian", "--chains", "32", "--generations", "30", "--samples", "10", "--checkpoint-every", "10",
            "--out", str(out), "--no-figures", "--no-progress"]
    with pytest.raises(_Stop):
        main(argv)
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
