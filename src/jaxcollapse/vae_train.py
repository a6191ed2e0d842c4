"""Training of the VAE family (:mod:`jaxcollapse.vae`): Adam on minibatches, one
``lax.scan`` (:func:`train`) or a compiled step driven from Python (:func:`train_runs`),
several runs at once under ``jax.vmap``; and :func:`vae_family`, the VAE as a
:class:`~jaxcollapse.families.Family`.

The model is plain JAX; this module decides how a training step is computed where, and
is the VAE's only module that knows XLA:CPU (through :mod:`jaxcollapse._xla_cpu`). For
the conv architecture on a CPU the step passes its batch through the network in chunks,
two at a time (:data:`CPU_CHUNK`, :data:`CPU_CHUNKS`, :data:`CPU_LANES`), hands the model
the transposed convolution XLA:CPU differentiates fast (its ``conv_transpose`` hook), is
compiled with XLA:CPU's own convolutions, and runs from a host loop, runs in turn (faster
still inside ``jaxcollapse.keep_freed_memory()``, which the caller chooses: the CLI does).
Every form trains the same model to the same
parameters up to floating-point reassociation.

Examples:
    >>> import jax
    >>> from jaxcollapse.images import load_images
    >>> from jaxcollapse.vae import TrainConfig, VAEConfig
    >>> images = load_images("digits").images[:256]
    >>> config = VAEConfig(image_shape=(8, 8), latent=4, architecture="mlp", hidden=(32,))
    >>> params, losses = train(jax.random.key(0), config, TrainConfig(epochs=3, batch_size=64), images)
    >>> losses.shape
    (3,)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._validation import ConfigError, require_choice
from ._xla_cpu import conv
from ._xla_cpu.fusion import materialize, value_and_grad_in_lanes
from .families.base import Family
from .images import check_images
from .vae_model import (
    SAMPLE_MODES, TrainConfig, VAEConfig, _graph, _latents, _noise, _per_image_loss, _pixels, decode_means, generate,
    init_params, negative_elbo,
)

__all__ = ["train", "train_runs", "TRAIN_LOOPS", "vae_family", "VAEFit", "EVAL_BATCH", "over_image_batches",
           "sample_runs", "CPU_CHUNK", "CPU_CHUNKS", "CPU_LANES"]


# On a CPU the conv model's training batch goes through the network in chunks of at least
# CPU_CHUNK images, at most CPU_CHUNKS of them (unrolled), CPU_LANES chunks at a time
# (jaxcollapse._xla_cpu.fusion.value_and_grad_in_lanes): each layer's arrays then stay in
# cache, the two cores work on two chunks, and the temporaries stay small. A batch of 256 in
# 16 chunks trained 1.3-1.5x faster than in one pass (8 and 32 chunks were no better); in
# two lanes 15-18 % faster again than all chunks at once (measured).
CPU_CHUNK, CPU_CHUNKS, CPU_LANES = 16, 16, 2


def _conv_on_cpu(config: VAEConfig) -> bool:
    """The case XLA:CPU's convolutions shape: host loop, runs in turn, chunked batches, the
    hand-written transposed convolution, XLA's own convolutions."""
    return config.architecture == "conv" and jax.default_backend() == "cpu"


def _compiler_options(config: VAEConfig) -> tuple:
    """XLA:CPU's options for the conv model's training step on a CPU where XLA accepts them
    (``jaxcollapse._xla_cpu.conv.COMPILER_OPTIONS``), else none; as items."""
    return conv.accepted_compiler_options() if _conv_on_cpu(config) else ()


def _conv_transpose(config: VAEConfig) -> Callable | None:
    """The conv model's ``conv_transpose`` hook on a CPU: the transposed convolution whose
    gradient XLA:CPU computes fast (``jaxcollapse._xla_cpu.conv.doubling_conv_transpose``);
    elsewhere none, the model's own ``nnx.ConvTranspose``."""
    return conv.doubling_conv_transpose if _conv_on_cpu(config) else None


def _chunk_size(config: VAEConfig, batch: int) -> int | None:
    return max(CPU_CHUNK, -(-batch // CPU_CHUNKS)) if _conv_on_cpu(config) else None


class _Trainer(NamedTuple):
    """The pieces of one training run, shared by the scan and the host-loop forms of
    :func:`train_runs`; every key is derived the same way in both."""

    init: Callable  # key -> (params, opt_state), epoch keys (epochs,)
    epoch_plan: Callable  # epoch key, weights -> order of rows (rows,), step keys (steps,)
    step: Callable  # (params, opt_state), images, weights, order, index, key -> new state, weighted loss
    steps: int


def _trainer(config: VAEConfig, train_config: TrainConfig, rows: int) -> _Trainer:
    batch = min(train_config.batch_size, rows)
    steps = -(-rows // batch)
    optimizer = train_config.optimizer()
    graph = _graph(config, _conv_transpose(config))

    def init(key):
        init_key, train_key = jax.random.split(key)
        params = init_params(init_key, config)
        return (params, optimizer.init(params)), jax.random.split(train_key, train_config.epochs)

    def epoch_plan(key, weights):
        order_key, step_key = jax.random.split(key)
        # valid rows first, in random order
        scores = jnp.where(weights > 0, 0.0, 2.0) + jax.random.uniform(order_key, (rows,))
        return jnp.argsort(scores), jax.random.split(step_key, steps)

    chunk = _chunk_size(config, batch)

    def value_and_grad(params, picked, picked_weights, key):
        denominator = jnp.maximum(jnp.sum(picked_weights), 1.0)

        def loss(params, images, noise, weights):  # a sum over rows: chunks add up
            return jnp.sum(_per_image_loss(nnx.merge(graph, params), images, noise) * weights) / denominator

        rows = (picked, _noise(key, config, picked), picked_weights)
        value, grads = value_and_grad_in_lanes(loss, params, rows, chunk, CPU_LANES)
        # a chunked gradient is a sum over the chunks, which XLA:CPU would otherwise
        # recompute in each of Adam's three updates (step 175 -> 161 ms at batch 256, measured)
        return value, grads if chunk is None else materialize(grads)

    def step(state, images, weights, order, index, key):
        params, opt_state = state
        positions = index * batch + jnp.arange(batch)
        picks = order[jnp.minimum(positions, rows - 1)]
        picked_weights = weights[picks] * (positions < jnp.sum(weights > 0))
        value, grads = value_and_grad(params, images[picks], picked_weights, key)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        any_valid = jnp.sum(picked_weights) > 0
        new = jax.tree.map(lambda n, o: jnp.where(any_valid, n, o),
                           (optax.apply_updates(params, updates), new_opt_state), state)
        return new, value * jnp.sum(picked_weights)

    return _Trainer(init, epoch_plan, step, steps)


def _prepare(config: VAEConfig, images, weights):
    if not isinstance(images, jax.core.Tracer):
        images = check_images(images)
        if images.shape[1:3] != tuple(config.image_shape):
            raise ConfigError(f"images are {images.shape[1]}x{images.shape[2]} but the model expects "
                              f"{config.image_shape[0]}x{config.image_shape[1]} (VAEConfig.image_shape)")
    images = jnp.asarray(images)
    weights = jnp.ones(images.shape[0], images.dtype) if weights is None else jnp.asarray(weights, images.dtype)
    return images, weights


def train(key, config: VAEConfig, train_config: TrainConfig, images, weights=None):
    """Train a fresh VAE on ``images`` (N, H, W, 1) in [0, 1]; ``weights`` (N,) are 0/1
    masks of the rows that count (the data policies' buffers), default all. Returns the
    parameters and the mean loss of each epoch. A pure function (epochs and steps in
    ``lax.scan``): under ``jax.vmap`` over ``key`` it trains independent runs at once.

    Every epoch takes a fresh random order of the valid rows and ceil(N / batch) steps;
    masked rows (and the tail past the valid ones) carry no weight in a batch, and a batch
    with no valid row leaves the parameters and the optimiser unchanged.

    On XLA:CPU, convolutions inside a ``lax.scan`` body run about 20x slower than the same
    step compiled on its own (measured: 4 steps of the paper's VAE at batch 256, 57 s in a
    scan, 1.4 s unrolled); :func:`train_runs` with ``loop="host"`` drives the same steps
    from Python instead, and is what the CLI uses for the conv architecture on a CPU.
    """
    images, weights = _prepare(config, images, weights)
    trainer = _trainer(config, train_config, images.shape[0])
    state, epoch_keys = trainer.init(key)

    def epoch(state, epoch_key):
        order, step_keys = trainer.epoch_plan(epoch_key, weights)
        state, totals = jax.lax.scan(lambda state, step: trainer.step(state, images, weights, order, *step), state,
                                     (jnp.arange(trainer.steps), step_keys))
        return state, jnp.sum(totals) / jnp.maximum(jnp.sum(weights > 0), 1)

    (params, _), losses = jax.lax.scan(epoch, state, epoch_keys)
    return params, losses


TRAIN_LOOPS = ("auto", "scan", "host")


def train_runs(keys, config: VAEConfig, train_config: TrainConfig, images, weights=None, *, loop: str = "auto",
               batch_runs: bool | None = None, on_epoch: Callable[[int, np.ndarray], None] | None = None):
    """Train ``len(keys)`` independent VAEs at once (``jax.vmap`` over runs), run r on
    ``images[r]`` (R, N, H, W, 1) with ``weights[r]``, or all on the same (N, H, W, 1).
    Returns parameters and per-epoch losses with a leading runs axis; run r equals
    ``train(keys[r], ...)`` up to floating-point reassociation.

    ``loop``: ``"scan"`` compiles the whole training (epochs and steps in ``lax.scan``);
    ``"host"`` compiles one vmapped step and loops over epochs and steps in Python, which
    avoids XLA:CPU's slow convolutions inside loops (see :func:`train`); ``"auto"`` picks
    ``"host"`` for the conv architecture on a CPU, ``"scan"`` otherwise. ``batch_runs``:
    vmap the runs into one program (True) or train them one after another (False); None
    means False for the conv architecture on a CPU, where the vmapped convolutions (one
    kernel per run: grouped convolutions) ran 0.32x as fast as five runs in turn
    (``benchmarks/vae.py``), True otherwise. ``on_epoch(epoch, losses)`` is called after
    every epoch in the host loop (progress).

    Examples:
        >>> import jax
        >>> from jaxcollapse.images import load_images
        >>> images = load_images("digits").images[:128]
        >>> config = VAEConfig(image_shape=(8, 8), latent=2, architecture="mlp", hidden=(16,))
        >>> params, losses = train_runs(jax.random.split(jax.random.key(0), 3), config,
        ...                             TrainConfig(epochs=2, batch_size=64), images, loop="host")
        >>> losses.shape
        (3, 2)
    """
    require_choice("loop", loop, TRAIN_LOOPS)
    conv_on_cpu = _conv_on_cpu(config)
    if loop == "auto":
        loop = "host" if conv_on_cpu else "scan"
    if batch_runs is None:
        batch_runs = not conv_on_cpu
    shared = np.ndim(images) != 5
    runs = len(keys)
    if shared:
        images, weights = _prepare(config, images, weights)
    else:
        _prepare(config, images[0], None)  # shape and value checks, with their messages
        images = jnp.asarray(images)
        weights = jnp.ones(images.shape[:2], images.dtype) if weights is None else jnp.asarray(weights, images.dtype)
        if images.shape[0] != runs:
            raise ConfigError(f"images hold {images.shape[0]} runs but {runs} keys were given")
    data_axis = None if shared else 0
    if not batch_runs and runs > 1:
        trained = [train_runs(keys[r:r + 1], config, train_config, images if shared else images[r:r + 1],
                              weights if shared else weights[r:r + 1], loop=loop, batch_runs=True, on_epoch=on_epoch)
                   for r in range(runs)]
        return jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *trained)
    if loop == "scan":
        return _train_runs_scan(config, train_config, data_axis)(keys, images, weights)
    trainer = _trainer(config, train_config, images.shape[-4])
    init, plan, step = _host_steps(config, train_config, images.shape[-4], data_axis)
    state, epoch_keys = init(keys)
    losses = []
    valid = jnp.maximum(jnp.sum(weights > 0, axis=-1), 1)
    # a step past every run's valid rows leaves the runs as they are (a batch with no valid
    # row changes nothing): a buffer with padding (an accumulate pool before it fills)
    # needs only the steps of its valid rows
    batch = min(train_config.batch_size, images.shape[-4])
    steps = min(trainer.steps, max(1, -(-int(np.max(np.asarray(jnp.sum(weights > 0, axis=-1)))) // batch)))
    for epoch in range(train_config.epochs):
        order, step_keys = plan(epoch_keys[:, epoch], weights)
        total = 0.0
        for index in range(steps):
            state, value = step(state, images, weights, order, index, step_keys[:, index])
            total = total + value
        losses.append(total / valid)
        if on_epoch is not None:
            on_epoch(epoch, np.asarray(losses[-1]))
    return state[0], jnp.stack(losses, axis=1)


@functools.lru_cache(maxsize=8)
def _train_runs_scan(config, train_config, data_axis):
    return jax.jit(jax.vmap(lambda key, images, weights: train(key, config, train_config, images, weights),
                            in_axes=(0, data_axis, data_axis)), compiler_options=dict(_compiler_options(config)))


@functools.lru_cache(maxsize=8)
def _host_steps(config, train_config, rows, data_axis):
    """One compiled function per piece, cached so that every generation reuses them."""
    trainer = _trainer(config, train_config, rows)
    init = jax.jit(jax.vmap(trainer.init))
    plan = jax.jit(jax.vmap(trainer.epoch_plan, in_axes=(0, data_axis)))
    step = jax.jit(jax.vmap(trainer.step, in_axes=(0, data_axis, data_axis, 0, None, 0)), donate_argnums=0,
                   compiler_options=dict(_compiler_options(config)))
    return init, plan, step


class VAEFit(NamedTuple):
    """What the VAE family's fit returns: the trained parameters and the mean training
    loss of each epoch (``losses``, (epochs,))."""

    params: Any
    losses: Any


def _vae_params(fitted):
    """The VAE's parameters from a fit (:class:`VAEFit`) or from ``init_params``."""
    return fitted.params if isinstance(fitted, VAEFit) else fitted


# Images per run in one compiled call of sampling and encoding, so that their memory stays
# bounded whatever the data set (the conv decoder's largest array holds ~130 KB an image:
# 5 runs of the 60000 MNIST digits at once would need ~40 GB).
EVAL_BATCH = 2048


def over_image_batches(fn, arrays):
    """``fn(batch)`` over slices of ``arrays`` (runs, N, ...) along N, at most
    :data:`EVAL_BATCH` at a time (a short last slice is padded, so one compilation serves
    every slice), the results joined along N."""
    count = arrays.shape[1]
    if count <= EVAL_BATCH:
        return fn(arrays)
    parts = []
    for first in range(0, count, EVAL_BATCH):
        batch = arrays[:, first:first + EVAL_BATCH]
        short = EVAL_BATCH - batch.shape[1]
        if short:
            batch = jnp.concatenate([batch, jnp.zeros((batch.shape[0], short, *batch.shape[2:]), batch.dtype)], axis=1)
        parts.append(fn(batch)[:, :EVAL_BATCH - short])
    return jnp.concatenate(parts, axis=1)


@functools.lru_cache(maxsize=8)
def _decode_runs(config):
    return jax.jit(jax.vmap(lambda params, z: decode_means(config, params, z)))


def sample_runs(keys, config: VAEConfig, params, n: int, mode: str = "mean"):
    """``generate(keys[r], config, params[r], n, mode)`` for every run r (params with a
    leading runs axis), decoded :data:`EVAL_BATCH` images at a time; (runs, n, H, W, 1)."""
    z, pixel_keys = jax.vmap(lambda key: _latents(key, config, n))(keys)
    decode = _decode_runs(config)
    means = over_image_batches(lambda batch: decode(params, batch), z)
    return jax.vmap(lambda key, means: _pixels(key, means, mode))(pixel_keys, means)


def vae_family(config: VAEConfig, train_config: TrainConfig = TrainConfig(), mode: str = "mean") -> Family:
    """The VAE as a :class:`Family`: data rows are flattened images (n, H W); ``fit``
    trains a fresh VAE (:func:`train`) and returns a :class:`VAEFit`; ``sample`` decodes
    z ~ N(0, I) (decoder means, or Bernoulli draws of them: ``mode``). Its batched forms
    for the host executor train runs with :func:`train_runs` (a host loop of compiled
    steps for the conv model on a CPU) and decode :data:`EVAL_BATCH` images at a time.

    Examples:
        >>> config = VAEConfig(image_shape=(8, 8), latent=2, architecture="mlp", hidden=(8,))
        >>> family = vae_family(config, TrainConfig(epochs=1, batch_size=32))
        >>> family.row.shape, family.sample(jax.random.key(0), init_params(jax.random.key(1), config), 3).shape
        ((64,), (3, 64))
    """
    require_choice("sample mode", mode, SAMPLE_MODES)
    shape = (*config.image_shape, 1)

    def fit(key, data, weights):
        return VAEFit(*train(key, config, train_config, data.reshape(-1, *shape), weights))

    def sample(key, fitted, n):
        return generate(key, config, _vae_params(fitted), n, mode).reshape(n, config.pixels)

    def fit_runs(keys, data, weights, previous):  # every generation trains a fresh VAE: previous unused
        data = jnp.asarray(data)
        return VAEFit(*train_runs(keys, config, train_config, data.reshape(*data.shape[:2], *shape), weights))

    def batched_sample(keys, fitted, n):
        images = sample_runs(keys, config, _vae_params(fitted), n, mode)
        return images.reshape(images.shape[0], n, config.pixels)

    def metrics(fitted, reference: Any):
        return {"negative_elbo": negative_elbo(jax.random.key(0), config, _vae_params(fitted), reference)}

    return Family(name="vae", dim=config.pixels, fit=fit, sample=sample, metrics=metrics, fit_runs=fit_runs,
                  sample_runs=batched_sample)
