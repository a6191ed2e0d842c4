"""Convolution-heavy training on XLA:CPU: the conv VAE's transposed convolutions and the
compiler options of its training step.

:func:`doubling_conv_transpose` is the function ``nnx.ConvTranspose(kernel 4, stride 2,
padding 2)`` computes, of the same parameters, differentiated by hand into the kind of
convolution XLA:CPU runs fast (see there); the conv VAE takes it as its ``conv_transpose``
hook when it trains on a CPU. :data:`COMPILER_OPTIONS` are the XLA flags of that training
step, and :func:`accepted_compiler_options` says whether this XLA knows them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["doubling_conv_transpose", "COMPILER_OPTIONS", "accepted_compiler_options"]


def _halving_convolution(x, kernel):
    """Conv(kernel 4, stride 2, padding 1), NHWC / HWIO: what the encoder's ``nnx.Conv`` layers compute."""
    return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _as_halving_kernel(kernel):
    """The (4, 4, out, in) kernel of the halving convolution whose transpose is the
    doubling layer of ``kernel`` (4, 4, in, out): flipped in space, in and out swapped.
    Its own inverse."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def doubling_conv_transpose(x, kernel, bias):
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

    Examples:
        >>> x, kernel = jnp.ones((2, 7, 7, 8)), jnp.ones((4, 4, 8, 3))
        >>> doubling_conv_transpose(x, kernel, jnp.zeros(3)).shape
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


# XLA:CPU sends convolutions, dot products and reductions to YNNPACK by default; its own
# (Eigen) convolutions trained the conv VAE 5 % faster (interleaved runs, batch 256: a
# step 140-144 -> 131-136 ms), while YNNPACK's reductions are much faster than XLA's
# loops (without them: 166-169 ms). Set for the conv model's CPU training step only.
COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}


@functools.lru_cache(maxsize=1)
def accepted_compiler_options() -> tuple:
    """:data:`COMPILER_OPTIONS` as items where this XLA knows them, else none (an option it
    does not know fails the compilation); probed once per process, by compiling for the
    default backend, so ask only where that is the CPU.

    Examples:
        >>> dict(accepted_compiler_options()) in ({}, COMPILER_OPTIONS)
        True
    """
    try:
        jax.jit(lambda x: x + 1, compiler_options=COMPILER_OPTIONS).lower(1.0).compile()
    except Exception:  # another jaxlib: its own defaults
        return ()
    return tuple(COMPILER_OPTIONS.items())
