"""Pattention: attention from input tokens to learnable parameter tokens (TokenFormer).

Paper: Wang et al., "TokenFormer: Rethinking Transformer Scaling with Tokenized Model Parameters"
(ICLR 2025, arXiv 2410.23168).

    Pattention(X, K_P, V_P) = Θ(X K_P^T) V_P                                   (paper eq. 4)

X: [..., d_in] input tokens (the queries), K_P: [n, d_in] key parameter tokens, V_P: [n, d_out]
value parameter tokens. It replaces a d_in -> d_out linear map; n is free. Θ is a modified
softmax applied to each row A = x K_P^T in R^n, with a scale τ:

- "l2_norm_gelu" (default; App. A eq. 16, App. B eq. 27):  S = GeLU(τ A / ||A||_2),  τ = sqrt(n)
- "gelu_l2_norm":  g = GeLU(A),  S = τ g / ||g||_2,                                 τ = sqrt(n)
- "softmax":       S = τ exp(A) / ||exp(A)||_1 = τ softmax(A),                      τ = n

No 1/sqrt(d) scale on A (the released code passes scale=None). GeLU is the exact (erf) form, as
PyTorch's F.gelu in the released GPU code. The L2 norms are sqrt(sum A^2 + eps): smooth at
A = 0 (a layer whose keys are all zero outputs 0 with finite gradients), and adding parameter
tokens whose scores are exactly 0 leaves them unchanged, which is what makes zero-key growth
function preserving *when τ is frozen* (App. B; see `growth/tokens.py`). With τ recomputed as
sqrt(n + m) the old scores are rescaled by sqrt((n + m) / n) and the function changes.

Statistics are computed in float32 (float64 for float64 inputs) whatever the input dtype.
"""

import jax
import jax.numpy as jnp

NORMS = ("softmax", "gelu_l2_norm", "l2_norm_gelu")


def default_tau(norm: str, num_tokens: int) -> float:
    """τ of a fresh layer with `num_tokens` parameter tokens: n for softmax, sqrt(n) otherwise."""
    _check_norm(norm)
    return float(num_tokens) if norm == "softmax" else float(num_tokens) ** 0.5


def value_init_std(num_layers: int, embed_dim: int) -> float:
    """`wang_init` std of the value tokens: 2 / (L sqrt(d)) (Wang et al. 2025)."""
    return 2.0 / (num_layers * embed_dim**0.5)


KEY_INIT_STD = 0.02  # `init_method: normal` of the key tokens (Wang et al. 2025)


def _check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"pattention norm={norm!r}; expected one of {NORMS}")


def theta(scores: jax.Array, *, norm: str = "l2_norm_gelu", tau=None, eps: float = 1e-6):
    """Θ over the last axis (the n parameter tokens); scores [..., n] -> [..., n] (float32 or
    float64 if the scores are float64).

    tau: scalar (or broadcastable) τ; None = `default_tau(norm, n)`.
    """
    _check_norm(norm)
    stat_dtype = jnp.promote_types(scores.dtype, jnp.float32)  # float32, or float64 if given
    a = scores.astype(stat_dtype)
    n = a.shape[-1]
    tau = default_tau(norm, n) if tau is None else jnp.asarray(tau, stat_dtype)
    if norm == "softmax":  # exp(A) / ||exp(A)||_1 * τ
        return jax.nn.softmax(a, axis=-1) * tau
    if norm == "gelu_l2_norm":  # g / ||g||_2 * τ, g = GeLU(A)
        g = jax.nn.gelu(a, approximate=False)
        return g * jax.lax.rsqrt(jnp.sum(g * g, axis=-1, keepdims=True) + eps) * tau
    # l2_norm_gelu: GeLU(τ A / ||A||_2)   (eq. 16)
    inv_norm = jax.lax.rsqrt(jnp.sum(a * a, axis=-1, keepdims=True) + eps)
    return jax.nn.gelu(a * inv_norm * tau, approximate=False)


def pattention(
    x: jax.Array,
    key_tokens: jax.Array,
    value_tokens: jax.Array,
    *,
    norm: str = "l2_norm_gelu",
    tau=None,
    eps: float = 1e-6,
) -> jax.Array:
    """Token-parameter attention Θ(x K_P^T) V_P (TokenFormer eq. 4; Θ from App. A eq. 16).

    x: [..., d_in]; key_tokens: [n, d_in]; value_tokens: [n, d_out] -> [..., d_out] in x.dtype.
    """
    if key_tokens.ndim != 2 or value_tokens.ndim != 2:
        raise ValueError(
            f"key_tokens {key_tokens.shape} and value_tokens {value_tokens.shape} must be "
            "[n, d_in] and [n, d_out]"
        )
    if key_tokens.shape[0] != value_tokens.shape[0]:
        raise ValueError(
            f"key_tokens has {key_tokens.shape[0]} tokens but value_tokens has "
            f"{value_tokens.shape[0]}; they must be equal"
        )
    if x.shape[-1] != key_tokens.shape[1]:
        raise ValueError(f"x feature dim {x.shape[-1]} != key_tokens dim {key_tokens.shape[1]}")
    scores = jnp.einsum(
        "...d,nd->...n", x, key_tokens.astype(x.dtype),
        preferred_element_type=jnp.promote_types(x.dtype, jnp.float32),
    )
    weights = theta(scores, norm=norm, tau=tau, eps=eps).astype(x.dtype)
    return jnp.einsum("...n,nf->...f", weights, value_tokens.astype(x.dtype))
