"""Root-mean-square normalisation (Zhang & Sennrich 2019, arXiv 1910.07467, eq. 4)."""

import jax
import jax.numpy as jnp


def rms_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """x / sqrt(mean(x^2) + eps) over the last axis, computed in float32, returned in float32."""
    x32 = x.astype(jnp.float32)
    return x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
