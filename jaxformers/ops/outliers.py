"""Outlier statistics of activations: infinity norm and kurtosis per sample.

Bondarenko, Nagel & Blankevoort 2023, "Quantizable Transformers: Removing Outliers by Helping
Attention Heads Do Nothing" (arXiv 2306.12929), §3 and Table 2: for each sample the activation is
flattened over tokens and features; the infinity norm is max |x| and the kurtosis is Pearson's
(not excess) kurtosis

    kurt(x) = E[(x - mean x)^4] / (s^4 + 1e-6),   s = unbiased standard deviation,

so a Gaussian gives about 3 and a tensor with a few huge outliers gives thousands. Computed in
float32 (float64 when given float64).
"""

import jax
import jax.numpy as jnp

KURTOSIS_EPS = 1e-6


def _flat(x: jax.Array) -> jax.Array:
    if x.ndim < 2:
        raise ValueError(f"activations must be [batch, ...] with at least 2 dims; got shape {x.shape}")
    x = x.reshape(x.shape[0], -1)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def inf_norm(x: jax.Array) -> jax.Array:
    """max |x| per sample: x [B, ...] -> [B]."""
    return jnp.max(jnp.abs(_flat(x)), axis=-1)


def kurtosis(x: jax.Array, eps: float = KURTOSIS_EPS) -> jax.Array:
    """Pearson kurtosis per sample over all non-batch elements: x [B, ...] -> [B]."""
    x = _flat(x)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"kurtosis needs at least 2 elements per sample; got {n}")
    centred = x - jnp.mean(x, axis=-1, keepdims=True)
    fourth = jnp.mean(centred**4, axis=-1)
    var = jnp.sum(centred**2, axis=-1) / (n - 1)  # unbiased, as torch.std
    return fourth / (var**2 + eps)
