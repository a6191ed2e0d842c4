"""JAX's persistent compilation cache, in a folder of the user's.

XLA compiles a study's program in 1-5 s on a CPU, often longer than the simulation. The
persistent cache keeps every compiled executable on disk, keyed by its HLO, the XLA flags
and the JAX version, so a second run of the same command (another seed, another output
folder) loads the executables instead of compiling them: a hit runs exactly what a fresh
compile would. The command line turns it on for every command; library users call
:func:`enable` once (a notebook that loops over settings then compiles each shape once,
across kernels and sessions too).

The folder is ``$JAXCOLLAPSE_COMPILE_CACHE`` when set (``off``, ``0`` or ``false`` turn
the cache off), else ``$XDG_CACHE_HOME/jaxcollapse/xla`` (``~/.cache/jaxcollapse/xla``).
A cache folder the user configured for JAX itself (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config``) is left as it is.

Examples:
    >>> import jaxcollapse.compile_cache as compile_cache
    >>> compile_cache.folder({"JAXCOLLAPSE_COMPILE_CACHE": "off"}) is None
    True
    >>> str(compile_cache.folder({"XDG_CACHE_HOME": "/tmp/cache"}))
    '/tmp/cache/jaxcollapse/xla'
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable", "folder", "ENVIRONMENT_VARIABLE"]

ENVIRONMENT_VARIABLE = "JAXCOLLAPSE_COMPILE_CACHE"
_OFF = {"off", "0", "false", "no", "none"}


def folder(environ=None) -> Path | None:
    """Where the cache lives for this environment (``os.environ`` by default), or None
    when the variable turns it off."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(ENVIRONMENT_VARIABLE)
    if chosen is not None:
        return None if chosen.strip().lower() in _OFF or not chosen.strip() else Path(chosen).expanduser()
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxcollapse" / "xla"


def enable(where: str | os.PathLike | None = None) -> Path | None:
    """Turn JAX's persistent compilation cache on in ``where`` (default :func:`folder`);
    returns the folder in use, or None when the cache is off or its folder cannot be
    made (a read-only home: the run goes on, compiling as before). A folder already
    configured for JAX wins."""
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        return Path(configured)
    chosen = Path(where).expanduser() if where is not None else folder()
    if chosen is None:
        return None
    try:
        chosen.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(chosen))
    # every program, however quick to compile: a study compiles several small ones
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return chosen
