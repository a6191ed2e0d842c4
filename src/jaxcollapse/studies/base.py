"""The Study protocol, the settings of a run, and study commands.

A chain study (:class:`Study`) is a frozen, JSON round-trip description of a recursion
experiment; ``jaxcollapse.runs.run_study`` writes the run folder of any study through
this protocol alone, and :class:`ChainStudy` gives the members most studies share.
:class:`StudyCommand` publishes a study to the CLI, sweeps, ``reproduce`` and ``resume``:
its :class:`Option` table is the one list of settings that all of them read.

Examples:
    >>> option = Option("samples", 100, "M", int)
    >>> option.flag, option.convert([20]), option.convert("20")
    ('--samples', 20, 20)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple, Protocol

import numpy as np

from .._files import atomic_text
from .._validation import ConfigError, require_choice, require_fraction, require_int
from ..check import Curve, TheoryRow, theory_table
from ..engine import EXECUTORS
from ..tables import generation_columns, metric_columns, table

__all__ = [
    "Study", "ChainStudy", "RunSettings", "HostSettings", "Option", "StudyCommand", "RunOutcome",
    "render_command_line", "chain_options", "run_options", "run_settings", "floats", "ints", "write_host_report",
    "host_run_options", "host_settings_from_config",
]


# ---------------------------------------------------------------------------- the protocol

class Study(Protocol):
    """What the run-folder writer and the clients need of a chain study.

    ``command``: the registry name (config.json's ``command``). ``generations`` and
    ``sizes`` (M_0..M_{G-1}) fix the run's length. ``program()`` compiles the study for
    the engine. ``summary_metrics()`` (None: all of the program's), ``quantile_metrics()``
    and ``final_metrics()`` choose the records. ``theory_curves()`` lists every formula
    that applies; ``check_rows(result)`` compares them (and any other law) with a run.
    ``summary_table``, ``write_outputs`` and ``write_figures`` write the folder's files;
    ``report_title`` and ``report_facts`` head its report.md. ``to_json`` /
    ``from_json`` round-trip the study through config.json.
    """

    command: ClassVar[str]
    generations: int

    @property
    def sizes(self) -> np.ndarray: ...
    def program(self): ...
    def summary_metrics(self) -> tuple[str, ...] | None: ...
    def quantile_metrics(self) -> tuple[str, ...]: ...
    def final_metrics(self) -> tuple[str, ...]: ...
    def theory_curves(self) -> list[Curve]: ...
    def check_rows(self, result) -> list[TheoryRow]: ...
    def summary_table(self, result, quantiles=()) -> tuple[list[str], list[list[str]]]: ...
    def write_outputs(self, result, folder: Path) -> dict[str, Path]: ...
    def write_figures(self, result, settings: "RunSettings", folder: Path) -> list[str]: ...
    def report_title(self) -> str: ...
    def report_facts(self, result, settings: "RunSettings") -> list[str]: ...
    def to_json(self) -> dict: ...


class ChainStudy:
    """Defaults of the :class:`Study` protocol: every metric recorded, no quantile or
    final records, the theory curves checked, one column pair per metric, no extra files
    and no figures. A study class inherits it and overrides what it has of its own."""

    per_state_check: ClassVar[bool] = False  # check.csv has a state column (per-state formulas)

    @property
    def sizes(self) -> np.ndarray:
        """M_0..M_{G-1}, the sample sizes of the study's ``schedule`` (a study with another
        rule, such as regression's fixed design, overrides it)."""
        return self.schedule.sizes(self.generations)

    def summary_metrics(self) -> tuple[str, ...] | None:
        return None

    def quantile_metrics(self) -> tuple[str, ...]:
        return ()

    def final_metrics(self) -> tuple[str, ...]:
        return ()

    def theory_curves(self) -> list[Curve]:
        return []

    def check_rows(self, result) -> list[TheoryRow]:
        return theory_table(self, result)

    def describe(self) -> list[str]:
        return []

    def summary_table(self, result, quantiles=()) -> tuple[list[str], list[list[str]]]:
        """Per generation every metric's mean and standard error, the sketched quantiles
        of ``quantile_metrics()`` and every formula's values."""
        generations = result.num_generations
        columns = generation_columns(self.sizes, generations) | metric_columns(result, result.metric_names)
        for metric in self.quantile_metrics() if quantiles else ():
            band = result.quantiles(metric, quantiles)
            for index, q in enumerate(quantiles):
                columns[f"{metric}_q{q:g}"] = band[:, index]
        for curve in self.theory_curves():
            columns.setdefault(curve.column, curve.values)
        return table(columns, generations)

    def write_outputs(self, result, folder: Path) -> dict[str, Path]:
        return {}

    def write_figures(self, result, settings: "RunSettings", folder: Path) -> list[str]:
        return []

    def report_title(self) -> str:
        return f"jaxcollapse {self.command} study"

    def report_facts(self, result, settings: "RunSettings") -> list[str]:
        return self.describe() + [f"{settings.chains} chains, {self.generations} generations, seed {settings.seed}"]


# ---------------------------------------------------------------------------- run settings

@dataclass(frozen=True)
class RunSettings:
    """How a study is run: these do not change any chain's numbers except ``seed``."""

    chains: int = 10_000
    seed: int = 0
    chunk_size: int | None = None
    devices: int | None = 1
    quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)
    figure_samples: tuple[int, ...] | None = None  # None: the run kind's own (figure_sizes)
    progress: bool | None = None
    checkpoint_every: int | None = None  # generations between checkpoints (None: every segment, ~10 % of G, >= 10)
    executor: str = "scan"  # where the generation loop runs (jaxcollapse.engine.EXECUTORS); same numbers

    def __post_init__(self):
        require_int("chains", self.chains, 1, 2**31, "chain ids are 32-bit words of the random stream")
        if not 0 <= require_int("seed", self.seed, 0) < 2**32:
            raise ConfigError(f"seed must be an integer in [0, 2**32); got {self.seed}")
        if self.chunk_size is not None:
            require_int("chunk_size", self.chunk_size, 1)
        if self.devices is not None:
            require_int("devices", self.devices, 1)
        for q in self.quantiles:
            require_fraction("quantile", q)
        for m in self.figure_samples or ():
            require_int("figure sample size", m, 1)
        if self.checkpoint_every is not None:
            require_int("checkpoint_every", self.checkpoint_every, 1)
        require_choice("executor", self.executor, EXECUTORS)

    def figure_sizes(self, default: tuple[int, ...]) -> tuple[int, ...]:
        """The sample sizes of the extra figure runs: the chosen ones, else ``default``
        (each run kind has its own: a 64-chain EM run at M = 10^4 is not a default)."""
        return default if self.figure_samples is None else tuple(self.figure_samples)

    def to_json(self) -> dict:
        return {
            "chains": self.chains, "seed": self.seed, "chunk_size": self.chunk_size, "devices": self.devices,
            "quantiles": list(self.quantiles),
            "figure_samples": None if self.figure_samples is None else list(self.figure_samples),
            "progress": self.progress, "checkpoint_every": self.checkpoint_every, "executor": self.executor,
        }

    @classmethod
    def from_json(cls, blob: dict) -> "RunSettings":
        run = dict(blob)
        run["quantiles"] = tuple(run["quantiles"])
        run["figure_samples"] = None if run["figure_samples"] is None else tuple(run["figure_samples"])
        return cls(**run)


@dataclass(frozen=True)
class HostSettings:
    """How a host-driven study (the VAE, the language model) is run: its seed and sizes
    are in the study; only the progress display is a run setting."""

    progress: bool | None = None


class RunOutcome(NamedTuple):
    """What a study command wrote: the files by name, the theory rows of check.csv (empty
    where no formula applies) and the lines the CLI prints."""

    paths: dict
    rows: list
    lines: tuple[str, ...] = ()


def write_host_report(folder, title: str, study, rows: list[dict], columns: list[str], check: list = ()) -> Path:
    """report.md of a host-driven run (VAE, language model): the study's settings, the
    per-generation table of ``columns`` (those present), the theory check (``check``:
    :class:`jaxcollapse.check.TheoryRow`s, where a formula applies) and every figure in
    the folder."""
    from ..check import format_check

    folder = Path(folder)
    shown = [name for name in columns if rows and name in rows[0]]
    lines = [f"# {title}", ""] + [f"- {key}: {value}" for key, value in study.to_json().items()] + [""]
    if shown:
        lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
        lines += ["| " + " | ".join(_cell(row.get(name)) for name in shown) + " |" for row in rows]
        lines.append("")
    if check:
        lines += ["## Theory against simulation", "", "```", format_check(list(check)).rstrip(), "```", ""]
    lines += [f"![{path.name}]({path.name})\n" for path in sorted(folder.glob("*.png"))]
    atomic_text(folder / "report.md", "\n".join(lines))
    return folder / "report.md"


def _cell(value) -> str:
    if value is None or value == "":
        return ""
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------------------- options

def floats(text: str) -> tuple[float, ...]:
    """Comma-separated numbers (``""``: none)."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers; got {text!r}") from error


def ints(text: str) -> tuple[int, ...]:
    """Comma-separated integers (``""``: none)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from error


class Option(NamedTuple):
    """One setting of a study command: the CLI's ``--flag`` and a sweep's key.

    ``parse`` turns text into the value (None: an on/off switch); ``negation`` names a
    ``--no-...`` switch that sets False, the default being None (unset)."""

    name: str
    default: Any = None
    help: str = ""
    parse: Callable[[str], Any] | None = str
    negation: str | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def convert(self, raw, *, negated: bool = False):
        """The value of a setting given in Python or TOML: a switch takes a bool (False
        leaves the default), a list is read as its comma-separated text, anything else
        as its text, exactly as the CLI would read it."""
        if self.parse is None:
            if not isinstance(raw, (bool, np.bool_)):
                raise ConfigError(f"{self.name} is an on/off switch: give true or false; got {raw!r}")
            if not raw:
                return self.default
            return False if negated else True
        if raw is None:
            return self.default
        if isinstance(raw, (bool, np.bool_)):
            raise ConfigError(f"argument {self.flag}: expected a value, not a switch; got {raw!r}")
        text = ",".join(str(v) for v in raw) if isinstance(raw, (list, tuple)) else str(raw)
        try:
            return self.parse(text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
            raise ConfigError(f"argument {self.flag}: invalid value {text!r} ({error})") from None

    def add_to(self, parser) -> None:
        """This option's flag (and its negation) on an argparse parser."""
        if self.parse is None:
            parser.add_argument(self.flag, dest=self.name, action="store_true", default=self.default, help=self.help)
            if self.negation:
                parser.add_argument("--" + self.negation.replace("_", "-"), dest=self.name, action="store_false")
            return
        parser.add_argument(self.flag, dest=self.name, type=self.parse, default=self.default, help=self.help_text,
                            metavar=self.metavar)

    @property
    def help_text(self) -> str:
        """The help, with the default where the help does not already say it (``--help``
        shows every default)."""
        if self.default is None or self.parse is None or "default" in self.help:
            return self.help
        shown = ",".join(str(v) for v in self.default) if isinstance(self.default, (tuple, list)) else self.default
        return f"{self.help} (default {shown})".strip()


def render_command_line(command: str, settings: dict) -> list[str]:
    """The command line of ``settings`` (for reports; runs never parse it back): a True
    switch is its flag, False or None is left out, a list is comma-separated."""
    args = [command]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


@dataclass(frozen=True)
class StudyCommand:
    """A study published to the CLI, sweeps, ``reproduce`` and ``resume``.

    ``options``: every setting (the CLI flags, a sweep's keys). ``build(values)`` turns
    complete values (:meth:`values`) into ``(study, settings)``, validating them.
    ``from_json(config["study"])`` and ``settings_from_config(config)`` rebuild a run from
    its config.json. ``run(study, settings, folder, *, force, figures) -> RunOutcome``
    writes the run folder; None means the chain run-folder writer (``jaxcollapse.runs``).
    ``chains``: the command runs chains on the engine (run settings, ``--x64``, several
    processes). ``prepare()``, when given, makes the process settings the command wants
    before JAX starts (the CLI calls it; a library call never does). ``rank`` orders the
    CLI's list of commands."""

    name: str
    help: str
    options: tuple[Option, ...]
    build: Callable[[dict], tuple[Any, Any]]
    from_json: Callable[[dict], Any]
    settings_from_config: Callable[[dict], Any] = lambda blob: RunSettings.from_json(blob["run"])
    run: Callable[..., RunOutcome] | None = None
    chains: bool = True
    prepare: Callable[[], Any] | None = None
    rank: int = 100

    def __post_init__(self):
        names = {option.name for option in self.options}
        needed = CHAIN_SETTINGS if self.chains else HOST_SETTINGS
        if not needed <= names:
            raise ConfigError(f"study command {self.name!r} lacks the options {sorted(needed - names)}: a chain "
                              f"command takes chain_options() and run_options(OUT), a host-driven one "
                              f"host_run_options(OUT)")

    def option(self, key: str) -> tuple[Option, bool]:
        """The option a setting's key names and whether it names its negation."""
        key = key.replace("-", "_")
        for option in self.options:
            if key == option.name:
                return option, False
            if key == option.negation:
                return option, True
        names = sorted({o.name for o in self.options} | {o.negation for o in self.options if o.negation})
        raise ConfigError(f"unrecognized arguments: {key} (the {self.name} command's settings: {', '.join(names)})")

    def values(self, given: dict) -> dict:
        """Every option's value: the defaults, overridden by ``given`` (keys with ``-`` or
        ``_``; values as Python or TOML gives them, see :meth:`Option.convert`)."""
        values = {option.name: option.default for option in self.options}
        for key, raw in given.items():
            option, negated = self.option(key)
            values[option.name] = option.convert(raw, negated=negated)
        return values


# ---------------------------------------------------------------------------- shared options

# the settings the CLI and the run writers read of every chain command / host-driven command
CHAIN_SETTINGS = frozenset({"chains", "generations", "seed", "out", "force", "check", "chunk_size", "devices",
                            "no_figures", "x64", "progress", "checkpoint_every", "executor"})
HOST_SETTINGS = frozenset({"out", "force", "no_figures", "no_progress"})

def chain_options(chains: int = 10_000, generations: int = 200, samples: int = 100) -> tuple[Option, ...]:
    """Options every chain study shares: sizes, schedule and regime."""
    return (
        Option("chains", chains, f"independent chains (default {chains})", int),
        Option("generations", generations, f"fitted generations G (default {generations})", int),
        Option("samples", samples, f"M, or M_0 of a growing schedule (default {samples})", int),
        Option("schedule", "constant", "constant | linear:SLOPE | power:P | geometric:RATIO | list:M0,M1,..."),
        Option("regime", "replace",
               "replace | accumulate | accumulate-subsample | real-fraction:F | fresh-real:F | mix:A,B,G"),
    )


def run_options(out: str) -> tuple[Option, ...]:
    """Options of how a chain study is run and where it is written."""
    return (
        Option("seed", 0, "", int),
        Option("out", out, f"run folder (default {out})"),
        Option("force", False, "overwrite a finished run in --out", None),
        Option("check", False, "print Monte Carlo against every formula", None),
        Option("chunk_size", None, "chains in flight (default: memory budget)", int),
        Option("devices", None, "devices to shard chains over (0: all; default 1, or all with --distributed)", int),
        Option("no_figures", False, "", None),
        Option("x64", False, "compute in float64", None),
        Option("progress", None, "", None, negation="no_progress"),
        Option("checkpoint_every", None, "save the run's state to OUT/checkpoint.npz every K generations (default: "
               "every ~10%% of the run); a killed run resumes with `jaxcollapse resume OUT`", int, metavar="K"),
        Option("executor", "scan", "where the generation loop runs: scan (segments in one compiled loop) | host "
               "(one compiled call per generation); the same numbers"),
    )


def host_run_options(out: str) -> tuple[Option, ...]:
    """Options of where a host-driven study (VAE, language model) is written and how it shows progress."""
    return (
        Option("out", out, "run folder; an existing one of the same run resumes"),
        Option("force", False, "start over in --out", None),
        Option("no_figures", False, "", None),
        Option("no_progress", False, "", None),
    )


def host_settings_from_config(blob: dict) -> HostSettings:
    """A host-driven run's settings when it is resumed or rerun from config.json: the defaults."""
    return HostSettings()


def run_settings(values: dict, **extra) -> RunSettings:
    """The :class:`RunSettings` of a chain command's values (``devices``: 0 all, None 1)."""
    devices = values["devices"]
    if devices is not None and devices < 0:
        raise ConfigError(f"devices must be >= 0 (0: all devices); got {devices}")
    return RunSettings(chains=values["chains"], seed=values["seed"], chunk_size=values["chunk_size"],
                       devices=None if devices == 0 else (devices or 1), progress=values["progress"],
                       checkpoint_every=values["checkpoint_every"], executor=values["executor"], **extra)
