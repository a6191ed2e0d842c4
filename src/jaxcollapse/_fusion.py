"""Fusion boundaries that XLA:CPU keeps.

XLA fuses a chain of elementwise operations into every consumer of it, duplicating the
chain rather than writing its result once, and on a CPU ``optimization_barrier`` does not
stop it (XLA:CPU expands the barrier before fusing). Where a chain is long and has several
consumers the recomputation dominates: the gradient of a transformer's residual stream,
summed over the layers above, recomputed in every layer; a gradient summed over a batch's
chunks, recomputed in each of the optimiser's updates. :func:`materialize` writes a value
to a buffer of its own through the one construct XLA:CPU neither fuses nor removes, a loop;
:func:`gradient_boundary` does it to the gradient that flows back through a value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["materialize", "gradient_boundary"]


def _through_loop(tree):
    """``tree`` after a loop that runs once (or not at all: its trip count reads the first
    value of one leaf, so a NaN there gives zero trips and the same result). The body's
    ``where`` keeps XLA from removing the loop as an identity."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return tree
    first = jnp.ravel(leaves[0])[0] if leaves[0].size else jnp.zeros(())
    trips = (first == first).astype(jnp.int32)

    def body(carry):
        count, values = carry
        return count + 1, jax.tree.map(lambda v: jnp.where(count < 0, jnp.zeros_like(v), v), values)

    with jax.named_scope("materialize"):  # names the loop in compiled programs (tests look for it)
        return jax.lax.while_loop(lambda carry: carry[0] < trips, body, (jnp.int32(0), tree))[1]


def materialize(tree):
    """``tree`` (a pytree of arrays), computed into buffers of its own on a CPU; the
    identity elsewhere. Not differentiable (it is meant for gradients and optimiser
    inputs); see :func:`gradient_boundary` for the forward pass of a model.

    Example:
        >>> import jax.numpy as jnp
        >>> materialize({"w": jnp.arange(3.0)})["w"]
        Array([0., 1., 2.], dtype=float32)
    """
    return jax.lax.platform_dependent(tree, cpu=_through_loop, default=lambda t: t)


@jax.custom_vjp
def gradient_boundary(x):
    """The identity, whose gradient is :func:`materialize`-d on the way back.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> jax.grad(lambda x: jnp.sum(gradient_boundary(x) ** 2))(jnp.arange(3.0))
        Array([0., 2., 4.], dtype=float32)
    """
    return x


def _boundary_forward(x):
    return x, None


def _boundary_backward(_, cotangent):
    return (materialize(cotangent),)


gradient_boundary.defvjp(_boundary_forward, _boundary_backward)
