"""Multi-token prediction objective on the "mtp" model family.

Parallel heads (Gloeckle et al. 2024, arXiv 2404.19737, §2 eqs. 2-3, every head weight 1):
    L = sum_{i=1..n} CE_i,   CE_i = mean_t -log P(x_{t+i} | x_{<=t});
sequential MTP modules (DeepSeek-V3, arXiv 2412.19437, §2.2 eq. 25, L_MTP = lambda / D sum_k L^k
with D = n - 1 depths, added to the main next-token loss):
    L = CE_1 + lambda / (n-1) sum_{k=1..n-1} CE_{k+1};
future token prediction (Walker 2024, arXiv 2410.18160; token losses down-weighted exponentially
with distance ahead, the factor gamma not known from the paper, 0.5 chosen here):
    L = sum_{i=1..n} gamma^(i-1) CE_i.
The weights are `model.mtp.head_weights` (from model.mtp.loss_weight; None = 1 for parallel
heads, lambda = 0.3 for sequential modules, gamma = 0.5 for ftp). Each CE_i's mean runs over the
positions whose token i steps ahead exists (and lies in the same packed segment); per-head losses
are reported as loss_head{i}, and loss_head1 is the next-token loss comparable with the
"next_token" objective. With n = 1 the objective equals next_token_loss exactly.

model.mtp.backward="one_head_at_a_time" computes the same loss and gradients in Gloeckle et al.'s
memory-efficient order (Fig. 2): trunk forward, then each head's forward and backward in turn
(`ops.multi_token.sum_of_head_losses`), then the trunk's backward once.
"""

import jax
import jax.numpy as jnp

from jaxformers.config import ConfigError
from jaxformers.objectives.next_token import _OPTIONAL_INPUTS, apply_with_aux, cross_entropy
from jaxformers.ops.multi_token import future_targets, sum_of_head_losses


def _accuracy(logits, targets, weights):
    w = jnp.ones(targets.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    correct = (logits.argmax(-1) == targets).astype(jnp.float32)
    return (correct * w).sum() / jnp.maximum(w.sum(), 1.0)


def mtp_loss(model, variables, batch, *, rng, step, train):
    """batch: as next_token_loss (inputs, targets, weights [B, T], optional positions,
    segment_ids, modality_ids). metrics: loss (the weighted sum), loss_head{i}, accuracy (head 1)."""
    cfg = getattr(model, "cfg", None)
    if not hasattr(cfg, "mtp"):
        raise ConfigError("config.objective='mtp' needs config.model_family='mtp'")
    n = cfg.mtp.num_future_tokens
    seq_len = batch["inputs"].shape[1]
    if n > seq_len:
        raise ConfigError(
            f"model.mtp.num_future_tokens={n} exceeds the sequence length {seq_len} (data.seq_len)"
        )
    head_weights = cfg.mtp.head_weights
    targets = [
        future_targets(batch["targets"], batch.get("weights"), batch.get("segment_ids"), i)
        for i in range(1, n + 1)
    ]
    kwargs = {k: batch[k] for k in _OPTIONAL_INPUTS if k in batch}
    kwargs.update(step=step)
    rngs = {"dropout": rng, "routing": jax.random.fold_in(rng, 1)}
    if cfg.mtp.backward == "one_head_at_a_time":
        return _one_head_at_a_time(model, variables, batch, targets, head_weights, kwargs, rngs, train)
    logits, aux_loss = apply_with_aux(
        model, variables, batch["inputs"], heads="all", rngs=rngs, deterministic=not train, **kwargs
    )
    metrics = {}
    total = jnp.zeros((), jnp.float32)
    for i, (targets_i, weights_i) in enumerate(targets, start=1):
        loss_i, _ = cross_entropy(logits[i - 1][:, : seq_len - i + 1], targets_i, weights_i)
        metrics[f"loss_head{i}"] = loss_i
        total = total + head_weights[i - 1] * loss_i
    metrics.update(
        loss=total,
        accuracy=_accuracy(logits[0], batch["targets"], batch.get("weights")),
        aux_loss=aux_loss,
    )
    return total + aux_loss, metrics


def _one_head_at_a_time(model, variables, batch, targets, head_weights, kwargs, rngs, train):
    """The parallel-head loss with Gloeckle et al.'s memory-efficient backward (Fig. 2)."""
    inputs, seq_len = batch["inputs"], batch["inputs"].shape[1]
    z, trunk_aux = apply_with_aux(
        model, variables, inputs, method="trunk", rngs=rngs, deterministic=not train, **kwargs
    )
    params = variables["params"]
    shared = ("final_norm", "embed") if model.cfg.tie_embeddings else ("final_norm", "head")
    head_params = {k: v for k, v in params.items() if k.startswith("mtp_heads_") or k in shared}
    # Everything the heads read but are not differentiated by: arrays only (custom_vjp inputs).
    aux = dict(
        inputs=inputs,
        collections={k: v for k, v in variables.items() if k != "params"},
        rngs=rngs,
        kwargs=kwargs,
        targets=targets,
        next_targets=batch["targets"],
        weights=batch.get("weights"),
    )

    def head_loss(i, head_params, z, aux):
        logits, aux_loss = apply_with_aux(
            model, {"params": head_params, **aux["collections"]}, aux["inputs"], z=z, index=i,
            method="parallel_head", rngs=aux["rngs"], deterministic=not train, **aux["kwargs"],
        )  # fmt: skip
        targets_i, weights_i = aux["targets"][i]
        ce, _ = cross_entropy(logits[:, : seq_len - i], targets_i, weights_i)
        metrics = {"ce": ce, "aux_loss": aux_loss}
        if i == 0:
            metrics["accuracy"] = _accuracy(logits, aux["next_targets"], aux["weights"])
        return head_weights[i] * ce + aux_loss, metrics

    heads_total, head_metrics = sum_of_head_losses(head_loss, len(targets), head_params, z, aux)
    aux_loss = trunk_aux + sum(m["aux_loss"] for m in head_metrics)
    metrics = {f"loss_head{i}": m["ce"] for i, m in enumerate(head_metrics, start=1)}
    total = sum(w * m["ce"] for w, m in zip(head_weights, head_metrics, strict=True))
    metrics.update(loss=total, accuracy=head_metrics[0]["accuracy"], aux_loss=aux_loss)
    return heads_total + trunk_aux, metrics
