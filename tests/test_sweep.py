"""Sweeps end to end: cells, the tidy table, a killed sweep resumed, finished cells kept."""

import csv
import io
import os
import signal
import subprocess
import sys

import pytest

from jaxcollapse import ConfigError, _checkpoint
from jaxcollapse.cli import main
from jaxcollapse.sweep import load_sweep, run_sweep

SWEEP = """
command = "gaussian"
[base]
chains = 32
generations = 3
checkpoint-every = 1
[grid]
samples = [10, 20]
seed = [0, 1]
"""


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_killed_sweep_resumes_to_the_uninterrupted_table_and_keeps_finished_cells(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP)
    killed = tmp_path / "killed"
    env = dict(os.environ, **{_checkpoint.KILL_AFTER_ENV: "3"})  # inside the second cell
    process = subprocess.run([sys.executable, "-m", "jaxcollapse.cli", "sweep", str(config), "--out", str(killed),
                              "--no-figures"], env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert (killed / "cells" / "000-samples=10-seed=0" / "summary.csv").is_file()
    assert (killed / "cells" / "001-samples=10-seed=1" / "checkpoint.npz").is_file()
    first_cell = (killed / "cells" / "000-samples=10-seed=0" / "summary.csv").stat().st_mtime_ns
    assert main(["resume", str(killed), "--no-figures"]) == 0
    assert (killed / "cells" / "000-samples=10-seed=0" / "summary.csv").stat().st_mtime_ns == first_cell
    whole = tmp_path / "whole"
    run_sweep(config, whole, figures=False, stream=io.StringIO())
    assert (killed / "summary.csv").read_bytes() == (whole / "summary.csv").read_bytes()

    rows = _read(whole / "summary.csv")
    assert len(rows) == 4 * 4  # 4 cells x generations 0..3
    assert [(row["cell"], row["cell_samples"], row["cell_seed"], row["generation"], row["samples"])
            for row in rows[4:6]] == [("001-samples=10-seed=1", "10", "1", "0", ""),
                                      ("001-samples=10-seed=1", "10", "1", "1", "10")]
    assert all(float(row["w2_risk_mean"]) > 0 for row in rows if row["generation"] != "0")
    cells = _read(whole / "cells.csv")
    assert [row["cell"] for row in cells] == ["000-samples=10-seed=0", "001-samples=10-seed=1",
                                             "002-samples=20-seed=0", "003-samples=20-seed=1"]
    assert cells[2]["chains"] == "32" and cells[2]["samples"] == "20"
    # a cell is a run folder like a single run's: the same flags give the same summary
    single = tmp_path / "single"
    assert main(["gaussian", "--chains", "32", "--generations", "3", "--samples", "20", "--seed", "1",
                 "--no-figures", "--no-progress", "--out", str(single)]) == 0
    assert (single / "summary.csv").read_bytes() == (whole / "cells" / "003-samples=20-seed=1" / "summary.csv").read_bytes()
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(whole / "summary.parquet")
    assert table.num_rows == 16 and table.schema.field("w2_risk_mean").type == "double"
    assert table.column("cell").to_pylist()[4] == "001-samples=10-seed=1"
    # typed columns: counts as integers, swept numbers as numbers, undefined values as nulls
    for name in ("generation", "cell_samples", "cell_seed", "samples"):
        assert table.schema.field(name).type == "int64", name
    assert table.column("samples").to_pylist()[4:6] == [None, 10]

    stream = io.StringIO()
    run_sweep(config, whole, figures=False, stream=stream)  # everything finished: nothing recomputed
    assert stream.getvalue().count("finished earlier") == 4


@pytest.mark.parametrize("text, match", [
    ('command = "bogus"', "sweep command must be one of"),
    ('command = "gaussian"\n[grid]\nsamples = 10', r"grid.samples must be a non-empty list"),
    ('command = "gaussian"\n[base]\nout = "x"', "may not set 'out'"),
    ('command = "gaussian"\n[grid]\nsampels = [1, 2]', "sweep cell 000-sampels=1: .*unrecognized arguments"),
    ('command = "gaussian"\n[grid]\nsamples = [1, 2]\n[extra]\nx = 1', "unknown sections"),
    ('command = "gaussian"\n[grid\n', "cannot be read"),
])
def test_bad_sweep_files_are_named(tmp_path, text, match):
    config = tmp_path / "sweep.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_sweep(config)


def test_explicit_cells_combine_with_the_grid(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text('command = "discrete"\n[base]\nstates = 4\n[grid]\nsamples = [5, 6]\n'
                      '[[cells]]\nregime = "replace"\n[[cells]]\nregime = "fresh-real:0.5"\nx64 = true\n')
    command, cells = load_sweep(config)
    assert command == "discrete" and len(cells) == 4
    assert cells[3].varying == {"samples": 6, "regime": "fresh-real:0.5", "x64": True}
    assert cells[3].argv(command) == ["discrete", "--states", "4", "--samples", "6", "--regime", "fresh-real:0.5",
                                      "--x64"]
