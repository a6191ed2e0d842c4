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

The same loop orders work: :func:`after` makes a value wait for others, and
:func:`value_and_grad_in_lanes` uses it to run a batch's chunks, forward and backward, a
few at a time, so that the temporaries of a CPU program stay small (see there).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["materialize", "gradient_boundary", "after", "value_and_grad_in_lanes"]


def _loop_once(value, waits, carried=()):
    """``value`` (a pytree) after a loop that runs once, or not at all when one of the
    scalars ``waits`` is NaN: the same result either way, and a trip count XLA cannot know,
    so it neither removes nor unrolls the loop. The body's ``where`` keeps XLA from
    simplifying the loop away as an identity. ``carried`` go through the loop unchanged
    (what :func:`after` waits for)."""
    trips = jnp.all(jnp.stack([w == w for w in waits])).astype(jnp.int32)

    def body(carry):
        count, current, rest = carry
        return count + 1, jax.tree.map(lambda v: jnp.where(count < 0, jnp.zeros_like(v), v), current), rest

    return jax.lax.while_loop(lambda carry: carry[0] < trips, body, (jnp.int32(0), value, carried))[1]


def _through_loop(x):
    """``x`` written to a buffer of its own: a loop whose trip count reads its first value."""
    return _loop_once(x, (jnp.ravel(x)[0] if x.size else jnp.zeros((), x.dtype),))


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

    Examples:
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

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> jax.grad(lambda x: jnp.sum(gradient_boundary(x) ** 2))(jnp.arange(3.0))
        Array([0., 2., 4.], dtype=float32)
    """
    return _gradient_boundary_p.bind(jnp.asarray(x))


def after(value, dependency):
    """``value``, available only once every array of ``dependency`` (a pytree) is computed:
    an edge of the program's schedule that XLA keeps (a loop that carries the value and a
    scalar of each dependency, and whose trip count reads them, so it is neither removed
    nor unrolled). Not differentiable in ``value``: meant for data (arrays of numbers).

    Examples:
        >>> import jax.numpy as jnp
        >>> after(jnp.arange(3.0), {"g": jnp.ones(2)})
        Array([0., 1., 2.], dtype=float32)
    """
    waits = tuple(jnp.ravel(leaf)[0] for leaf in jax.tree.leaves(dependency) if jnp.size(leaf))
    return _loop_once(value, waits, carried=waits) if waits else value


def value_and_grad_in_lanes(loss, params, rows, chunk: int | None, lanes: int):
    """``jax.value_and_grad(loss)(params, *rows)`` for a loss that is a sum over rows,
    computed ``chunk`` rows at a time: the value and gradient of each chunk, summed
    (``chunk`` None: one pass, exactly ``jax.value_and_grad``).

    ``rows`` is a tuple of arrays sharing a leading axis; ``loss(params, *chunk_rows)``
    returns a scalar, and the loss of the whole is the sum of the chunks' (normalise by a
    constant of the whole batch inside ``loss``). Chunk c goes to lane c mod ``lanes``; in a
    lane each chunk starts only when the previous one's gradient is done (:func:`after`),
    so at most ``lanes`` chunks are in flight and their temporaries are all the program
    holds. Why: XLA:CPU otherwise runs every chunk's forward pass first and keeps all their
    activations; the conv VAE's step at batch 256 in 16 chunks needed 93 MB of temporaries,
    which glibc serves by ``mmap`` on XLA's worker threads and unmaps after every call
    (24,000 page faults a step, 14 % of the CPU time in the kernel). In two lanes it needs
    19 MB, a few hundred faults, and the step ran 15-18 % faster (measured).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.arange(10.0)
        >>> loss = lambda w, x: jnp.sum((w * x) ** 2)
        >>> value_and_grad_in_lanes(loss, 2.0, (x,), chunk=3, lanes=2)
        (Array(1140., dtype=float32), Array(1140., dtype=float32, weak_type=True))
    """
    total = len(rows[0])
    value_and_grad = jax.value_and_grad(loss)
    if chunk is None:
        return value_and_grad(params, *rows)
    values, lane_grads = [], [None] * lanes
    for index, start in enumerate(range(0, total, chunk)):
        lane = index % lanes
        pieces = tuple(array[start:start + chunk] for array in rows)
        if lane_grads[lane] is not None:
            pieces = after(pieces, lane_grads[lane])
        value, grads = value_and_grad(params, *pieces)
        values.append(value)
        lane_grads[lane] = grads if lane_grads[lane] is None else jax.tree.map(jnp.add, lane_grads[lane], grads)
    grads = lane_grads[0]
    for other in lane_grads[1:]:
        if other is not None:
            grads = jax.tree.map(jnp.add, grads, other)
    return sum(values[1:], values[0]), grads
