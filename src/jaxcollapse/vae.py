"""The VAE family (paper section 5.1, Figures 8 and 9) under one name: the model
(:mod:`jaxcollapse.vae_model`, plain JAX on every platform) and its training
(:mod:`jaxcollapse.vae_train`, which alone knows how a step is best computed on XLA:CPU).

Examples:
    >>> from jaxcollapse.vae import VAEConfig, parameter_count
    >>> parameter_count(VAEConfig())
    647081
"""

from .vae_model import (
    ARCHITECTURES, SAMPLE_MODES, ConvVAE, MLPVAE, TrainConfig, VAEConfig, build_model, decode_means, encode_means,
    generate, init_params, negative_elbo, parameter_count,
)
from .vae_train import TRAIN_LOOPS, VAEFit, sample_runs, train, train_runs, vae_family

__all__ = [
    "VAEConfig", "TrainConfig", "ConvVAE", "MLPVAE", "build_model", "init_params", "generate", "decode_means",
    "encode_means", "negative_elbo", "parameter_count", "ARCHITECTURES", "SAMPLE_MODES", "train", "train_runs",
    "TRAIN_LOOPS", "vae_family", "VAEFit", "sample_runs",
]
