"""Multi-token prediction targets and the acceptance rule of blockwise parallel decoding.

Gloeckle et al. 2024 ("Better & Faster Large Language Models via Multi-token Prediction",
arXiv 2404.19737), §2 eqs. 1-3: with a shared trunk z_{t:1} and n heads,

    L_n = - sum_t sum_{i=1..n} log P(x_{t+i} | z_{t:1}),

so head i is scored against the token i steps ahead. Stern, Shazeer & Uszkoreit 2018 ("Blockwise
Parallel Decoding for Deep Autoregressive Models", arXiv 1811.03115), §3: the drafts of heads 2..n
are kept up to the first one the base (next-token) model would not have chosen greedily.
"""

import jax
import jax.numpy as jnp


def future_targets(targets: jax.Array, weights: jax.Array | None, segment_ids: jax.Array | None,
                   offset: int):
    """Targets of head `offset` (Gloeckle et al. §2 eq. 3, the x_{t+i} term).

    targets [B, T] are next-token targets (targets[:, t] = x_{t+1}); weights, segment_ids [B, T]
    or None. Returns (targets_i [B, T-i+1], weights_i [B, T-i+1] float32) with
    targets_i[:, t] = x_{t+i} = targets[:, t+i-1]; positions whose token i steps ahead lies in
    another packed segment get weight 0. Position t of the input predicts targets_i[:, t].
    """
    t = targets.shape[1]
    if not 1 <= offset <= t:
        raise ValueError(f"offset={offset} must be in [1, sequence length {t}]")
    shifted = targets[:, offset - 1:]
    w = jnp.ones(shifted.shape, jnp.float32) if weights is None else weights[:, offset - 1:]
    w = w.astype(jnp.float32)
    if segment_ids is not None:
        same = segment_ids[:, : t - offset + 1] == segment_ids[:, offset - 1:]
        w = w * same.astype(jnp.float32)
    return shifted, w


def accepted_length(drafts: jax.Array, verified: jax.Array) -> jax.Array:
    """Number of leading drafts equal to the verifier's greedy tokens (Stern et al. 2018, §3
    "verify" and "accept" substeps).

    drafts, verified: [B, K] int -> [B] int32 in [0, K]: the largest k with
    drafts[:, :k] == verified[:, :k].
    """
    match = (drafts == verified).astype(jnp.int32)
    return jnp.sum(jnp.cumprod(match, axis=1), axis=1).astype(jnp.int32)
