"""Per-generation tables as text: the columns every summary.csv shares and CSV writing.

Every study writes its ``summary.csv`` with these helpers, so numbers are printed the
same way everywhere (integers as integers, floats by ``repr``, missing values empty).

Examples:
    >>> import numpy as np
    >>> header, rows = table({"generation": np.arange(2), "x": [None, 0.5]}, generations=1)
    >>> csv_text(header, rows)
    'generation,x\\n0,\\n1,0.5\\n'
"""

from __future__ import annotations

import csv
import io

import numpy as np

__all__ = ["number", "generation_columns", "table", "csv_text", "metric_columns"]


def number(value) -> str:
    """A value as summary.csv prints it: empty for None or NaN, integers exactly, floats by repr."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def generation_columns(sizes, generations: int) -> dict[str, np.ndarray | list]:
    """The first two columns of every summary.csv: the generation and the M it was fitted with."""
    return {"generation": np.arange(generations + 1), "samples": [None] + [int(m) for m in sizes]}


def metric_columns(result, metrics) -> dict[str, np.ndarray]:
    """``<metric>_mean`` and ``<metric>_se`` for each metric; a vector metric gives one
    column pair per entry (``weight_0_mean``...)."""
    columns = {}
    for metric in metrics:
        summary = result.summary(metric)
        if summary["mean"].ndim == 1:
            columns[f"{metric}_mean"], columns[f"{metric}_se"] = summary["mean"], summary["se"]
            continue
        for index in range(summary["mean"].shape[1]):
            columns[f"{metric}_{index}_mean"] = summary["mean"][:, index]
            columns[f"{metric}_{index}_se"] = summary["se"][:, index]
    return columns


def table(columns: dict, generations: int) -> tuple[list[str], list[list[str]]]:
    """Header and rows of text, one row per generation 0..G."""
    header = list(columns)
    return header, [[number(columns[name][g]) for name in header] for g in range(generations + 1)]


def csv_text(header, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
