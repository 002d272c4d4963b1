"""In-context regression objective: ½·mean (ŷ - y_q)² (von Oswald et al. 2023; ZFB 2024 eq. 3.3)."""

import jax.numpy as jnp


def icl_regression_loss(model, variables, batch, *, rng, step, train):
    """batch: inputs [B, N+1, d+1] tokens, targets [B] query labels (data.icl_regression).
    metrics: loss (½·MSE, the papers' convention) and mse (no ½, Ahn et al.'s convention)."""
    del rng, step, train
    pred = model.apply(variables, batch["inputs"])
    err = (pred - batch["targets"].astype(jnp.float32)) ** 2
    loss = 0.5 * jnp.mean(err)
    return loss, {"loss": loss, "mse": jnp.mean(err)}
