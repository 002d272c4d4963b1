"""Rotary position embeddings (Su et al. 2021, RoFormer eq. 34), always computed in float32."""

import jax
import jax.numpy as jnp
from jax import lax


def rope_frequencies(head_dim: int, base: float = 10000.0) -> jax.Array:
    """theta_i = base^(-2i/d) for i in [0, d/2) (RoFormer §3.2.2)."""
    if head_dim % 2:
        raise ValueError(f"head_dim={head_dim} must be even for RoPE")
    return base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)


def apply_rope(x: jax.Array, positions: jax.Array, *, base: float = 10000.0) -> jax.Array:
    """Rotate channel pairs (x_i, x_{i+d/2}) by angle position * theta_i (half-split layout).

    x: [B, T, H, D]; positions: [B, T] (int or float) -> [B, T, H, D] in x.dtype.
    The angles, sines and the rotation run in float32 whatever x.dtype is, because bfloat16
    positions lose integer precision above 256.
    """
    if x.ndim != 4 or positions.shape != x.shape[:2]:
        raise ValueError(
            f"apply_rope expects x [B,T,H,D] and positions [B,T]; got {x.shape} and {positions.shape}"
        )
    freqs = rope_frequencies(x.shape[-1], base)
    angles_BTF = positions.astype(jnp.float32)[..., None] * freqs
    # The barrier materialises the [B, T, 1, D/2] tables: otherwise XLA fuses sin and cos into every
    # consumer and evaluates them once per element of q, k and their gradients (H·D/2 times more).
    sin, cos = lax.optimization_barrier(
        (jnp.sin(angles_BTF)[:, :, None, :], jnp.cos(angles_BTF)[:, :, None, :])
    )
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return rotated.astype(x.dtype)
