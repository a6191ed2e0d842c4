"""Run folders: ``config.json``, ``summary.csv``, ``check.csv``, figures and a report.

One writer serves every chain study through the Study protocol
(:class:`jaxcollapse.studies.Study`): :func:`run_study` simulates the study, checks it
against its formulas and writes what the study asks for. ``config.json`` holds
everything needed to repeat a run bit for bit (:func:`rerun`), for any study command of
the registry (:mod:`jaxcollapse.studies`), the VAE and the language model included. A
folder whose ``summary.csv`` exists holds a finished chain run and is never overwritten
unless ``force`` is set. Files are written atomically.

Examples:
    >>> import tempfile, jaxcollapse as jc
    >>> study = jc.gaussian_study(samples=50, generations=3)
    >>> folder = tempfile.mkdtemp() + "/run"
    >>> paths, rows = run_study(study, RunSettings(chains=100), folder, figures=False)
    >>> sorted(p.name for p in paths.values())
    ['check.csv', 'config.json', 'report.md', 'summary.csv']
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import platform
import sys
from pathlib import Path

import jax
import numpy as np

from . import studies
from ._files import atomic_text, folder_lock, read_config, write_config
from ._validation import ConfigError
from .check import check_csv, format_check, verdicts
from .distributed import is_main_process
from .engine import SimulationResult, check_run_fits, simulate
from .studies.base import RunOutcome, RunSettings
from .tables import csv_text as _csv_text

__all__ = [
    "RunSettings", "run_study", "run_gaussian", "run_discrete", "run_command", "summary_rows", "load_config",
    "discrete_summary_rows", "rerun", "resume", "study_summary_rows", "run_from_settings", "float_precision",
]

FORMAT_VERSION = 1


def summary_rows(study, result: SimulationResult, quantiles=()) -> tuple[list[str], list[list[str]]]:
    """The per-generation table of a study's summary.csv: header and rows of text
    (``study.summary_table``)."""
    return study.summary_table(result, quantiles)


def discrete_summary_rows(study, result: SimulationResult) -> tuple[list[str], list[list[str]]]:
    """summary.csv of a discrete run (``DiscreteStudy.summary_table``)."""
    return study.summary_table(result)


study_summary_rows = summary_rows


def _config(study, settings) -> dict:
    blob = {"format_version": FORMAT_VERSION, "command": study.command, "study": study.to_json()}
    if isinstance(settings, RunSettings):
        blob["run"] = settings.to_json()
    return blob | {
        "x64": bool(jax.config.jax_enable_x64),
        "environment": {
            "jaxcollapse": _version(), "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "backend": jax.default_backend(),
        },
    }


def _version() -> str:
    from . import __version__

    return __version__


def load_config(folder) -> tuple[object, object, dict]:
    """(study, settings, config.json) of the run in ``folder``, for any study command."""
    path = Path(folder) / "config.json"
    if not path.exists():
        raise ConfigError(f"{folder} holds no config.json; it is not a jaxcollapse run folder")
    blob = read_config(path)
    known = studies.commands()
    if blob.get("command") not in known:
        raise ConfigError(f"{path} describes a {blob.get('command')!r} run; only {', '.join(known)} runs can be rerun")
    command = known[blob["command"]]
    try:
        return command.from_json(blob["study"]), command.settings_from_config(blob), blob
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise ConfigError(f"{path} does not describe a {blob['command']} run this jaxcollapse can read "
                          f"({type(error).__name__}: {error})") from None


CHECKPOINT = "checkpoint.npz"  # the engine's state while a run is unfinished (deleted once it is)


OUTPUT_FILES = (
    "summary.csv", "config.json", "check.csv", "report.md", "risk.png", "trajectories.png", "states.csv",
    "chains.csv", "figure3.png", "collapse.png", "absorption.png", "figure7.png", "figure13.png", "metrics.png",
)


def _refuse_unusable_folder(folder: Path, force: bool) -> None:
    if (folder / "summary.csv").exists() and not force:
        raise ConfigError(f"out folder {folder} already holds a finished run (summary.csv); pass --force to overwrite it")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"out {folder} exists and is not a folder")


# run settings that change neither a chain's numbers nor what a checkpoint records
_DISPLAY_SETTINGS = ("progress", "figure_samples")


def _refuse_another_unfinished_run(folder: Path, config: dict) -> None:
    """An unfinished run (its checkpoint) in ``folder`` whose config.json describes another
    run is refused before anything in the folder is touched: the interrupted run stays
    resumable (``jaxcollapse resume``)."""
    if not (folder / CHECKPOINT).is_file() or not (folder / "config.json").is_file():
        return
    try:
        saved = read_config(folder / "config.json")
    except ConfigError:
        return  # no trustworthy record of the run: the checkpoint's own identity decides

    def essence(blob):
        run = {k: v for k, v in (blob.get("run") or {}).items() if k not in _DISPLAY_SETTINGS}
        return {"command": blob.get("command"), "study": blob.get("study"), "x64": blob.get("x64"), "run": run}

    old, new = essence(saved), essence(json.loads(json.dumps(config)))
    if old != new:
        differ = sorted({k for k in old if old[k] != new[k] and k != "run"}
                        | {f"run.{k}" for k in set(old["run"]) | set(new["run"])
                           if old["run"].get(k) != new["run"].get(k)})
        raise ConfigError(f"out folder {folder} holds an unfinished run of other settings ({', '.join(differ)} "
                          f"differ); finish it with `jaxcollapse resume {folder}`, or use another --out, or --force "
                          f"to start over")


def prepare_folder(folder, force: bool) -> Path:
    """Make ``folder`` ready for a run: a finished run is refused unless ``force``; an
    unfinished one's checkpoint is kept (the run resumes from it) unless ``force``."""
    folder = Path(folder)
    _refuse_unusable_folder(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    # the finished-run marker goes first, so an interrupted forced run never looks finished
    for name in OUTPUT_FILES + ((CHECKPOINT,) if force else ()):
        (folder / name).unlink(missing_ok=True)
    return folder


def _start_run(study, settings: RunSettings, folder, force: bool) -> tuple[Path, dict[str, Path]]:
    """Prepare the folder and write config.json first: a run can always be repeated.

    In a multi-process run, process 0 prepares the folder and every process waits for it
    before reading a checkpoint to resume from; a folder that cannot be used is refused by
    every process (none is left waiting for the others)."""
    folder = Path(folder)
    paths = {"config": folder / "config.json"}
    if not force:
        _refuse_another_unfinished_run(folder, _config(study, settings))
    if not is_main_process():
        _refuse_unusable_folder(folder, force)
    else:
        folder = prepare_folder(folder, force)
        write_config(paths["config"], _config(study, settings))
        if (folder / CHECKPOINT).exists() and settings.progress is not False:
            print(f"resuming the unfinished run in {folder} from its {CHECKPOINT}", file=sys.stderr)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxcollapse: run folder {folder} ready")
    return folder, paths


def _simulate(study, settings: RunSettings, folder: Path | None = None, program=None, **options) -> SimulationResult:
    """The run's simulation; with a ``folder``, checkpointed to its checkpoint.npz (and
    resumed from it)."""
    checkpoint = {} if folder is None else dict(
        checkpoint=folder / CHECKPOINT, checkpoint_every=settings.checkpoint_every,
        identity={"command": study.command, "study": study.to_json()})
    return simulate(
        study.program() if program is None else program, num_chains=settings.chains,
        num_generations=study.generations, seed=settings.seed, record="summary", chunk_size=settings.chunk_size, num_devices=settings.devices, executor=settings.executor,
        progress=settings.progress if is_main_process() else False,
        **checkpoint, **options,
    )


def run_study(study, settings: RunSettings, folder, *, force: bool = False,
              figures: bool = True) -> tuple[dict[str, Path], list]:
    """Run any chain ``study`` (the :class:`~jaxcollapse.studies.Study` protocol) and write
    its folder: config.json first, the study's own files (``write_outputs``), check.csv
    (its formulas against the simulation), the figures, report.md, and summary.csv last,
    whose presence marks the run finished. Returns the paths written and the theory rows
    (:func:`jaxcollapse.check.theory_table`) that check.csv holds.

    Only process 0 of a multi-process run writes (and runs the figures' extra
    simulations on its devices), holding the folder's lock (:func:`jaxcollapse._files.folder_lock`:
    a second process pointed at the folder is refused)."""
    with folder_lock(folder) if is_main_process() else contextlib.nullcontext():
        return _run_study(study, settings, folder, force, figures)


def _run_study(study, settings: RunSettings, folder, force: bool, figures: bool):
    # a run that cannot fit is refused before its folder is touched
    program = study.program()
    check_run_fits(program, settings.chains, quantile_metrics=study.quantile_metrics() if settings.quantiles else (),
                   final_metrics=study.final_metrics())
    folder, paths = _start_run(study, settings, folder, force)
    result = _simulate(study, settings, folder, program, metrics=study.summary_metrics(),
                       final_metrics=study.final_metrics(),
                       quantile_metrics=study.quantile_metrics() if settings.quantiles else ())
    rows = study.check_rows(result)
    if not is_main_process():
        return {}, rows
    paths.update(study.write_outputs(result, folder))
    paths["check"] = folder / "check.csv"
    atomic_text(paths["check"], check_csv(rows, per_state=study.per_state_check))
    figure_names = study.write_figures(result, settings, folder) if figures else []
    paths.update({name: folder / name for name in figure_names})
    paths["report"] = folder / "report.md"
    atomic_text(paths["report"], _report(study.report_title(), study.report_facts(result, settings), result, rows,
                                         figure_names))
    paths["summary"] = folder / "summary.csv"
    atomic_text(paths["summary"], _csv_text(*study.summary_table(result, settings.quantiles)))
    (folder / CHECKPOINT).unlink(missing_ok=True)  # finished: summary.csv holds everything it did
    return paths, rows


run_gaussian = run_study  # the names of the Gaussian and discrete writers before there was one
run_discrete = run_study


def run_command(study, settings, folder, *, force: bool = False, figures: bool = True) -> RunOutcome:
    """Write the run folder of any registered study: a chain study through
    :func:`run_study`, a host-driven one (VAE, language model) through its command's own
    runner."""
    command = studies.command(study.command)
    if command.run is not None:
        return command.run(study, settings, folder, force=force, figures=figures)
    paths, rows = run_study(study, settings, folder, force=force, figures=figures)
    lines = (f"wrote {', '.join(sorted(p.name for p in paths.values()))} to {paths['summary'].parent}",) if paths else ()
    return RunOutcome(paths, rows, lines)


def _report(title: str, facts: list[str], result, rows, figure_names) -> str:
    """report.md: the run's facts, the theory check and the figures."""
    lines = [f"# {title}", ""] + [f"- {fact}" for fact in facts] + [
        f"- compile {result.compile_seconds:.2f} s, run {result.run_seconds:.2f} s", "",
        "## Theory against simulation", "", "```", format_check(rows).rstrip(), "```", "",
    ]
    disagreeing = [v for v in verdicts(rows) if not v.agrees]
    if disagreeing:
        lines += ["Formulas that the simulation contradicts (|z| > 5): " + "; ".join(
            f"{v.quantity} by {v.formula}" for v in disagreeing) + ". See docs/theory.md and docs/discrete.md for why.", ""]
    for name in figure_names:
        lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def resume(folder, *, figures: bool = True) -> RunOutcome | None:
    """Finish the run in ``folder`` from its config.json and checkpoint (a run killed at any
    moment ends bit-identical to an uninterrupted one); None if a chain run had finished.
    A VAE or language-model run continues after its last finished stage."""
    study, settings, blob = load_config(folder)
    if studies.command(blob["command"]).run is None and (Path(folder) / "summary.csv").is_file():
        return None
    with float_precision(blob.get("x64")):  # the run's, as config.json records it
        return run_command(study, settings, folder, figures=figures)


@contextlib.contextmanager
def float_precision(x64: bool | None):
    """JAX's float precision set to float64 (``x64`` true) or float32 inside the block, and
    restored after it, so one run's ``x64`` never leaks into the next; None leaves it."""
    before = bool(jax.config.jax_enable_x64)
    if x64 is not None:
        jax.config.update("jax_enable_x64", bool(x64))
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def run_from_settings(study_command, given: dict, folder, *, figures: bool = True) -> tuple[RunOutcome, dict]:
    """Build ``study_command``'s study from settings (Python or TOML values, the command's
    option names) and write its run folder as the command would: in the settings' float
    precision, quiet unless they ask for progress. Returns what was written and the
    complete values. Sweeps and ``reproduce`` run their cells and sections through it."""
    values = study_command.values(given)
    with float_precision(values["x64"] if study_command.chains else None):
        study, settings = study_command.build(values)
        if not {"progress", "no_progress"} & set(given):
            settings = dataclasses.replace(settings, progress=False)
        return run_command(study, settings, folder, figures=figures and not values["no_figures"]), values


def rerun(folder, out=None, *, force: bool = False, figures: bool = True) -> tuple[Path, bool]:
    """Repeat the run in ``folder`` (any study command) into ``out`` (default: ``folder``
    + '-rerun') and say whether its summary.csv is byte-identical to the original's."""
    study, settings, blob = load_config(folder)
    out = Path(out) if out is not None else Path(str(Path(folder).resolve()) + "-rerun")
    if out.resolve() == Path(folder).resolve():
        raise ConfigError("rerun --out must differ from the run folder (the original is what it is compared with)")
    original = Path(folder) / "summary.csv"
    original_bytes = original.read_bytes() if original.is_file() else None
    with float_precision(blob.get("x64")):
        run_command(study, settings, out, force=force, figures=figures)
    written = out / "summary.csv"
    identical = original_bytes is not None and written.is_file() and original_bytes == written.read_bytes()
    return out, identical
