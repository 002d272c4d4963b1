"""Outlier statistics of activations: infinity norm and kurtosis per sample.

Bondarenko, Nagel & Blankevoort 2023, "Quantizable Transformers: Removing Outliers by Helping
Attention Heads Do Nothing" (arXiv 2306.12929), §3 and Table 2: for each sample the activation is
flattened over tokens and features; the infinity norm is max |x| and the kurtosis is Pearson's
(not excess) kurtosis

    kurt(x) = E[(x - mean x)^4] / (s^4 + 1e-6),   s = unbiased standard deviation,

so a Gaussian gives about 3 and a tensor with a few huge outliers gives thousands. Computed in
float32 (float64 when given float64).

The outliers come from heads that learn a "no-op" (§3): they put most of their attention on a
delimiter-like token (in their BERT: [SEP], ".", ","; in a byte LM: space, newline) whose value is
small, so the head's update is near zero. `attention_probabilities` and `delimiter_attention_mass`
find such heads.
"""

import jax
import jax.numpy as jnp

from jaxformers.ops.attention import attention_mask, clipped_softmax

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


def attention_probabilities(
    q: jax.Array,
    k: jax.Array,
    *,
    causal: bool = True,
    segment_ids: jax.Array | None = None,
    gamma: float = 0.0,
    zeta: float = 1.0,
) -> jax.Array:
    """Per-head attention weights [B, H, Tq, Tk] (Vaswani et al. 2017 eq. 1, grouped-query heads
    as in `ops.attention.dot_product_attention`; clipped softmax eq. 4.1 when gamma < 0).

    q: [B, Tq, H, D]; k: [B, Tk, K, D] with H % K == 0 (query head h reads KV head h // (H // K));
    segment_ids: optional [B, T] packed-document ids (Tq == Tk). Masked entries are 0. Float32
    (float64 when given float64).
    """
    batch, q_len, num_heads, head_dim = q.shape
    kv_len, num_kv_heads = k.shape[1], k.shape[2]
    if num_heads % num_kv_heads or k.shape[0] != batch or k.shape[3] != head_dim:
        raise ValueError(f"k {k.shape} does not match q {q.shape} (batch, head_dim, H % K == 0)")
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    k_heads = jnp.repeat(k, num_heads // num_kv_heads, axis=2)  # [B, Tk, H, D]
    scores = jnp.einsum("bthd,bshd->bhts", q.astype(dtype), k_heads.astype(dtype)) * head_dim**-0.5
    mask = attention_mask(q_len, kv_len, causal=causal, q_segment_ids=segment_ids, kv_segment_ids=segment_ids)
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(dtype).min)
    probs = clipped_softmax(scores, gamma=gamma, zeta=zeta, axis=-1)
    return probs if mask is None else jnp.where(mask, probs, 0.0)


def uniform_attention(
    batch: int, q_len: int, *, causal: bool = True, segment_ids: jax.Array | None = None
) -> jax.Array:
    """Weights [B, 1, Tq, Tk] of a head that spreads evenly over the keys it may see.

    The baseline for `delimiter_attention_mass`: "may see" comes from the causal / segment mask
    (`ops.attention.attention_mask`), not from nonzero weights, which clipped softmax (eq. 4.1)
    also zeroes. segment_ids: optional [B, T] packed-document ids (Tq == Tk).
    """
    mask = attention_mask(q_len, q_len, causal=causal, q_segment_ids=segment_ids, kv_segment_ids=segment_ids)
    if mask is None:
        return jnp.full((batch, 1, q_len, q_len), 1.0 / q_len)
    visible = jnp.broadcast_to(mask, (batch, 1, q_len, q_len)).astype(jnp.float32)
    return visible / jnp.maximum(visible.sum(-1, keepdims=True), 1.0)


def delimiter_attention_mass(probs: jax.Array, is_delimiter: jax.Array) -> jax.Array:
    """Mean over samples and query positions of the attention each head puts on delimiter keys.

    probs: [B, H, Tq, Tk] attention weights; is_delimiter: [B, Tk] bool (e.g. the space and
    newline bytes). Returns [H]: 1.0 for a head that only reads delimiters, about the delimiter
    fraction of the visible keys for a uniform head. Bondarenko et al. 2023 §3 (Fig. 1-3).
    """
    if probs.ndim != 4 or is_delimiter.shape != (probs.shape[0], probs.shape[3]):
        raise ValueError(
            f"probs must be [B, H, Tq, Tk] and is_delimiter [B, Tk]; "
            f"got {probs.shape} and {is_delimiter.shape}"
        )
    on_delimiters = jnp.einsum("bhts,bs->bht", probs, is_delimiter.astype(probs.dtype))
    return jnp.mean(on_delimiters, axis=(0, 2))
