"""Causal block skipping (ops.attention.causal_block_attention) computes causal attention exactly:
values and gradients equal the full-square reference in float64, with GQA, segment ids, plain and
clipped softmax, and the `model.attention.causal_blocks` / `causal_block_size` options reach it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.ops.attention import causal_block_attention, dot_product_attention


def _qkv(length=24, heads=4, kv_heads=2, dim=8):
    keys = jax.random.split(jax.random.key(0), 3)
    with jax.enable_x64(True):
        return (jax.random.normal(keys[0], (2, length, heads, dim), jnp.float64),
                jax.random.normal(keys[1], (2, length, kv_heads, dim), jnp.float64),
                jax.random.normal(keys[2], (2, length, kv_heads, dim), jnp.float64))


@pytest.mark.parametrize("softmax", [{}, dict(gamma=-0.05, zeta=1.02)], ids=["plain", "clipped"])
@pytest.mark.parametrize("block_size", [8, 6, 5])  # 5 does not divide T: the full-square fallback
def test_block_skipping_equals_the_full_square_in_values_and_gradients(block_size, softmax):
    segments = jnp.array([[1] * 10 + [2] * 14, [1] * 3 + [2] * 9 + [3] * 12])
    kwargs = dict(segment_ids=segments, **softmax)
    with jax.enable_x64(True):
        q, k, v = _qkv()
        weights = jax.random.normal(jax.random.key(1), q.shape, jnp.float64)

        def loss(fn):
            return lambda q, k, v: jnp.sum(weights * fn(q, k, v))

        ref = loss(lambda q, k, v: dot_product_attention(q, k, v, causal=True, **kwargs))
        blocked = loss(lambda q, k, v: causal_block_attention(q, k, v, block_size=block_size, **kwargs))
        value, grads = jax.jit(jax.value_and_grad(blocked, argnums=(0, 1, 2)))(q, k, v)
        ref_value, ref_grads = jax.jit(jax.value_and_grad(ref, argnums=(0, 1, 2)))(q, k, v)
        np.testing.assert_allclose(value, ref_value, rtol=1e-12)
        for g, r in zip(grads, ref_grads, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def test_block_skipping_is_on_by_default_on_the_cpu_only_and_can_be_turned_off():
    def block(**attention):
        return model_config_from({"attention": attention}).attention.causal_block

    on_cpu = jax.default_backend() == "cpu"
    assert block() == (128 if on_cpu else 0)
    assert block(causal_block_size=64) == (64 if on_cpu else 0)
    assert block(causal_blocks="on", causal_block_size=64) == 64
    assert block(causal_blocks="off") == 0
    assert block(causal_blocks="on", causal_block_size=0) == 0


def test_the_config_option_is_validated_in_one_line():
    assert model_config_from({"attention": {"causal_block_size": 64}}).attention.causal_block_size == 64
    with pytest.raises(ConfigError, match="model.attention.causal_blocks") as error:
        model_config_from({"attention": {"causal_blocks": "yes"}})
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="model.attention.causal_block_size") as error:
        model_config_from({"attention": {"causal_block_size": -1}})
    assert "\n" not in str(error.value)
