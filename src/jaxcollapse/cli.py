"""The ``jaxcollapse`` command line, a client of the library: every study command of the
registry (:mod:`jaxcollapse.studies`) is a sub-command whose flags map one to one onto
its options, and so onto the study and the run settings saved with every run (see
docs/cli.md); ``rerun``, ``resume``, ``sweep`` and ``reproduce`` work on run folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import studies
from ._validation import ConfigError
from ._xla_cpu.heap import keep_freed_memory

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The parser: one sub-command per study command of the registry
    (:func:`jaxcollapse.studies.commands`), then rerun, sweep, reproduce and resume."""
    parser = argparse.ArgumentParser(prog="jaxcollapse", description="Simulate model collapse with JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    for study_command in studies.commands().values():
        sub = commands.add_parser(study_command.name, help=study_command.help)
        for option in study_command.options:
            option.add_to(sub)
        if study_command.chains:
            _add_process_arguments(sub)
        _add_cache_argument(sub)

    rerun = commands.add_parser("rerun", help="repeat a run from its config.json and compare")
    rerun.add_argument("folder")
    rerun.add_argument("--out", default=None, help="where to write (default FOLDER-rerun)")
    rerun.add_argument("--force", action="store_true")
    rerun.add_argument("--no-figures", action="store_true")
    sweep = commands.add_parser("sweep", help="a grid or list of runs from a TOML file (see docs/cli.md)")
    sweep.add_argument("config", help="the sweep's TOML file")
    sweep.add_argument("--out", default="results/sweep", help="sweep folder (default results/sweep)")
    sweep.add_argument("--force", action="store_true", help="start the whole sweep over")
    sweep.add_argument("--no-figures", action="store_true")
    reproduce = commands.add_parser("reproduce", help="every figure of the paper the families support, and a report")
    reproduce.add_argument("--out", default="results/reproduce", help="folder (default results/reproduce)")
    reproduce.add_argument("--scale", default="quick", help="quick (a laptop CPU, minutes) | paper (the paper's sizes)")
    reproduce.add_argument("--opt-checkpoint", default=None,
                           help="a local facebook/opt-125m folder, for the language-model section at --scale paper")
    reproduce.add_argument("--only", default="", help="comma-separated section name prefixes, e.g. figure3,figure4")
    resume = commands.add_parser("resume", help="finish an interrupted run (or sweep) from its folder")
    resume.add_argument("folder")
    resume.add_argument("--no-figures", action="store_true")
    for sub in (rerun, sweep, reproduce, resume):
        _add_cache_argument(sub)
    return parser


def _add_cache_argument(command) -> None:
    command.add_argument("--no-compile-cache", action="store_true",
                         help="compile every program afresh (default: JAX's persistent compilation cache in "
                              "$JAXCOLLAPSE_COMPILE_CACHE or ~/.cache/jaxcollapse/xla; the variable set to off "
                              "also turns it off)")


def _add_process_arguments(command) -> None:
    """Flags of a chain run over several processes (the CLI's alone: a sweep's cells run in one process)."""
    several = command.add_argument_group(
        "several processes", "one run over the devices of several processes (a GPU cluster, a TPU pod): start the "
        "same command in every process; process 0 writes OUT, which must be on a shared file system")
    several.add_argument("--distributed", action="store_true",
                         help="join the processes that SLURM, Open MPI or a TPU pod started (detected)")
    several.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="process 0's address, given explicitly")
    several.add_argument("--num-processes", type=int, default=None, help="processes in the run, given explicitly")
    several.add_argument("--process-id", type=int, default=None, help="this process's index, given explicitly")


def _join_processes(args) -> int | None:
    """Start the multi-process runtime if asked (before anything initialises JAX's
    backends) and return the ``devices`` value: 0 (all devices) under several processes."""
    explicit = (args.coordinator, args.num_processes, args.process_id)
    several = args.distributed or any(value is not None for value in explicit)
    if not several:
        return args.devices
    if not args.distributed and any(value is None for value in explicit):
        raise ConfigError("give --coordinator, --num-processes and --process-id together, or --distributed to "
                          "detect them from the cluster's environment")
    if args.num_processes is not None and args.num_processes < 1:
        raise ConfigError(f"num-processes must be >= 1; got {args.num_processes}")
    if args.process_id is not None and not 0 <= args.process_id < (args.num_processes or args.process_id + 1):
        raise ConfigError(f"process-id must be in [0, num-processes = {args.num_processes}); got {args.process_id}")
    if args.devices not in (None, 0):
        raise ConfigError(f"a run over several processes shards chains over every device of every process; "
                          f"devices must be 0 (all) or left out; got {args.devices}")
    from .distributed import initialize

    initialize(*explicit)
    return 0


def _study(args, study_command) -> int:
    """Build the study from its flags, run it, print what was written (process 0 of a
    multi-process run; the others write nothing)."""
    from .runs import run_command

    values = {option.name: getattr(args, option.name) for option in study_command.options}
    if study_command.chains:
        values["devices"] = _join_processes(args)  # processes and precision before any JAX work
        if values["x64"]:
            import jax

            jax.config.update("jax_enable_x64", True)
    study, settings = study_command.build(values)
    outcome = run_command(study, settings, values["out"], force=values["force"], figures=not values["no_figures"])
    for line in outcome.lines:
        print(line)
    if values.get("check") and outcome.lines:
        from .check import format_check

        print(format_check(outcome.rows))
    return 0


def _rerun(args) -> int:
    from .runs import rerun

    out, identical = rerun(args.folder, args.out, force=args.force, figures=not args.no_figures)
    if identical:
        print(f"rerun written to {out}: summary.csv is identical to the original, bit for bit")
        return 0
    print(f"rerun written to {out}: summary.csv DIFFERS from the original", file=sys.stderr)
    return 1


def _sweep(args) -> int:
    from .sweep import run_sweep

    table = run_sweep(args.config, args.out, force=args.force, figures=not args.no_figures)
    print(f"wrote every cell under {table.parent / 'cells'} and the tidy table {table}")
    return 0


def _reproduce(args) -> int:
    from .reproduce import reproduce

    only = tuple(part.strip() for part in args.only.split(",") if part.strip())
    report = reproduce(args.out, scale=args.scale, opt_checkpoint=args.opt_checkpoint, only=only)
    print(f"wrote every section under {report.parent} and the report {report}")
    return 0


def _resume(args) -> int:
    from .runs import resume

    if (Path(args.folder) / "sweep.json").is_file():
        from .sweep import run_sweep

        table = run_sweep(Path(args.folder) / "sweep.toml", args.folder, figures=not args.no_figures)
        print(f"the sweep in {args.folder} is finished; tidy table {table}")
        return 0
    outcome = resume(args.folder, figures=not args.no_figures)
    if outcome is None:
        print(f"{args.folder} holds a finished run (summary.csv); nothing to resume")
    else:
        print(f"resumed and finished the run in {args.folder}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "no_compile_cache", False):
        from . import compile_cache

        compile_cache.enable()  # a second run of a command loads its programs instead of compiling them
    try:
        study_commands = studies.commands()
        if args.command in study_commands and study_commands[args.command].prepare is not None:
            study_commands[args.command].prepare()
        # XLA:CPU reuses a program's temporaries across calls instead of faulting them in
        # again (process-wide allocator settings: the command's to choose, not the library's)
        with keep_freed_memory():
            if args.command in study_commands:
                return _study(args, study_commands[args.command])
            return {"rerun": _rerun, "resume": _resume, "sweep": _sweep, "reproduce": _reproduce}[args.command](args)
    except ConfigError as error:
        print(f"jaxcollapse: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = _run_folder(args)
        again = f"`jaxcollapse resume {where}` or the same command" if where else "the same command"
        print(f"jaxcollapse: interrupted; every finished stage is kept: {again} goes on from there", file=sys.stderr)
        return 130
    except MemoryError:
        print("jaxcollapse: error: out of memory; lower --chunk-size (chains in flight), --chains or the sample "
              "sizes, or use --path stats where it applies", file=sys.stderr)
        return 2
    except OSError as error:  # the file system's answer: a read-only folder, a full disk, a file in the path
        if getattr(error, "filename", None):
            print(f"jaxcollapse: error: cannot use {error.filename}: {error.strerror or error}", file=sys.stderr)
        else:
            print(f"jaxcollapse: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the one boundary: anything else is a bug, with its traceback kept
        if "RESOURCE_EXHAUSTED" in str(error):
            print("jaxcollapse: error: the device ran out of memory; lower --chunk-size (chains in flight), --chains "
                  "or the sample sizes", file=sys.stderr)
            return 2
        log = _write_traceback(args)
        print(f"jaxcollapse: internal error (a bug, please report it): {type(error).__name__}: {error}; "
              f"the full traceback is in {log}", file=sys.stderr)
        return 1


def _run_folder(args):
    """The run folder a command writes (its --out, or the folder it resumes), if any."""
    return getattr(args, "out", None) or getattr(args, "folder", None)


def _write_traceback(args) -> str:
    """The current exception's traceback in the run folder's ``error.log`` (or a temporary
    file when there is no folder to write to); returns where."""
    import tempfile
    import traceback

    text = traceback.format_exc()
    folder = _run_folder(args)
    if folder is not None and Path(folder).is_dir():
        try:
            path = Path(folder) / "error.log"
            path.write_text(text)
            return str(path)
        except OSError:
            pass
    handle, path = tempfile.mkstemp(prefix="jaxcollapse-error-", suffix=".log")
    with open(handle, "w") as stream:
        stream.write(text)
    return path


if __name__ == "__main__":
    sys.exit(main())
