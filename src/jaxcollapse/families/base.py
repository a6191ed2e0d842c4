"""The generational-step interface every family implements."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

__all__ = ["Family", "SufficientStatistics"]


class SufficientStatistics(NamedTuple):
    """An exact shortcut: draw the statistics ``fit`` needs without the samples.

    ``draw(words, params, m)`` returns the statistics of m samples of the model ``params``
    from ``words_per_draw`` random uint32 words
    (m is a traced integer; m = 0 gives the empty statistics); ``merge(a, b)`` pools two
    sets of statistics; ``fit(stats)`` equals ``Family.fit`` on the pooled samples.
    """

    draw: Callable[[Any, Any, Any], Any]
    merge: Callable[[Any, Any], Any]
    fit: Callable[[Any], Any]
    words_per_draw: int = 6


class Family(NamedTuple):
    """A model family: the functional approximation F_theta and its sampler.

    ``fit(key, data, weights) -> params`` fits the model to ``data`` (shape (n, d)),
    where ``weights`` (shape (n,)) are frequency weights; 0 masks a padded slot.
    ``sample(key, params, n) -> data`` draws n samples (n static).
    ``metrics(params, reference) -> dict`` gives per-generation scalars against p_0.
    ``sufficient`` is ``None`` when the family has no exact statistics sampler.
    ``refit(key, data, weights, previous) -> params``, when given, replaces ``fit`` in a
    chain from generation 2 on: an iterative fit (EM) may start from the previous
    generation's parameters (generation 1 is fitted to real data with ``fit``).
    """

    name: str
    dim: int
    fit: Callable[[Any, Any, Any], Any]
    sample: Callable[[Any, Any, int], Any]
    metrics: Callable[[Any, Any], dict]
    sufficient: SufficientStatistics | None = None
    refit: Callable[[Any, Any, Any, Any], Any] | None = None
