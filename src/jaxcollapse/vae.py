"""The VAE family (paper section 5.1, Figures 8 and 9), in Flax NNX and optax.

``fit`` trains a fresh VAE on a generation's images; ``sample`` decodes z ~ N(0, I) into
the next generation's images (decoder means, the authors' choice, or Bernoulli draws of
them). Models cross every JAX transformation as a pure pytree: :func:`init_params` and
:func:`train` work on the ``nnx.State`` of parameters, merged with a static graph
definition inside the loss (``nnx.split`` / ``nnx.merge``), so ``jax.vmap`` over keys
trains several independent runs at once (the paper used 5).

Architectures (``VAEConfig.architecture``):

* ``conv``, the paper's: Conv(1 -> 64, kernel 4, stride 2, padding 1) -> Conv(64 -> 128,
  k 4, s 2, p 1) -> dense to a 20-d mean and log-variance; the decoder mirrors it with a
  dense layer and transposed convolutions, sigmoid output; 647 081 parameters at 28x28;
* ``mlp``: dense layers (``hidden``), for 8x8 digits and fast tests.

Loss: binary cross-entropy summed over pixels plus KL(q(z|x) || N(0, I)), averaged over
the batch. Optimiser: Adam with L2 weight decay added to the gradient, as PyTorch's
``Adam(weight_decay=...)``: lr 1e-3, weight decay 1e-5, batch 256, 30 epochs by default.

Example:
    >>> import jax, numpy as np
    >>> from jaxcollapse.images import load_images
    >>> images = load_images("digits").images[:256]
    >>> config = VAEConfig(image_shape=(8, 8), latent=4, architecture="mlp", hidden=(32,))
    >>> params, losses = train(jax.random.key(0), config, TrainConfig(epochs=3, batch_size=64), images)
    >>> generate(jax.random.key(1), config, params, 5).shape
    (5, 8, 8, 1)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._fusion import materialize, value_and_grad_in_lanes
from ._validation import ConfigError, require_choice, require_int, require_positive
from .families.base import Family
from .heap import keep_freed_memory
from .images import check_images

__all__ = [
    "VAEConfig", "TrainConfig", "ConvVAE", "MLPVAE", "build_model", "init_params", "train", "train_runs",
    "generate", "decode_means", "TRAIN_LOOPS",
    "encode_means", "negative_elbo", "vae_family", "parameter_count", "ARCHITECTURES", "SAMPLE_MODES",
]

ARCHITECTURES = ("conv", "mlp")
SAMPLE_MODES = ("mean", "bernoulli")


@dataclass(frozen=True)
class VAEConfig:
    """The model: image size, latent size and architecture (see the module docstring)."""

    image_shape: tuple[int, int] = (28, 28)
    latent: int = 20
    architecture: str = "conv"
    channels: tuple[int, int] = (64, 128)
    hidden: tuple[int, ...] = (400,)

    def __post_init__(self):
        if len(self.image_shape) != 2:
            raise ConfigError(f"image_shape must be (height, width); got {self.image_shape!r}")
        for side in self.image_shape:
            require_int("image side", side, 1)
        require_int("latent", self.latent, 1)
        require_choice("architecture", self.architecture, ARCHITECTURES)
        if self.architecture == "conv":
            if len(self.channels) != 2:
                raise ConfigError(f"channels must be two numbers (the two convolutions); got {self.channels!r}")
            for channel in self.channels:
                require_int("channels", channel, 1)
            if any(side % 4 for side in self.image_shape):
                raise ConfigError(f"the conv architecture halves the image twice: height and width must be "
                                  f"multiples of 4; got {self.image_shape} (use architecture='mlp')")
        for width in self.hidden:
            require_int("hidden layer width", width, 1)

    @property
    def pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


@dataclass(frozen=True)
class TrainConfig:
    """Adam with L2 weight decay (PyTorch's ``Adam(weight_decay=...)``), minibatches of a
    fresh permutation every epoch."""

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5

    def __post_init__(self):
        require_int("epochs", self.epochs, 1)
        require_int("batch_size", self.batch_size, 1)
        require_positive("learning_rate", self.learning_rate)
        if not np.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}")

    def optimizer(self) -> optax.GradientTransformation:
        return optax.chain(optax.add_decayed_weights(self.weight_decay), optax.adam(self.learning_rate))


class ConvVAE(nnx.Module):
    """The paper's convolutional VAE."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        first, second = config.channels
        height, width = config.image_shape
        self.grid = (height // 4, width // 4, second)
        flat = self.grid[0] * self.grid[1] * second
        same = ((1, 1), (1, 1))  # PyTorch's padding=1: each convolution halves the image
        self.conv1 = nnx.Conv(1, first, (4, 4), strides=2, padding=same, rngs=rngs)
        self.conv2 = nnx.Conv(first, second, (4, 4), strides=2, padding=same, rngs=rngs)
        self.mean = nnx.Linear(flat, config.latent, rngs=rngs)
        self.log_variance = nnx.Linear(flat, config.latent, rngs=rngs)
        self.expand = nnx.Linear(config.latent, flat, rngs=rngs)
        # explicit padding k - 1 - p = 2 doubles the image, as PyTorch's ConvTranspose2d(k=4, s=2, p=1)
        doubled = ((2, 2), (2, 2))
        self.deconv1 = nnx.ConvTranspose(second, first, (4, 4), strides=2, padding=doubled, rngs=rngs)
        self.deconv2 = nnx.ConvTranspose(first, 1, (4, 4), strides=2, padding=doubled, rngs=rngs)

    def encode(self, images):
        hidden = nnx.relu(self.conv2(nnx.relu(self.conv1(images))))
        hidden = hidden.reshape(hidden.shape[0], -1)
        return self.mean(hidden), self.log_variance(hidden)

    def decode(self, z):
        hidden = nnx.relu(self.expand(z)).reshape(z.shape[0], *self.grid)
        hidden = nnx.relu(_doubling_conv_transpose(hidden, self.deconv1.kernel[...], self.deconv1.bias[...]))
        return _doubling_conv_transpose(hidden, self.deconv2.kernel[...], self.deconv2.bias[...])  # logits (N, H, W, 1)


def _halving_convolution(x, kernel):
    """Conv(kernel 4, stride 2, padding 1), NHWC / HWIO: what the encoder's ``nnx.Conv`` layers compute."""
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _as_halving_kernel(kernel):
    """The (4, 4, out, in) kernel of the halving convolution whose transpose is the
    doubling layer of ``kernel`` (4, 4, in, out): flipped in space, in and out swapped.
    Its own inverse."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def _doubling_conv_transpose(x, kernel, bias):
    """``nnx.ConvTranspose(kernel 4, stride 2, padding 2)`` (PyTorch's ``ConvTranspose2d(4, 2,
    padding=1)``): the same function of the same parameters, differentiated by hand.

    The layer is the transpose (the input gradient) of a halving convolution
    (:func:`_halving_convolution`) of :func:`_as_halving_kernel`'s kernel, and each of its
    three computations is that convolution's: forward, its input gradient; input gradient,
    the convolution itself; kernel gradient, the convolution's kernel gradient with the
    layer's output gradient as the input. Why: JAX differentiates ``conv_transpose`` (an
    input-dilated convolution) into a convolution that XLA:CPU runs very slowly (the
    paper's 64-channel layer at batch 256 in 16 chunks: backward 804 ms against 35 ms in
    this form, forward 17 against 15 ms). Before this form, the layers were computed in
    phase form (each output pixel (2m + r, 2n + s) one of four phases, each a 2x2 window of
    the input; the 64-channel layer as a matrix product, the image layer as a 3x3
    convolution); this form is faster in both layers: 64 channels,
    forward 22 -> 14 ms, backward 61 -> 32 ms; the image layer 2.7 -> 2.3 and 12.8 -> 3.8
    ms (measured; training step 162-171 -> 136-144 ms in interleaved runs).

    Example:
        >>> x, kernel = jnp.ones((2, 7, 7, 8)), jnp.ones((4, 4, 8, 3))
        >>> _doubling_conv_transpose(x, kernel, jnp.zeros(3)).shape
        (2, 14, 14, 3)
    """
    return _transpose_of_halving(x, kernel) + bias


@jax.custom_vjp
def _transpose_of_halving(x, kernel):
    batch, height, width, _ = x.shape
    doubled = jax.ShapeDtypeStruct((batch, 2 * height, 2 * width, kernel.shape[3]), x.dtype)
    halving_kernel = _as_halving_kernel(kernel)
    (y,) = jax.linear_transpose(lambda image: _halving_convolution(image, halving_kernel), doubled)(x)
    return y


def _transpose_of_halving_forward(x, kernel):
    return _transpose_of_halving(x, kernel), (x, kernel)


def _transpose_of_halving_backward(residuals, y_gradient):
    x, kernel = residuals
    halving_kernel = _as_halving_kernel(kernel)
    x_gradient = _halving_convolution(y_gradient, halving_kernel)
    _, kernel_vjp = jax.vjp(lambda k: _halving_convolution(y_gradient, k), halving_kernel)
    (halving_kernel_gradient,) = kernel_vjp(x)
    return x_gradient, _as_halving_kernel(halving_kernel_gradient)


_transpose_of_halving.defvjp(_transpose_of_halving_forward, _transpose_of_halving_backward)


class MLPVAE(nnx.Module):
    """A small dense VAE (8x8 digits, tests)."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        self.image_shape = config.image_shape
        widths = (config.pixels, *config.hidden)
        self.encoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.mean = nnx.Linear(widths[-1], config.latent, rngs=rngs)
        self.log_variance = nnx.Linear(widths[-1], config.latent, rngs=rngs)
        back = (config.latent, *reversed(config.hidden))
        self.decoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(back[:-1], back[1:])])
        self.output = nnx.Linear(back[-1], config.pixels, rngs=rngs)

    def encode(self, images):
        hidden = images.reshape(images.shape[0], -1)
        for layer in self.encoder:
            hidden = nnx.relu(layer(hidden))
        return self.mean(hidden), self.log_variance(hidden)

    def decode(self, z):
        hidden = z
        for layer in self.decoder:
            hidden = nnx.relu(layer(hidden))
        return self.output(hidden).reshape(z.shape[0], *self.image_shape, 1)


def build_model(config: VAEConfig, key) -> nnx.Module:
    cls = ConvVAE if config.architecture == "conv" else MLPVAE
    return cls(config, rngs=nnx.Rngs(params=key))


@functools.lru_cache(maxsize=16)
def _graph(config: VAEConfig):
    """The static half of ``nnx.split``: the same for every key."""
    return nnx.split(nnx.eval_shape(lambda: build_model(config, jax.random.key(0))))[0]


def init_params(key, config: VAEConfig):
    """Fresh parameters (an ``nnx.State``); works under ``jax.vmap`` over keys."""
    return nnx.split(build_model(config, key))[1]


def parameter_count(config: VAEConfig) -> int:
    state = jax.eval_shape(lambda: init_params(jax.random.key(0), config))
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(state)))


def _model(config: VAEConfig, params):
    return nnx.merge(_graph(config), params)


def _per_image_loss(model, images, noise):
    """BCE summed over pixels + KL(q(z|x) || N(0, I)), per image, with the reparameterised
    z = mean + sigma * ``noise`` (standard normal, (N, latent))."""
    mean, log_variance = model.encode(images)
    logits = model.decode(mean + jnp.exp(0.5 * log_variance) * noise)
    bce = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, images), axis=(1, 2, 3))
    kl = 0.5 * jnp.sum(jnp.exp(log_variance) + mean**2 - 1.0 - log_variance, axis=-1)
    return bce + kl


def _noise(key, config: VAEConfig, images):
    """The reparameterisation's standard normal draws for ``images``, drawn for the whole
    batch (chunked or not, the same draws)."""
    return jax.random.normal(key, (images.shape[0], config.latent), images.dtype)


# On a CPU the conv model's training batch goes through the network in chunks of at least
# CPU_CHUNK images, at most CPU_CHUNKS of them (unrolled), CPU_LANES chunks at a time
# (jaxcollapse._fusion.value_and_grad_in_lanes): each layer's arrays then stay in cache,
# the two cores work on two chunks, and the temporaries stay small. A batch of 256 in 16
# chunks trained 1.3-1.5x faster than in one pass (8 and 32 chunks were no better); in two
# lanes 15-18 % faster again than all chunks at once (measured).
CPU_CHUNK, CPU_CHUNKS, CPU_LANES = 16, 16, 2


def _conv_on_cpu(config: VAEConfig) -> bool:
    """The case XLA:CPU's convolutions shape: host loop, runs in turn, chunked batches."""
    return config.architecture == "conv" and jax.default_backend() == "cpu"


# XLA:CPU sends convolutions, dot products and reductions to YNNPACK by default; its own
# (Eigen) convolutions trained the conv VAE 5 % faster (interleaved runs, batch 256: a
# step 140-144 -> 131-136 ms), while YNNPACK's reductions are much faster than XLA's
# loops (without them: 166-169 ms). Set for the conv model's CPU training step only.
CPU_CONV_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


@functools.lru_cache(maxsize=1)
def _xla_accepts_cpu_conv_options() -> bool:
    """Whether this XLA knows :data:`CPU_CONV_COMPILER_OPTIONS` (an option it does not know
    fails the compilation); probed once per process."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_CONV_COMPILER_OPTIONS).lower(1.0).compile()
    except Exception:  # another jaxlib: its own defaults
        return False
    return True


def _compiler_options(config: VAEConfig) -> tuple:
    """:data:`CPU_CONV_COMPILER_OPTIONS` for the conv model on a CPU where XLA accepts them,
    else none; as items."""
    if _conv_on_cpu(config) and _xla_accepts_cpu_conv_options():
        return tuple(CPU_CONV_COMPILER_OPTIONS.items())
    return ()


def _chunk_size(config: VAEConfig, batch: int) -> int | None:
    return max(CPU_CHUNK, -(-batch // CPU_CHUNKS)) if _conv_on_cpu(config) else None


def negative_elbo(key, config: VAEConfig, params, images):
    """Mean negative ELBO (BCE + KL, one z draw per image) of ``images`` under ``params``."""
    images = jnp.asarray(images)
    return jnp.mean(_per_image_loss(_model(config, params), images, _noise(key, config, images)))


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
    graph = _graph(config)

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


@keep_freed_memory()
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

    Example:
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
    for epoch in range(train_config.epochs):
        order, step_keys = plan(epoch_keys[:, epoch], weights)
        total = 0.0
        for index in range(trainer.steps):
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


def generate(key, config: VAEConfig, params, n: int, mode: str = "mean"):
    """n images decoded from z ~ N(0, I): decoder means, or Bernoulli draws of them."""
    require_choice("sample mode", mode, SAMPLE_MODES)
    z, pixel_key = _latents(key, config, n)
    return _pixels(pixel_key, decode_means(config, params, z), mode)


def _latents(key, config: VAEConfig, n: int):
    """:func:`generate`'s z (n, latent) and the key of its Bernoulli draws."""
    latent_key, pixel_key = jax.random.split(key)
    return jax.random.normal(latent_key, (n, config.latent)), pixel_key


def _pixels(pixel_key, means, mode: str):
    return means if mode == "mean" else jax.random.bernoulli(pixel_key, means).astype(means.dtype)


def decode_means(config: VAEConfig, params, z):
    """The decoder's pixel means (N, H, W, 1) of latents ``z`` (N, latent).

    Example:
        >>> config = VAEConfig(image_shape=(8, 8), latent=2, architecture="mlp", hidden=(8,))
        >>> decode_means(config, init_params(jax.random.key(0), config), jnp.zeros((3, 2))).shape
        (3, 8, 8, 1)
    """
    return jax.nn.sigmoid(_model(config, params).decode(jnp.asarray(z)))


def encode_means(config: VAEConfig, params, images):
    """Latent means of ``images`` under the encoder of ``params`` (Figure 8)."""
    return _model(config, params).encode(jnp.asarray(images))[0]


def vae_family(config: VAEConfig, train_config: TrainConfig = TrainConfig(), mode: str = "mean") -> Family:
    """The VAE as a :class:`Family`: data rows are flattened images (n, H W)."""
    require_choice("sample mode", mode, SAMPLE_MODES)
    shape = (*config.image_shape, 1)

    def fit(key, data, weights):
        return train(key, config, train_config, data.reshape(-1, *shape), weights)[0]

    def sample(key, params, n):
        return generate(key, config, params, n, mode).reshape(n, config.pixels)

    def metrics(params, reference: Any):
        return {"negative_elbo": negative_elbo(jax.random.key(0), config, params, reference)}

    return Family(name="vae", dim=config.pixels, fit=fit, sample=sample, metrics=metrics)
