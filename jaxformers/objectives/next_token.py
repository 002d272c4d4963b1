"""Next-token prediction: mean cross-entropy of p(x_{t+1} | x_{<=t}) over weighted targets."""

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, targets: jax.Array, weights: jax.Array | None = None):
    """Weighted mean of -log softmax(logits)[target], in float32.

    logits: [..., V]; targets, weights: [...] -> (mean loss, sum of weights).
    """
    logits = logits.astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    w = jnp.ones_like(nll) if weights is None else weights.astype(jnp.float32)
    total = jnp.maximum(w.sum(), 1.0)
    return (nll * w).sum() / total, w.sum()


def apply_with_aux(model, variables, tokens, **kwargs):
    """model.apply that also returns the summed auxiliary losses sown into "aux_loss"."""
    logits, state = model.apply(variables, tokens, mutable=["aux_loss"], **kwargs)
    aux = jax.tree.leaves(state.get("aux_loss", {}))
    aux_loss = sum((jnp.sum(a) for a in aux), jnp.zeros((), jnp.float32))
    return logits, aux_loss


_OPTIONAL_INPUTS = ("positions", "segment_ids", "modality_ids")


def next_token_loss(model, variables, batch, *, rng, step, train):
    """batch: inputs [B,T], targets [B,T], weights [B,T] (0 = padding / not scored), and
    optionally positions, segment_ids, modality_ids [B,T]. Per-modality losses are reported
    as loss_m{k} when modality_ids are present, keyed by the modality of the *target* token
    (batch["target_modality_ids"] if given, else modality_ids), for k < max(model K, 2) so that a
    dense baseline on two-modality data reports both (MoT paper §3: per-modality losses)."""
    kwargs = {k: batch[k] for k in _OPTIONAL_INPUTS if k in batch}
    logits, aux_loss = apply_with_aux(
        model, variables, batch["inputs"], step=step, deterministic=not train,
        rngs={"dropout": rng, "routing": jax.random.fold_in(rng, 1)}, **kwargs,
    )
    weights = batch.get("weights")
    loss, num_tokens = cross_entropy(logits, batch["targets"], weights)
    correct = (logits.argmax(-1) == batch["targets"]).astype(jnp.float32)
    w = jnp.ones_like(correct) if weights is None else weights.astype(jnp.float32)
    metrics = {
        "loss": loss,
        "accuracy": (correct * w).sum() / jnp.maximum(w.sum(), 1.0),
        "aux_loss": aux_loss,
    }
    if "modality_ids" in batch:
        num_modalities = max(getattr(getattr(model, "cfg", None), "num_modalities", 1), 2)
        target_modality = batch.get("target_modality_ids", batch["modality_ids"])
        for m in range(num_modalities):
            wm = w * (target_modality == m)
            metrics[f"loss_m{m}"] = cross_entropy(logits, batch["targets"], wm)[0]
    return loss + aux_loss, metrics
