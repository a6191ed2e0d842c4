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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._validation import ConfigError, require_choice, require_int, require_positive
from .families.base import Family
from .images import check_images

__all__ = [
    "VAEConfig", "TrainConfig", "ConvVAE", "MLPVAE", "build_model", "init_params", "train", "generate",
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
        return self.deconv2(nnx.relu(self.deconv1(hidden)))  # logits (N, H, W, 1)


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


def _per_image_loss(model, images, key):
    """BCE summed over pixels + KL(q(z|x) || N(0, I)), per image, with a reparameterised z."""
    mean, log_variance = model.encode(images)
    z = mean + jnp.exp(0.5 * log_variance) * jax.random.normal(key, mean.shape, mean.dtype)
    logits = model.decode(z)
    bce = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, images), axis=(1, 2, 3))
    kl = 0.5 * jnp.sum(jnp.exp(log_variance) + mean**2 - 1.0 - log_variance, axis=-1)
    return bce + kl


def negative_elbo(key, config: VAEConfig, params, images):
    """Mean negative ELBO (BCE + KL, one z draw per image) of ``images`` under ``params``."""
    return jnp.mean(_per_image_loss(_model(config, params), jnp.asarray(images), key))


def train(key, config: VAEConfig, train_config: TrainConfig, images, weights=None):
    """Train a fresh VAE on ``images`` (N, H, W, 1) in [0, 1]; ``weights`` (N,) are 0/1
    masks of the rows that count (the data policies' buffers), default all. Returns the
    parameters and the mean loss of each epoch. Under ``jax.vmap`` over ``key`` it trains
    independent runs at once.

    Every epoch takes a fresh random order of the valid rows and ceil(N / batch) steps;
    masked rows (and the tail past the valid ones) carry no weight in a batch, and a batch
    with no valid row leaves the parameters and the optimiser unchanged.
    """
    if not isinstance(images, jax.core.Tracer):
        images = check_images(images)
        if images.shape[1:3] != tuple(config.image_shape):
            raise ConfigError(f"images are {images.shape[1]}x{images.shape[2]} but the model expects "
                              f"{config.image_shape[0]}x{config.image_shape[1]} (VAEConfig.image_shape)")
    images = jnp.asarray(images)
    rows = images.shape[0]
    weights = jnp.ones(rows, images.dtype) if weights is None else jnp.asarray(weights, images.dtype)
    batch = min(train_config.batch_size, rows)
    steps = -(-rows // batch)
    optimizer = train_config.optimizer()
    init_key, train_key = jax.random.split(key)
    params = init_params(init_key, config)
    graph = _graph(config)
    valid = jnp.sum(weights > 0)

    def loss(params, picked, picked_weights, key):
        per_image = _per_image_loss(nnx.merge(graph, params), picked, key)
        return jnp.sum(per_image * picked_weights) / jnp.maximum(jnp.sum(picked_weights), 1.0)

    def step(carry, inputs):
        params, opt_state = carry
        order, index, key = inputs
        positions = index * batch + jnp.arange(batch)
        picks = order[jnp.minimum(positions, rows - 1)]
        picked_weights = weights[picks] * (positions < valid)
        value, grads = jax.value_and_grad(loss)(params, images[picks], picked_weights, key)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        any_valid = jnp.sum(picked_weights) > 0
        new = jax.tree.map(lambda n, o: jnp.where(any_valid, n, o), (optax.apply_updates(params, updates), new_opt_state),
                           (params, opt_state))
        return new, value * jnp.sum(picked_weights)

    def epoch(carry, key):
        order_key, step_key = jax.random.split(key)
        # valid rows first, in random order
        scores = jnp.where(weights > 0, 0.0, 2.0) + jax.random.uniform(order_key, (rows,))
        order = jnp.argsort(scores)
        keys = jax.random.split(step_key, steps)
        carry, totals = jax.lax.scan(step, carry, (jnp.broadcast_to(order, (steps, rows)), jnp.arange(steps), keys))
        return carry, jnp.sum(totals) / jnp.maximum(jnp.sum(weights > 0), 1)

    (params, _), losses = jax.lax.scan(epoch, (params, optimizer.init(params)),
                                       jax.random.split(train_key, train_config.epochs))
    return params, losses


def generate(key, config: VAEConfig, params, n: int, mode: str = "mean"):
    """n images decoded from z ~ N(0, I): decoder means, or Bernoulli draws of them."""
    require_choice("sample mode", mode, SAMPLE_MODES)
    latent_key, pixel_key = jax.random.split(key)
    z = jax.random.normal(latent_key, (n, config.latent))
    means = jax.nn.sigmoid(_model(config, params).decode(z))
    if mode == "mean":
        return means
    return jax.random.bernoulli(pixel_key, means).astype(means.dtype)


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
