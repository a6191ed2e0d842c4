"""Fusion boundaries: the same values, and a loop that XLA:CPU keeps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcollapse._xla_cpu.fusion import after, gradient_boundary, materialize, value_and_grad_in_lanes

WEIGHTS = jnp.arange(6.0).reshape(2, 3)


def _loss(boundary):
    return lambda x: jnp.sum(jnp.sin(boundary(x)) * WEIGHTS)


def test_gradient_boundary_passes_values_and_gradients_unchanged():
    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    np.testing.assert_array_equal(jax.jit(gradient_boundary)(x), x)
    expected = jax.grad(_loss(lambda y: y))(x)
    np.testing.assert_array_equal(jax.jit(jax.grad(_loss(gradient_boundary)))(x), expected)


def test_every_transformation_applies():
    # primitives, not a custom_vjp: forward mode and higher orders work too
    f, g = _loss(gradient_boundary), _loss(lambda y: y)
    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    tangent = jnp.ones_like(x)
    np.testing.assert_allclose(jax.jvp(f, (x,), (tangent,))[1], jax.jvp(g, (x,), (tangent,))[1], rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.hessian(f))(x), jax.hessian(g)(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.vmap(jax.grad(f))(jnp.stack([x, 2 * x])),
                               jax.vmap(jax.grad(g))(jnp.stack([x, 2 * x])), rtol=1e-6)
    h = lambda x: jnp.sum(materialize(jnp.sin(x)) * WEIGHTS)
    np.testing.assert_allclose(jax.jit(jax.grad(h))(x), jax.grad(g)(x), rtol=1e-6)
    np.testing.assert_allclose(jax.jvp(h, (x,), (tangent,))[1], jax.jvp(g, (x,), (tangent,))[1], rtol=1e-6)


def test_a_nan_where_the_trip_count_is_read_gives_the_same_identity():
    weights = jnp.array([[jnp.nan, 1, 2], [3, 4, 5]])
    grad = jax.jit(jax.grad(lambda y: jnp.sum(gradient_boundary(y) * weights)))(jnp.ones((2, 3)))
    np.testing.assert_array_equal(grad, weights)
    tree = {"a": jnp.array([jnp.nan, 1.0]), "b": jnp.arange(3), "empty": jnp.zeros((0,))}
    out = jax.jit(materialize)(tree)
    for key in tree:
        np.testing.assert_array_equal(out[key], tree[key])
    assert jax.jit(materialize)({}) == {}
    # leaves that are not floating point pass through untouched: integers, keys
    key = jax.random.key(3)
    kept = jax.jit(materialize)({"key": key, "bf16": jnp.ones(2, jnp.bfloat16)})
    np.testing.assert_array_equal(jax.random.key_data(kept["key"]), jax.random.key_data(key))
    assert kept["bf16"].dtype == jnp.bfloat16


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the loop is built on a CPU only")
def test_the_loop_survives_compilation():
    def summed_twice(x):
        total = materialize(jnp.sum(x, axis=0))
        return total * 2.0, total + 1.0

    text = jax.jit(summed_twice).lower(jnp.ones((16, 8))).compile().as_text()
    assert text.count(" while(") == 1
    # the boundary's forward pass is the plain identity; its gradient takes the loop
    forward = jax.jit(lambda x: jnp.sin(gradient_boundary(x)))
    backward = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(gradient_boundary(x)))))
    assert " while(" not in forward.lower(jnp.ones(4)).compile().as_text()
    assert backward.lower(jnp.ones(4)).compile().as_text().count(" while(") == 1


def _two_layer_loss(params, x, y):
    hidden = jnp.tanh(x @ params["w1"])
    return jnp.sum((hidden @ params["w2"] - y) ** 2) / 100.0


def _two_layer_problem(rows=40, width=256, hidden=1024):
    keys = jax.random.split(jax.random.key(0), 4)
    params = {"w1": jax.random.normal(keys[0], (width, hidden)) / 16, "w2": jax.random.normal(keys[1], (hidden, 3))}
    return params, (jax.random.normal(keys[2], (rows, width)), jax.random.normal(keys[3], (rows, 3)))


def test_value_and_grad_in_lanes_equals_one_pass():
    params, rows = _two_layer_problem()
    value, grads = jax.value_and_grad(_two_layer_loss)(params, *rows)
    # uneven last chunks, one chunk, one lane, one pass
    for chunk, lanes in ((7, 2), (7, 3), (40, 2), (9, 1), (5, 8), (None, 2)):
        ours, our_grads = jax.jit(lambda p, *r: value_and_grad_in_lanes(_two_layer_loss, p, r, chunk, lanes))(
            params, *rows)
        np.testing.assert_allclose(ours, value, rtol=1e-5)
        for name in params:
            np.testing.assert_allclose(our_grads[name], grads[name], rtol=1e-4, atol=1e-5 * jnp.max(grads[name]))


def test_after_passes_the_value_whatever_the_dependency():
    rows = (jnp.arange(6.0), jnp.arange(3))
    for dependency in ({"g": jnp.ones(2)}, jnp.array([jnp.nan, 1.0]), {"empty": jnp.zeros((0,))}, {}):
        out = jax.jit(after)(rows, dependency)
        for a, b in zip(out, rows):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's schedule")
def test_lanes_keep_fewer_chunks_in_flight():
    # all 16 chunks at once (as many lanes as chunks: nothing waits), 4, 2 and 1 lane: each
    # chunk's activations are 80 x 1024 floats, its share of the first layer's gradient
    # 256 x 1024 (measured: 51, 26, 14 and 8 chunk activations of temporaries)
    params, rows = _two_layer_problem(rows=16 * 80)

    def temporaries(lanes):
        step = jax.jit(lambda p, *r: value_and_grad_in_lanes(_two_layer_loss, p, r, 80, lanes))
        return step.lower(params, *rows).compile().memory_analysis().temp_size_in_bytes

    sizes = [temporaries(lanes) for lanes in (16, 4, 2, 1)]
    assert sizes[0] > 16 * 80 * 1024 * 4  # every chunk's activations
    assert all(fewer < more for more, fewer in zip(sizes, sizes[1:]))
    assert sizes[2] < 0.35 * sizes[0]
