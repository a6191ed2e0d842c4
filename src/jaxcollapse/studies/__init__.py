"""The Study protocol and the registry of study commands.

A **study** is a frozen description of one recursion experiment (p_0, the family, the
data policy, the schedule, G): everything that fixes a chain's numbers except the seed
and how the chains are run. A **study command** publishes a study to every client at
once: the CLI builds its sub-command from the command's options, ``sweep`` and
``reproduce`` build studies from settings directly (no command lines, no CLI), and
``resume`` / ``rerun`` rebuild a run from its ``config.json``.

One module per study under ``jaxcollapse/studies/`` defines ``COMMAND``, a
:class:`StudyCommand`; :func:`commands` finds every such module, so a new family needs its
family file, its study file and its tests, nothing else. Code outside the package (a
researcher's own study) publishes with :func:`register` (for one process), or, installed
as a package, with an entry point in the group ``jaxcollapse.studies`` (every process,
the ``jaxcollapse`` command included)::

    [project.entry-points."jaxcollapse.studies"]
    laplace = "my_package.laplace_study:COMMAND"

Examples:
    >>> from jaxcollapse.studies import command
    >>> gaussian = command("gaussian")
    >>> study, settings = gaussian.build(gaussian.values({"samples": 50, "generations": 3, "chains": 64}))
    >>> study.generations, settings.chains
    (3, 64)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import warnings

from .base import (
    ChainStudy, HostSettings, Option, RunOutcome, RunSettings, Study, StudyCommand, chain_options, host_run_options,
    render_command_line, run_options, run_settings,
)

__all__ = [
    "Option", "RunOutcome", "Study", "ChainStudy", "StudyCommand", "RunSettings", "HostSettings", "chain_options",
    "run_options", "host_run_options", "run_settings", "commands", "command", "register", "render_command_line",
]

_REGISTERED: dict[str, StudyCommand] = {}  # published from outside the package
ENTRY_POINTS = "jaxcollapse.studies"  # installed packages' study commands


def register(study_command: StudyCommand) -> StudyCommand:
    """Publish a study command defined outside ``jaxcollapse.studies`` (the CLI, sweeps and
    ``resume`` find it from then on, in this process); returns it."""
    if not isinstance(study_command, StudyCommand):
        from .._validation import ConfigError

        raise ConfigError(f"register takes a StudyCommand; got {type(study_command).__name__}")
    _REGISTERED[study_command.name] = study_command
    return study_command


def _installed() -> dict[str, StudyCommand]:
    """The study commands installed packages publish under :data:`ENTRY_POINTS`. A plugin
    that fails to load, or is not a StudyCommand, is skipped with a warning naming it: one
    broken package must not stop every other command."""
    found = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        try:
            study_command = entry.load()
        except Exception as error:  # noqa: BLE001 - a third party's import error, reported and skipped
            warnings.warn(f"jaxcollapse: the study command {entry.name!r} ({entry.value}) could not be loaded: "
                          f"{type(error).__name__}: {error}", stacklevel=2)
            continue
        if not isinstance(study_command, StudyCommand):
            warnings.warn(f"jaxcollapse: the entry point {entry.name!r} ({entry.value}) is a "
                          f"{type(study_command).__name__}, not a StudyCommand; skipped", stacklevel=2)
            continue
        found[study_command.name] = study_command
    return found


def commands() -> dict[str, StudyCommand]:
    """Every study command by name, in the order the CLI lists them: the ``COMMAND`` of
    each module of this package, then those of installed packages (entry points in the
    group ``jaxcollapse.studies``), then those published with :func:`register`. A name
    already taken by the package's own commands is not replaced."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_") or module.name == "base":
            continue
        study_command = getattr(importlib.import_module(f"{__name__}.{module.name}"), "COMMAND", None)
        if study_command is not None:
            found[study_command.name] = study_command
    ordered = dict(sorted(found.items(), key=lambda item: (item[1].rank, item[0])))
    plugins = {name: command for name, command in _installed().items() if name not in ordered}
    return ordered | plugins | {name: command for name, command in _REGISTERED.items() if name not in ordered}


def command(name: str) -> StudyCommand:
    """The study command called ``name`` (a :class:`~jaxcollapse.ConfigError` names the
    known ones otherwise)."""
    from .._validation import ConfigError

    known = commands()
    if name not in known:
        raise ConfigError(f"unknown study command {name!r}; known: {', '.join(known)}")
    return known[name]
