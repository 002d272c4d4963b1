"""Softmax attention reference: masks, GQA, dtype handling and gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxformers.ops.attention import dot_product_attention


def _qkv(key, b=2, t=6, h=4, kvh=2, d=8, dtype=jnp.float32):
    kq, kk, kv = jax.random.split(key, 3)
    q = jax.random.normal(kq, (b, t, h, d), dtype)
    k = jax.random.normal(kk, (b, t, kvh, d), dtype)
    v = jax.random.normal(kv, (b, t, kvh, d), dtype)
    return q, k, v


def _naive(q, k, v, causal, allowed=None):
    """allowed: an optional boolean [B, 1, T, S] mask; its fully masked rows give 0."""
    group = q.shape[2] // k.shape[2]
    k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
    s = jnp.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    if causal:
        t = q.shape[1]
        s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
    if allowed is None:
        return jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(s, -1), v)
    p = jnp.where(allowed, jax.nn.softmax(jnp.where(allowed, s, -1e30), -1), 0.0)
    return jnp.einsum("bhts,bshd->bthd", p, v)


@pytest.mark.parametrize("causal", [True, False])
def test_gqa_equals_repeated_heads(causal):
    q, k, v = _qkv(jax.random.PRNGKey(0))
    out = dot_product_attention(q, k, v, causal=causal)
    chex.assert_shape(out, q.shape)
    np.testing.assert_allclose(out, _naive(q, k, v, causal), atol=1e-5, rtol=1e-5)


def test_jit_equals_no_jit():
    q, k, v = _qkv(jax.random.PRNGKey(1))
    np.testing.assert_allclose(
        jax.jit(dot_product_attention)(q, k, v), dot_product_attention(q, k, v), atol=1e-6
    )


def test_causal_output_ignores_future_keys():
    q, k, v = _qkv(jax.random.PRNGKey(2))
    out = dot_product_attention(q, k, v, causal=True)
    k2, v2 = k.at[:, 4:].set(7.0), v.at[:, 4:].set(-3.0)
    out2 = dot_product_attention(q, k2, v2, causal=True)
    np.testing.assert_array_equal(out[:, :4], out2[:, :4])


def test_segment_ids_isolate_packed_documents():
    q, k, v = _qkv(jax.random.PRNGKey(3), b=1, t=6)
    seg = jnp.array([[0, 0, 0, 1, 1, 1]])
    out = dot_product_attention(q, k, v, causal=True, segment_ids=seg)
    second = dot_product_attention(q[:, 3:], k[:, 3:], v[:, 3:], causal=True)
    np.testing.assert_allclose(out[:, 3:], second, atol=1e-6)


def test_softmax_runs_in_float32_for_bfloat16_inputs():
    q, k, v = _qkv(jax.random.PRNGKey(4), dtype=jnp.bfloat16)
    out = dot_product_attention(q, k, v)
    assert out.dtype == jnp.bfloat16
    ref = _naive(*(x.astype(jnp.float32) for x in (q, k, v)), causal=True)
    # bf16 inputs and output rounding: ~3 significant digits (eps 2^-8) on O(1) values.
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=3e-2)


def test_gradients_match_finite_differences_in_float64():
    with jax.enable_x64(True):
        q, k, v = _qkv(jax.random.PRNGKey(5), b=1, t=4, h=2, kvh=1, d=4, dtype=jnp.float64)
        check_grads(lambda q, k, v: dot_product_attention(q, k, v, causal=True), (q, k, v),
                    order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_mismatched_heads_raise():
    q, k, v = _qkv(jax.random.PRNGKey(6), h=4, kvh=3)
    with pytest.raises(ValueError, match="num_kv_heads"):
        dot_product_attention(q, k, v)


def test_hand_written_backward_equals_autodiff_with_masks_in_float64():
    """The custom VJP (dS = P * (dP - rowsum(dO * O))) against autodiff of a naive masked softmax:
    GQA, packed segments, an extra mask that leaves one query row fully masked (output 0, zero
    gradients), in float64 so the tolerance is tight."""
    with jax.enable_x64(True):
        q, k, v = _qkv(jax.random.PRNGKey(7), b=2, t=6, h=4, kvh=2, d=4, dtype=jnp.float64)
        seg = jnp.array([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
        extra = jnp.ones((2, 1, 6, 6), bool).at[0, 0, 2].set(False)  # batch 0, query 2: nothing
        allowed = (seg[:, :, None] == seg[:, None, :])[:, None] & extra  # causal: in _naive

        def ours(q, k, v):
            return dot_product_attention(q, k, v, causal=True, segment_ids=seg, mask=extra)

        def naive(q, k, v):
            return _naive(q, k, v, causal=True, allowed=allowed)

        cotangent = jax.random.normal(jax.random.PRNGKey(8), q.shape, jnp.float64)
        out, vjp = jax.vjp(ours, q, k, v)
        ref_out, ref_vjp = jax.vjp(naive, q, k, v)
        np.testing.assert_allclose(out, ref_out, atol=1e-12)
        np.testing.assert_array_equal(out[0, 2], 0.0)
        for g, r in zip(vjp(cotangent), ref_vjp(cotangent), strict=True):
            np.testing.assert_allclose(g, r, atol=1e-12)
