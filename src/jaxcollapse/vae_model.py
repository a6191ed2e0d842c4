"""The VAE family (paper section 5.1, Figures 8 and 9), in Flax NNX and optax: the model.

A generation's ``fit`` trains a fresh VAE on its images; ``sample`` decodes z ~ N(0, I)
into the next generation's images (:func:`generate`: decoder means, the authors' choice,
or Bernoulli draws of them). Models cross every JAX transformation as a pure pytree:
:func:`init_params` and the training work on the ``nnx.State`` of parameters, merged with
a static graph definition inside the loss (``nnx.split`` / ``nnx.merge``), so
``jax.vmap`` over keys trains several independent runs at once (the paper used 5).

The model is plain JAX on every platform. Training lives in :mod:`jaxcollapse.vae_train`,
which decides how a step is computed where (on XLA:CPU it hands the conv model a
transposed convolution differentiated by hand, through :class:`ConvVAE`'s
``conv_transpose`` hook); :mod:`jaxcollapse.vae` publishes both under one name.

Architectures (``VAEConfig.architecture``):

* ``conv``, the paper's: Conv(1 -> 64, kernel 4, stride 2, padding 1) -> Conv(64 -> 128,
  k 4, s 2, p 1) -> dense to a 20-d mean and log-variance; the decoder mirrors it with a
  dense layer and transposed convolutions, sigmoid output; 647 081 parameters at 28x28;
* ``mlp``: dense layers (``hidden``), for 8x8 digits and fast tests.

Loss: binary cross-entropy summed over pixels plus KL(q(z|x) || N(0, I)), averaged over
the batch. Optimiser: Adam with L2 weight decay added to the gradient, as PyTorch's
``Adam(weight_decay=...)``: lr 1e-3, weight decay 1e-5, batch 256, 30 epochs by default.

Examples:
    >>> import jax, numpy as np
    >>> from jaxcollapse.images import load_images
    >>> from jaxcollapse.vae_train import train
    >>> images = load_images("digits").images[:256]
    >>> config = VAEConfig(image_shape=(8, 8), latent=4, architecture="mlp", hidden=(32,))
    >>> params, losses = train(jax.random.key(0), config, TrainConfig(epochs=3, batch_size=64), images)
    >>> generate(jax.random.key(1), config, params, 5).shape
    (5, 8, 8, 1)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ._validation import ConfigError, require_choice, require_int, require_positive

__all__ = [
    "VAEConfig", "TrainConfig", "ConvVAE", "MLPVAE", "build_model", "init_params", "generate", "decode_means",
    "encode_means", "negative_elbo", "parameter_count", "ARCHITECTURES", "SAMPLE_MODES",
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
    """The paper's convolutional VAE.

    ``conv_transpose(x, kernel, bias) -> y``, when given, computes the decoder's transposed
    convolutions in place of their ``nnx.ConvTranspose`` layers: the same function of the
    same parameters (kernel (4, 4, in, out), stride 2, padding 2), computed or differentiated
    another way (the CPU trainer passes ``jaxcollapse._xla_cpu.conv.doubling_conv_transpose``:
    XLA:CPU runs the 64-channel layer's backward pass 23x faster). A static attribute: the
    parameters are the same with or without it.
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs, conv_transpose: Callable | None = None):
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
        self.conv_transpose = conv_transpose

    def encode(self, images):
        hidden = nnx.relu(self.conv2(nnx.relu(self.conv1(images))))
        hidden = hidden.reshape(hidden.shape[0], -1)
        return self.mean(hidden), self.log_variance(hidden)

    def decode(self, z):
        hidden = nnx.relu(self.expand(z)).reshape(z.shape[0], *self.grid)
        hidden = nnx.relu(self._transposed(self.deconv1, hidden))
        return self._transposed(self.deconv2, hidden)  # logits (N, H, W, 1)

    def _transposed(self, layer: nnx.ConvTranspose, x):
        if self.conv_transpose is None:
            return layer(x)
        return self.conv_transpose(x, layer.kernel[...], layer.bias[...])


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


def build_model(config: VAEConfig, key, conv_transpose: Callable | None = None) -> nnx.Module:
    """A fresh model; ``conv_transpose`` is the conv architecture's hook (see :class:`ConvVAE`)."""
    if config.architecture == "conv":
        return ConvVAE(config, rngs=nnx.Rngs(params=key), conv_transpose=conv_transpose)
    return MLPVAE(config, rngs=nnx.Rngs(params=key))


@functools.lru_cache(maxsize=16)
def _graph(config: VAEConfig, conv_transpose: Callable | None = None):
    """The static half of ``nnx.split``: the same for every key."""
    return nnx.split(nnx.eval_shape(lambda: build_model(config, jax.random.key(0), conv_transpose)))[0]


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


def negative_elbo(key, config: VAEConfig, params, images):
    """Mean negative ELBO (BCE + KL, one z draw per image) of ``images`` under ``params``."""
    images = jnp.asarray(images)
    return jnp.mean(_per_image_loss(_model(config, params), images, _noise(key, config, images)))


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

    Examples:
        >>> config = VAEConfig(image_shape=(8, 8), latent=2, architecture="mlp", hidden=(8,))
        >>> decode_means(config, init_params(jax.random.key(0), config), jnp.zeros((3, 2))).shape
        (3, 8, 8, 1)
    """
    return jax.nn.sigmoid(_model(config, params).decode(jnp.asarray(z)))


def encode_means(config: VAEConfig, params, images):
    """Latent means of ``images`` under the encoder of ``params`` (Figure 8)."""
    return _model(config, params).encode(jnp.asarray(images))[0]
