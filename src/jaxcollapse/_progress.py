"""The run's progress bar, on tqdm (``tqdm.auto``: a text bar in a terminal, a widget in
Jupyter).

One bar per run across all its chunks, counted in chain-generations, with tqdm's rate and
ETA. Compilation is shown apart: the bar's clock starts when the programs are compiled,
so the rate and the ETA are the simulation's, and the compile seconds are its postfix.
It shows only where someone watches (stderr a terminal, or a notebook) unless forced on
or off.

Examples:
    >>> import io
    >>> stream = io.StringIO()
    >>> meter = Progress(total_generations=4, num_chains=10, chunks=1, enabled=True, stream=stream)
    >>> meter.update(chunk=0, generation=4, chains_in_chunk=10, generations_done=4)
    >>> meter.close()
    >>> "generation 4/4: 100%" in stream.getvalue()
    True
"""

from __future__ import annotations

import sys

__all__ = ["Progress"]


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class Progress:
    """A run of ``num_chains`` chains over ``total_generations`` generations in ``chunks``."""

    def __init__(self, total_generations: int, num_chains: int, chunks: int, enabled: bool | None = None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        watched = _in_notebook() or bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = watched if enabled is None else bool(enabled)
        self.total = max(total_generations, 1)
        self.chunks = chunks
        self.bar = None
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=num_chains * self.total, unit=" chain-generations", unit_scale=True,
                            file=self.stream, desc=f"generation 0/{self.total}", dynamic_ncols=True,
                            # a plain text bar wherever the stream is not the notebook's own
                            **({} if stream is None else {"ascii": True}))

    def compiled(self, seconds: float) -> None:
        """The programs are compiled: say how long it took, and start the bar's clock."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"compiled in {seconds:.1f} s", refresh=False)
            self.bar.start_t = self.bar.last_print_t = self.bar._time()

    def update(self, chunk: int, generation: int, chains_in_chunk: int, generations_done: int) -> None:
        if self.bar is None:
            return
        chunk_text = f", chunk {chunk + 1}/{self.chunks}" if self.chunks > 1 else ""
        self.bar.set_description(f"generation {min(generation, self.total)}/{self.total}{chunk_text}", refresh=False)
        self.bar.update(chains_in_chunk * generations_done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
