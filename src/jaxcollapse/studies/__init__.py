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
researcher's own study) publishes with :func:`register`.

Example:
    >>> from jaxcollapse.studies import command
    >>> gaussian = command("gaussian")
    >>> study, settings = gaussian.build(gaussian.values({"samples": 50, "generations": 3, "chains": 64}))
    >>> study.generations, settings.chains
    (3, 64)
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    ChainStudy, HostSettings, Option, RunOutcome, RunSettings, Study, StudyCommand, chain_options, host_run_options,
    render_command_line, run_options, run_settings,
)

__all__ = [
    "Option", "RunOutcome", "Study", "ChainStudy", "StudyCommand", "RunSettings", "HostSettings", "chain_options",
    "run_options", "host_run_options", "run_settings", "commands", "command", "register", "render_command_line",
]

_REGISTERED: dict[str, StudyCommand] = {}  # published from outside the package


def register(study_command: StudyCommand) -> StudyCommand:
    """Publish a study command defined outside ``jaxcollapse.studies`` (the CLI, sweeps and
    ``resume`` find it from then on, in this process); returns it."""
    if not isinstance(study_command, StudyCommand):
        raise TypeError(f"register takes a StudyCommand; got {type(study_command).__name__}")
    _REGISTERED[study_command.name] = study_command
    return study_command


def commands() -> dict[str, StudyCommand]:
    """Every study command by name, in the order the CLI lists them: the ``COMMAND`` of
    each module of this package, then those published with :func:`register`."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_") or module.name == "base":
            continue
        study_command = getattr(importlib.import_module(f"{__name__}.{module.name}"), "COMMAND", None)
        if study_command is not None:
            found[study_command.name] = study_command
    ordered = dict(sorted(found.items(), key=lambda item: (item[1].rank, item[0])))
    return ordered | _REGISTERED


def command(name: str) -> StudyCommand:
    """The study command called ``name`` (a :class:`~jaxcollapse.ConfigError` names the
    known ones otherwise)."""
    from .._validation import ConfigError

    known = commands()
    if name not in known:
        raise ConfigError(f"unknown study command {name!r}; known: {', '.join(known)}")
    return known[name]
