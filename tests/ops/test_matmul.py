"""ops.matmul: the canonical weight-gradient matmuls equal plain autodiff (values and gradients).

The custom VJP computes the same sums as XLA's own backward, in a different memory layout, so the
two agree in float64 to ~1e-15 (checked at 1e-12) and in float32 to rounding (checked at 1e-5
relative); bfloat16 inputs are checked at bfloat16 resolution (2^-8 relative).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxformers.ops.matmul import TRANSPOSE_GRAD_WIDTH_RATIO, batched_matmul, matmul, modality_matmul

FORMS = {
    "matmul": (matmul, (2, 5, 6), (6, 7)),
    # x more than twice as wide as the output: the backward transposes G instead of X.
    "matmul_narrow_output": (matmul, (2, 5, 9), (9, 4)),
    "modality_matmul": (modality_matmul, (2, 5, 6), (3, 6, 4)),
    "batched_matmul": (batched_matmul, (3, 5, 6), (3, 6, 4)),
}


def _inputs(form, dtype):
    _, x_shape, w_shape = FORMS[form]
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    return jax.random.normal(kx, x_shape, dtype), jax.random.normal(kw, w_shape, dtype)


def _grads(fn, x, w, canonical, transform=lambda f: f):
    def loss(x, w):
        return jnp.sum(jnp.sin(fn(x, w, canonical=canonical)))

    return jax.jit(jax.value_and_grad(transform(loss), argnums=(0, 1)))(x, w)


@pytest.mark.parametrize("form", FORMS)
def test_canonical_gradients_equal_plain_autodiff_in_float64(form):
    with jax.enable_x64(True):
        x, w = _inputs(form, jnp.float64)
        fn = FORMS[form][0]
        (v0, (dx0, dw0)), (v1, (dx1, dw1)) = _grads(fn, x, w, False), _grads(fn, x, w, True)
        np.testing.assert_allclose(v1, v0, rtol=1e-12)
        np.testing.assert_allclose(dx1, dx0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw1, dw0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_canonical_matches_under_remat_and_vmap(form):
    x, w = _inputs(form, jnp.float32)
    fn = FORMS[form][0]
    plain = _grads(fn, x, w, False)
    remat = _grads(fn, x, w, True, transform=jax.checkpoint)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    # vmap over a new leading batch of weights: the custom VJP has a batching rule.
    ws = jnp.stack([w, 2 * w])
    per = jax.vmap(lambda w: jax.grad(lambda w: jnp.sum(fn(x, w) ** 2))(w))(ws)
    ref = jax.vmap(lambda w: jax.grad(lambda w: jnp.sum(fn(x, w, canonical=False) ** 2))(w))(ws)
    np.testing.assert_allclose(per, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("form", FORMS)
def test_bfloat16_inputs_give_bfloat16_gradients_close_to_plain(form):
    x, w = _inputs(form, jnp.bfloat16)
    fn = FORMS[form][0]
    (_, (dx0, dw0)), (_, (dx1, dw1)) = _grads(fn, x, w, False), _grads(fn, x, w, True)
    assert dx1.dtype == dw1.dtype == jnp.bfloat16
    for a, b in ((dx0, dx1), (dw0, dw1)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(b, a, rtol=2**-6, atol=2**-6 * np.abs(a).max())


@pytest.mark.parametrize("form", ["matmul", "matmul_narrow_output"])
def test_weight_gradient_is_a_row_major_dot_in_the_compiled_backward(form):
    x, w = _inputs(form, jnp.float32)
    x = x.reshape(-1, x.shape[-1])
    (n, i), o = x.shape, w.shape[1]

    def compiled_hlo(canonical):
        def sgd_step(x, w):  # dW consumed by an update, as in training (not a jit output)
            return w - 0.1 * jax.grad(lambda w: jnp.sum(matmul(x, w, canonical=canonical) ** 2))(w)

        return jax.jit(sgd_step).lower(x, w).compile().as_text()

    # Plain autodiff contracts x and g over their first (token) dimension; the canonical VJP
    # contracts [i, n] @ [n, o] (or [o, n] @ [n, i] when x is the wider) in the row-major form.
    assert "lhs_contracting_dims={0}" in compiled_hlo(False)
    hlo = compiled_hlo(True)
    assert "lhs_contracting_dims={0}" not in hlo
    # the one token-major operand the backward copies transposed
    copied = f"f32[{o},{n}]" if i > TRANSPOSE_GRAD_WIDTH_RATIO * o else f"f32[{i},{n}]"
    assert f"= {copied}" in hlo


def test_sharded_over_a_mesh_equals_one_device():
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 6))
    w = jax.random.normal(jax.random.PRNGKey(2), (6, 10))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ws = jax.device_put(w, NamedSharding(mesh, P(None, "model")))
    sharded = _grads(matmul, xs, ws, True)
    single = _grads(matmul, x, w, False)
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fn, x_shape, w_shape, match", [
    (matmul, (4, 6), (5, 7), "contracted dimension"),
    (matmul, (4, 6), (2, 6, 7), "expected x"),
    (modality_matmul, (2, 4, 6), (6, 7), "expected kernel"),
    (batched_matmul, (3, 4, 6), (2, 6, 7), "expected x"),
])
def test_bad_shapes_are_a_one_line_error(fn, x_shape, w_shape, match):
    with pytest.raises(ValueError, match=match):
        fn(jnp.ones(x_shape), jnp.ones(w_shape))


def test_mixed_dtypes_are_an_error_not_a_silent_upcast():
    with pytest.raises(ValueError, match="cast both"):
        matmul(jnp.ones((4, 6), jnp.bfloat16), jnp.ones((6, 7), jnp.float32))
