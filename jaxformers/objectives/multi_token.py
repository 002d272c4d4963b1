"""Multi-token prediction objective (Gloeckle et al. 2024, arXiv 2404.19737, §2 eqs. 2-3):

    L_n = sum_{i=1..n} CE_i,   CE_i = mean_t -log P(x_{t+i} | x_{<=t})   (every head weight 1)

on the "mtp" model family. Each head's mean runs over the positions whose token i steps ahead
exists (and lies in the same packed segment); per-head losses are reported as loss_head{i}, and
loss_head1 is the next-token loss comparable with the "next_token" objective. With n = 1 the
objective equals next_token_loss exactly.
"""

import jax
import jax.numpy as jnp

from jaxformers.config import ConfigError
from jaxformers.objectives.next_token import _OPTIONAL_INPUTS, apply_with_aux, cross_entropy
from jaxformers.ops.multi_token import future_targets


def mtp_loss(model, variables, batch, *, rng, step, train):
    """batch: as next_token_loss (inputs, targets, weights [B, T], optional positions,
    segment_ids, modality_ids). metrics: loss (the sum), loss_head{i}, accuracy (head 1)."""
    cfg = getattr(model, "cfg", None)
    if not hasattr(cfg, "mtp"):
        raise ConfigError("config.objective='mtp' needs config.model_family='mtp'")
    n = cfg.mtp.num_future_tokens
    seq_len = batch["inputs"].shape[1]
    if n > seq_len:
        raise ConfigError(f"model.mtp.num_future_tokens={n} exceeds the sequence length {seq_len} "
                          "(data.seq_len)")
    kwargs = {k: batch[k] for k in _OPTIONAL_INPUTS if k in batch}
    logits, aux_loss = apply_with_aux(
        model, variables, batch["inputs"], step=step, deterministic=not train, heads="all",
        rngs={"dropout": rng, "routing": jax.random.fold_in(rng, 1)}, **kwargs,
    )
    metrics = {}
    total = jnp.zeros((), jnp.float32)
    for i in range(1, n + 1):
        targets, weights = future_targets(batch["targets"], batch.get("weights"),
                                          batch.get("segment_ids"), i)
        loss_i, _ = cross_entropy(logits[i - 1][:, : seq_len - i + 1], targets, weights)
        metrics[f"loss_head{i}"] = loss_i
        total = total + loss_i
    w = jnp.ones(batch["targets"].shape, jnp.float32) if batch.get("weights") is None else (
        batch["weights"].astype(jnp.float32))
    correct = (logits[0].argmax(-1) == batch["targets"]).astype(jnp.float32)
    metrics.update(loss=total, accuracy=(correct * w).sum() / jnp.maximum(w.sum(), 1.0),
                   aux_loss=aux_loss)
    return total + aux_loss, metrics
