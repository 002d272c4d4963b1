"""Multi-token prediction targets and the acceptance rule of blockwise parallel decoding.

Gloeckle et al. 2024 ("Better & Faster Large Language Models via Multi-token Prediction",
arXiv 2404.19737), §2 eqs. 1-3: with a shared trunk z_{t:1} and n heads,

    L_n = - sum_t sum_{i=1..n} log P(x_{t+i} | z_{t:1}),

so head i is scored against the token i steps ahead. Stern, Shazeer & Uszkoreit 2018 ("Blockwise
Parallel Decoding for Deep Autoregressive Models", arXiv 1811.03115), §3: the drafts of heads 2..n
are kept up to the first one the base (next-token) model would not have chosen greedily.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def future_targets(targets: jax.Array, weights: jax.Array | None, segment_ids: jax.Array | None, offset: int):
    """Targets of head `offset` (Gloeckle et al. §2 eq. 3, the x_{t+i} term).

    targets [B, T] are next-token targets (targets[:, t] = x_{t+1}); weights, segment_ids [B, T]
    or None. Returns (targets_i [B, T-i+1], weights_i [B, T-i+1] float32) with
    targets_i[:, t] = x_{t+i} = targets[:, t+i-1]; positions whose token i steps ahead lies in
    another packed segment get weight 0. Position t of the input predicts targets_i[:, t].
    """
    t = targets.shape[1]
    if not 1 <= offset <= t:
        raise ValueError(f"offset={offset} must be in [1, sequence length {t}]")
    shifted = targets[:, offset - 1 :]
    w = jnp.ones(shifted.shape, jnp.float32) if weights is None else weights[:, offset - 1 :]
    w = w.astype(jnp.float32)
    if segment_ids is not None:
        same = segment_ids[:, : t - offset + 1] == segment_ids[:, offset - 1 :]
        w = w * same.astype(jnp.float32)
    return shifted, w


def accepted_length(drafts: jax.Array, verified: jax.Array) -> jax.Array:
    """Number of leading drafts equal to the verifier's greedy tokens (Stern et al. 2018, §3
    "verify" and "accept" substeps).

    drafts, verified: [B, K] int -> [B] int32 in [0, K]: the largest k with
    drafts[:, :k] == verified[:, :k].
    """
    if drafts.shape != verified.shape:  # a transposed operand would broadcast silently
        raise ValueError(f"drafts {drafts.shape} and verified {verified.shape} must have the same shape")
    match = (drafts == verified).astype(jnp.int32)
    return jnp.sum(jnp.cumprod(match, axis=1), axis=1).astype(jnp.int32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def sum_of_head_losses(head_loss, num_heads: int, params, z: jax.Array, aux):
    """sum_i head_loss(i, params, z, aux)[0] for i < num_heads, with the gradient computed one head
    at a time (Gloeckle et al. 2024, arXiv 2404.19737, §2 and Fig. 2, memory-efficient ordering).

    head_loss(i, params, z, aux) -> (scalar loss_i, metrics_i); params (the heads' parameters) and
    z (the shared trunk output [B, T, d]) are differentiated, aux (targets, weights, rngs) is not.
    Returns (total, [metrics_i]). The plain backward keeps every head's logits alive until the
    trunk's backward starts (O(nV) per token); here head i's forward and backward both run before
    head i+1 starts (the order is forced by data dependence), so one head's logits are alive at a
    time (O(V)), and only dL/dz and the heads' gradients are kept for the trunk's single backward.
    """
    losses, metrics = zip(*(head_loss(i, params, z, aux) for i in range(num_heads)), strict=True)
    return sum(losses), list(metrics)


def _sum_of_head_losses_fwd(head_loss, num_heads, params, z, aux):
    grads = (jax.tree.map(jnp.zeros_like, params), jnp.zeros_like(z))
    total, metrics = jnp.zeros((), jnp.float32), []
    for i in range(num_heads):
        # z_i depends on the gradients so far: head i cannot start before head i-1's backward ends.
        z_i, grads = jax.lax.optimization_barrier((z, grads))
        loss_i, vjp, metrics_i = jax.vjp(lambda p, x, i=i: head_loss(i, p, x, aux), params, z_i, has_aux=True)
        grads = jax.tree.map(jnp.add, grads, vjp(jnp.ones_like(loss_i)))
        total = total + loss_i
        metrics.append(metrics_i)
    return (total, metrics), (grads, aux)


def _sum_of_head_losses_bwd(head_loss, num_heads, residuals, cotangents):
    (grad_params, grad_z), aux = residuals
    scale = cotangents[0]  # the metrics are auxiliary outputs: their cotangents are ignored
    zero_aux = jax.tree.map(_zero_cotangent, aux)
    return (
        jax.tree.map(lambda g: scale.astype(g.dtype) * g, grad_params),
        scale.astype(grad_z.dtype) * grad_z,
        zero_aux,
    )


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


sum_of_head_losses.defvjp(_sum_of_head_losses_fwd, _sum_of_head_losses_bwd)
