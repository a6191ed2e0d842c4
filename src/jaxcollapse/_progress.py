"""A small progress meter: generation counter and chain-generations per second.

It writes to stderr only when stderr is a terminal (quiet in CI and in notebooks'
captured output) unless forced on or off.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    def __init__(self, total_generations: int, num_chains: int, chunks: int, enabled: bool | None = None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = max(total_generations, 1)
        self.num_chains = num_chains
        self.chunks = chunks
        self.started = time.perf_counter()
        self.work_done = 0.0

    def update(self, chunk: int, generation: int, chains_in_chunk: int, generations_done: int) -> None:
        self.work_done += chains_in_chunk * generations_done
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.work_done / elapsed
        chunk_text = f" chunk {chunk + 1}/{self.chunks}" if self.chunks > 1 else ""
        self.stream.write(
            f"\rgeneration {min(generation, self.total)}/{self.total}{chunk_text} | "
            f"{self.num_chains} chains | {rate:,.0f} chain-generations/s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
