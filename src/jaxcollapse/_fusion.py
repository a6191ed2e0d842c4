"""Fusion boundaries that XLA:CPU keeps.

XLA fuses a chain of elementwise operations into every consumer of it, duplicating the
chain rather than writing its result once, and on a CPU ``optimization_barrier`` does not
stop it (XLA:CPU expands the barrier before fusing). Where a chain is long and has several
consumers the recomputation dominates: the gradient of a transformer's residual stream,
summed over the layers above, recomputed in every layer; a gradient summed over a batch's
chunks, recomputed in each of the optimiser's updates. :func:`materialize` writes a value
to a buffer of its own through the one construct XLA:CPU neither fuses nor removes, a loop;
:func:`gradient_boundary` does it to the gradient that flows back through a value.

Both are primitives, linear in their argument, so every transformation applies: ``vmap``,
forward and reverse differentiation to any order (a ``custom_vjp`` would refuse ``jvp``).
Off the CPU they lower to nothing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["materialize", "gradient_boundary"]


def _through_loop(x):
    """``x`` after a loop that runs once (or not at all: its trip count reads the first
    value, so a NaN there gives zero trips and the same result). The body's ``where``
    keeps XLA from removing the loop as an identity."""
    first = jnp.ravel(x)[0] if x.size else jnp.zeros((), x.dtype)
    trips = (first == first).astype(jnp.int32)

    def body(carry):
        count, value = carry
        return count + 1, jnp.where(count < 0, jnp.zeros_like(value), value)

    return jax.lax.while_loop(lambda carry: carry[0] < trips, body, (jnp.int32(0), x))[1]


def _identity_primitive(name: str) -> Primitive:
    primitive = Primitive(name)
    primitive.def_impl(lambda x: x)  # op by op there is nothing to fuse
    primitive.def_abstract_eval(lambda x: x)
    batching.defvectorized(primitive)
    mlir.register_lowering(primitive, lambda ctx, x: [x])
    return primitive


_materialize_p = _identity_primitive("materialize")
mlir.register_lowering(_materialize_p, mlir.lower_fun(_through_loop, multiple_results=False), platform="cpu")
ad.deflinear2(_materialize_p, lambda cotangent, _: [_materialize_p.bind(cotangent)])

_gradient_boundary_p = _identity_primitive("gradient_boundary")
ad.deflinear2(_gradient_boundary_p, lambda cotangent, _: [_materialize_p.bind(cotangent)])


def materialize(tree):
    """``tree`` (a pytree of arrays), each floating-point leaf computed into a buffer of its
    own on a CPU; the identity elsewhere, for other leaves (integers, keys) and for every
    transformation.

    Example:
        >>> import jax.numpy as jnp
        >>> materialize({"w": jnp.arange(3.0)})["w"]
        Array([0., 1., 2.], dtype=float32)
    """
    def leaf_through(leaf):
        floating = jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
        return _materialize_p.bind(jnp.asarray(leaf)) if floating else leaf

    return jax.tree.map(leaf_through, tree)


def gradient_boundary(x):
    """The identity, whose gradient (the cotangent of reverse differentiation) is
    :func:`materialize`-d on the way back; its forward pass and tangents are untouched.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> jax.grad(lambda x: jnp.sum(gradient_boundary(x) ** 2))(jnp.arange(3.0))
        Array([0., 2., 4.], dtype=float32)
    """
    return _gradient_boundary_p.bind(jnp.asarray(x))
