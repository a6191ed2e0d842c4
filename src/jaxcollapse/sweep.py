"""Sweeps: a grid or list of settings of one run kind, each cell a run folder.

A sweep is described by a TOML file::

    command = "gaussian"          # any study command: gaussian, discrete, gmm, kde, regression, vae, lm

    [base]                        # settings shared by every cell (the command's flags)
    chains = 10000
    generations = 100

    [grid]                        # every combination of these (in this order)
    samples = [10, 100, 1000]
    schedule = ["constant", "linear:1", "power:2"]

    [[cells]]                     # and/or explicit cells, each on top of base
    samples = 50
    regime = "accumulate"

Keys are the command's settings, its flags without the dashes (``chunk-size`` or
``chunk_size``); ``true`` switches a flag on (``x64 = true``), lists are read as
comma-separated values. Every cell's study is built (and so checked) from the study
registry (:mod:`jaxcollapse.studies`) before any cell runs; each cell then runs exactly as
``jaxcollapse COMMAND --flags --out DIR/cells/NAME`` would, so a cell folder is a run
folder like any other (``rerun``, ``resume``), and a cell's ``x64`` holds for that cell
alone. ``DIR/cells.csv``
lists every cell and its settings, ``DIR/summary.csv`` (and ``summary.parquet`` where
pyarrow is installed) is one tidy table of every cell's per-generation summary, with the
cell's name and the settings that vary across cells as columns ``cell_<setting>``.

A sweep stopped at any moment resumes with ``jaxcollapse resume DIR`` (or the same
``sweep`` command): finished cells (their summary.csv) are never recomputed, and an
interrupted cell continues from its checkpoint. Cells that compile to the same program
(cells differing in the seed, for example) share one compilation through JAX's
persistent compilation cache (``DIR/xla-cache`` unless one is configured already).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jax

from . import studies
from . import compile_cache
from ._files import atomic_bytes, atomic_text, folder_lock, read_config, write_config
from ._validation import ConfigError
from .runs import float_precision, run_from_settings
from .studies.base import render_command_line
from .tables import csv_text

__all__ = ["SweepCell", "load_sweep", "run_sweep", "SWEEP_COMMANDS"]

_RESERVED = ("out", "force")


def __getattr__(name):
    if name == "SWEEP_COMMANDS":  # every study command of the registry, found when asked
        return tuple(studies.commands())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class SweepCell:
    """One cell: its folder name, the settings that vary across cells, and all of its settings."""

    name: str
    varying: dict
    settings: dict

    def argv(self, command: str) -> list[str]:
        """The command line of this cell (without ``--out``), for people: cells are built
        from their settings, never from this text."""
        return render_command_line(command, self.settings)


MAX_CELLS = 10_000  # every cell is a run folder, checked and built before any runs


def load_sweep(path) -> tuple[str, list[SweepCell]]:
    """The command and the cells of the sweep file at ``path``; every cell's settings are
    checked, and its study built, before anything runs.

    Examples:
        >>> import tempfile, pathlib
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "sweep.toml"
        >>> _ = file.write_text('command = "gaussian"\\n[base]\\nchains = 64\\n[grid]\\nsamples = [10, 20]\\nseed = [0, 1]\\n')
        >>> command, cells = load_sweep(file)
        >>> [cell.name for cell in cells]
        ['000-samples=10-seed=0', '001-samples=10-seed=1', '002-samples=20-seed=0', '003-samples=20-seed=1']
    """
    path = Path(path)
    try:
        blob = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"sweep file {path} cannot be read: {error}") from error
    known = studies.commands()
    command = blob.get("command")
    if command not in known:
        raise ConfigError(f"sweep command must be one of {', '.join(known)}; got {command!r}")
    unknown = set(blob) - {"command", "base", "grid", "cells"}
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown sections {sorted(unknown)}; use command, base, grid, cells")
    base, grid, listed = blob.get("base", {}), blob.get("grid", {}), blob.get("cells", [])
    for section, value, kind in (("base", base, dict), ("grid", grid, dict), ("cells", listed, list)):
        if not isinstance(value, kind):
            raise ConfigError(f"sweep file {path}: {section} must be a "
                              f"{'table' if kind is dict else 'list of tables ([[cells]])'}; got {value!r}")
    if not all(isinstance(extra, dict) for extra in listed):
        raise ConfigError(f"sweep file {path}: every [[cells]] entry must be a table; got {listed!r}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key} must be a non-empty list of values; got {values!r}")
    count = math.prod(len(values) for values in grid.values()) * max(1, len(listed))
    if count > MAX_CELLS:
        raise ConfigError(f"sweep file {path} makes {count} cells; a sweep holds at most {MAX_CELLS} (split it into "
                          f"several sweeps, or sweep fewer values)")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
    varying_sets = [{**combo, **extra} for extra in listed for combo in (combos or [{}])] if listed else combos
    if not varying_sets:
        varying_sets = [{}]
    cells = []
    for index, varying in enumerate(varying_sets):
        settings = {_key(k): v for k, v in {**base, **varying}.items()}
        for key in _RESERVED:
            if key in settings:
                raise ConfigError(f"sweep settings may not set {key!r}: the sweep chooses every cell's folder")
        # a folder name from whitelisted characters only: a TOML key may hold anything ("/", "..")
        label = "-".join(f"{_label(_key(k))}={_label(v)}" for k, v in varying.items())
        name = f"{index:03d}" + (f"-{label}" if label else "")
        cells.append(SweepCell(name, {_key(k): v for k, v in varying.items()}, settings))
    for cell in cells:
        _build_cell(known[command], cell)
    return command, cells


def _key(key: str) -> str:
    return key.replace("-", "_")


def _label(value) -> str:
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return "".join(c if c.isalnum() or c in ".,:=+" else "_" for c in text)[:40]


def _build_cell(study_command, cell: SweepCell) -> None:
    """Build a cell's study (checking its settings) without running it; a bad setting names the cell."""
    try:
        values = study_command.values(cell.settings)
        with float_precision(values["x64"] if study_command.chains else None):
            study_command.build(values)
    except ConfigError as error:
        raise ConfigError(f"sweep cell {cell.name}: {error}") from None


def _enable_compilation_cache(folder: Path) -> None:
    """The cells share compiled programs: the user's cache if one is on, else one in the
    sweep folder (unless the variable turns caching off)."""
    if compile_cache.folder() is not None:
        compile_cache.enable(folder / "xla-cache")


def run_sweep(config, out, *, force: bool = False, figures: bool = True, stream=None) -> Path:
    """Run every cell of the sweep file ``config`` into ``out``; returns the tidy table's
    path. Finished cells are skipped; ``force`` starts the whole sweep over."""
    loaded = load_sweep(config)  # every cell checked before anything is written
    with folder_lock(out):  # one sweep writes a sweep folder
        return _run_sweep(config, loaded, out, force=force, figures=figures, stream=stream)


def _run_sweep(config, loaded, out, *, force, figures, stream):
    stream = sys.stderr if stream is None else stream
    command, cells = loaded
    study_command = studies.command(command)
    out = Path(out)
    for cell in cells:
        _cell_folder(out, cell)  # every cell's folder lies inside OUT/cells, checked before anything is written
    if force and out.exists():
        for name in ("cells", "summary.csv", "summary.parquet", "cells.csv", "sweep.toml", "sweep.json"):
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    record = {"command": command, "cells": [{"name": c.name, "varying": c.varying, "settings": c.settings}
                                            for c in cells]}
    previous = out / "sweep.json"
    if previous.exists() and read_config(previous) != json.loads(json.dumps(record)):
        raise ConfigError(f"out folder {out} holds a different sweep; use another --out, or --force to start over")
    out.mkdir(parents=True, exist_ok=True)
    write_config(out / "sweep.json", record)  # with its digest, as a run's config.json
    atomic_text(out / "sweep.toml", Path(config).read_text())
    _enable_compilation_cache(out)
    started, done_now = time.perf_counter(), 0
    for index, cell in enumerate(cells):
        folder = _cell_folder(out, cell)
        head = f"[sweep {index + 1}/{len(cells)}] {cell.name}"
        if _finished(study_command, folder):
            print(f"{head}: finished earlier", file=stream, flush=True)
            continue
        tick = time.perf_counter()
        _run_cell(study_command, cell, folder, figures)
        done_now += 1
        remaining = sum(not _finished(study_command, out / "cells" / c.name) for c in cells[index + 1:])
        pace = (time.perf_counter() - started) / done_now
        print(f"{head}: done in {time.perf_counter() - tick:.1f} s; {remaining} left, about {pace * remaining:.0f} s",
              file=stream, flush=True)
    return _write_tables(out, cells)


def _cell_folder(out: Path, cell: SweepCell) -> Path:
    """``OUT/cells/NAME``, refused unless it is a direct child of ``OUT/cells``."""
    cells = (out / "cells").resolve()
    folder = (cells / cell.name).resolve()
    if folder.parent != cells or cell.name in ("", ".", ".."):
        raise ConfigError(f"sweep cell name {cell.name!r} does not make a folder inside {cells}")
    return out / "cells" / cell.name


def _finished(study_command, folder: Path) -> bool:
    """A chain cell is finished once its summary.csv exists (written last); a host-driven
    one (VAE, language model) rewrites its summary as it goes, so it is asked to resume,
    which redoes no finished stage."""
    return study_command.run is None and (folder / "summary.csv").is_file()


def _run_cell(study_command, cell: SweepCell, folder: Path, figures: bool) -> None:
    """One cell, as its command would run it (``runs.run_from_settings``: the cell's own
    float precision, quiet unless it asks for progress)."""
    try:
        run_from_settings(study_command, cell.settings, folder, figures=figures)
    except ConfigError as error:
        raise ConfigError(f"sweep cell {cell.name} failed ({error}); its folder is {folder}") from None


def _write_tables(out: Path, cells: list[SweepCell]) -> Path:
    keys = list(dict.fromkeys(key for cell in cells for key in cell.settings))
    cell_rows = [[cell.name] + [_text(cell.settings.get(key)) for key in keys] for cell in cells]
    atomic_text(out / "cells.csv", csv_text(["cell"] + keys, cell_rows))
    varying = list(dict.fromkeys(key for cell in cells for key in cell.varying))
    # the settings that vary are columns cell_<key>: a summary has columns of the same
    # name with another meaning (``samples`` is M_n per generation, not the flag)
    header, rows = ["cell"] + [f"cell_{key}" for key in varying], []
    for cell in cells:
        with open(out / "cells" / cell.name / "summary.csv", newline="") as handle:
            table = list(csv.DictReader(handle))
        for column in table[0] if table else ():
            if column not in header:
                header.append(column)
        rows += [{"cell": cell.name, **{f"cell_{key}": _text(cell.varying.get(key)) for key in varying}, **row}
                 for row in table]
    atomic_text(out / "summary.csv", csv_text(header, [[row.get(column, "") for column in header] for row in rows]))
    _write_parquet(out / "summary.parquet", header, rows)
    return out / "summary.csv"


def _write_parquet(path: Path, header: list[str], rows: list[dict]) -> None:
    """The table as Parquet with a type per column: int64 where every value is an integer
    (generation, a swept M), float64 where every value is a number, else text; empty
    cells are nulls."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # parquet is optional; the CSV holds the same table
        return
    columns = {name: _typed_column(pa, [row.get(name, "") for row in rows]) for name in header}
    columns["cell"] = pa.array([row["cell"] for row in rows], pa.string())
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    atomic_bytes(path, buffer.getvalue())


def _typed_column(pa, values: list[str]):
    present = [v for v in values if v != ""]
    for kind, parse in ((pa.int64(), int), (pa.float64(), float)):
        try:
            parsed = {v: parse(v) for v in present}
        except ValueError:
            continue
        return pa.array([parsed[v] if v != "" else None for v in values], kind)
    return pa.array(values, pa.string())


def _text(value) -> str:
    if value is None:
        return ""
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
