"""RoPE: a rotation (norm preserving) whose q.k products depend only on relative position."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops.rope import apply_rope


def test_rope_preserves_norm():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3, 8))
    pos = jnp.broadcast_to(jnp.arange(5), (2, 5))
    np.testing.assert_allclose(
        jnp.linalg.norm(apply_rope(x, pos), axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5
    )


def test_rope_scores_depend_only_on_relative_position():
    q = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 1, 16))
    k = jax.random.normal(jax.random.PRNGKey(2), (1, 1, 1, 16))

    def score(pq, pk):
        rq = apply_rope(q, jnp.array([[pq]]))
        rk = apply_rope(k, jnp.array([[pk]]))
        return float(jnp.sum(rq * rk))

    assert score(3, 1) == pytest.approx(score(10, 8), rel=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), rel=1e-3)


def test_rope_angles_are_float32_under_bfloat16():
    # Position 1000 in bfloat16 would round to 1000 +- 4; float32 angles keep the exact rotation.
    x = jnp.ones((1, 1, 1, 8), jnp.bfloat16)
    pos = jnp.array([[1001]])
    out = apply_rope(x, pos)
    ref = apply_rope(x.astype(jnp.float32), pos)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=1e-2)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="positions"):
        apply_rope(jnp.ones((1, 4, 2, 8)), jnp.zeros((1, 3)))
