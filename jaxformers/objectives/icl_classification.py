"""In-context classification: cross-entropy of the query's label (data: data/icl_bursty.py).

Chan et al. 2022 (arXiv 2205.05055, §2) and Reddy 2024 (arXiv 2312.03002, §2): softmax over the L
labels at the query, the last exemplar of the sequence; batch = {"inputs" [B, N+1, D], "labels"
[B, N+1]}, the query's label labels[:, -1] is the target and never an input.
"""

import jax.numpy as jnp
import optax


def icl_classification_loss(model, variables, batch, *, rng, step, train):
    del rng, step, train
    labels = batch["labels"].astype(jnp.int32)
    logits = model.apply(variables, batch["inputs"], labels)  # [B, L]
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels[:, -1]))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels[:, -1])
    return loss, {"loss": loss, "accuracy": accuracy}
