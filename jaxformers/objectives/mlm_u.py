"""MLM-U: masked language modelling with a uniform mask rate (Nolte et al. 2024, §3 eq. 2).

    L = -E_{mu ~ U} log P(m_mu X | m_mu^C X)

As the authors code it (Nolte et al. 2024, recipe/models/past.py `get_mask` mode "absorbing"): per
sequence one rate r ~ U(0, 1); each token of the prediction region (the path) stays visible iff
u_i < r with u_i ~ U(0, 1); the prefix (maze, origin, target, <PATH_START>) is always visible and
never predicted; padding is neither. Masked tokens are not replaced by a [MASK] embedding: they are
removed from attention as keys. The loss is the cross-entropy on the masked path tokens, averaged
over all predicted tokens of the batch.
"""

import jax
import jax.numpy as jnp

from jaxformers.objectives.next_token import cross_entropy


def mlm_u_mask(rng: jax.Array, path_mask: jax.Array, prefix_mask: jax.Array):
    """Sample the MLM-U split of each sequence.

    path_mask, prefix_mask: [B, T] bool (prediction region; always-visible context).
    Returns (visible [B, T] bool, predict [B, T] bool, rate [B] float32), with
    visible = prefix | (path & u < r) and predict = path & ~visible.
    """
    path_mask, prefix_mask = path_mask.astype(bool), prefix_mask.astype(bool)
    if path_mask.shape != prefix_mask.shape or path_mask.ndim != 2:
        raise ValueError(f"path_mask {path_mask.shape} and prefix_mask {prefix_mask.shape} must be "
                         "the same [batch, time] shape")
    rate_key, token_key = jax.random.split(rng)
    rate = jax.random.uniform(rate_key, (path_mask.shape[0],), jnp.float32)
    u = jax.random.uniform(token_key, path_mask.shape, jnp.float32)
    visible = prefix_mask | (path_mask & (u < rate[:, None]))
    return visible, path_mask & ~visible, rate


def mlm_u_loss(logits: jax.Array, targets: jax.Array, predict: jax.Array):
    """Mean cross-entropy over predicted tokens (`scale_loss: False`) -> (loss, count)."""
    return cross_entropy(logits, targets, predict.astype(jnp.float32))


def _gather(x, positions):
    return jnp.take_along_axis(x, positions, axis=1)


def mlm_u_objective(model, variables, batch, *, rng, step, train):
    """batch: inputs [B,T] tokens, path_mask [B,T], prefix_mask [B,T] (default: non-path tokens
    before the first path token), optionally query_positions [B,S]: the decoder then predicts only
    there (the path region; the queries carry no token content, so the prefix positions would be
    wasted compute). model(tokens, visible, query_positions=...) -> logits [B, S|T, V]."""
    tokens = batch["inputs"]
    path = batch["path_mask"].astype(bool)
    if "prefix_mask" in batch:
        prefix = batch["prefix_mask"].astype(bool)
    else:
        prefix = (jnp.cumsum(path, axis=1) == 0) & ~path
    visible, predict, _ = mlm_u_mask(rng, path, prefix)
    query_positions = batch.get("query_positions")
    logits = model.apply(variables, tokens, visible, query_positions=query_positions,
                         deterministic=not train)
    targets = tokens
    if query_positions is not None:
        targets, predict = _gather(tokens, query_positions), _gather(predict, query_positions)
    loss, count = mlm_u_loss(logits, targets, predict)
    correct = (logits.argmax(-1) == targets) & predict
    metrics = {
        "loss": loss,
        "accuracy": correct.sum() / jnp.maximum(predict.sum(), 1),
        "masked_fraction": predict.sum() / jnp.maximum(path.sum(), 1),
        "predicted_tokens": count,
    }
    return loss, metrics
