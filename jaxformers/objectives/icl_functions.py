"""In-context function learning: the loss at every prefix (data: data/icl_functions.py).

Loss (Garg et al. 2022, arXiv 2208.01066, §3): the mean over prompts and all prefixes i = 1..n of
(ŷ_i - y_i)² for real-valued tasks; for boolean tasks (labels ±1) the logistic loss on ŷ_i
(Bhattamishra et al. 2024, arXiv 2310.03016, §3: BCE of sigmoid(ŷ) against (y+1)/2), accuracy of
sign(ŷ). batch["weights"] [B, n] (optional; 0 past the curriculum's active prompt length, see
data/icl_functions.py) masks prefixes out of the mean. The error-curve evaluator (model vs
baselines) is data/icl_curves.py.
"""

import jax
import jax.numpy as jnp


def icl_functions_loss(model, variables, batch, *, rng, step, train, boolean: bool = False):
    del rng, step, train
    ys = batch["targets"].astype(jnp.float32)
    pred = model.apply(variables, batch["inputs"], ys)
    weights = batch.get("weights")
    weights = jnp.ones_like(ys) if weights is None else weights.astype(jnp.float32)

    def mean(v):
        return jnp.sum(weights * v) / jnp.maximum(jnp.sum(weights), 1.0)

    if boolean:
        loss = mean(jax.nn.softplus(-ys * pred))  # = BCE(sigmoid(ŷ), (y+1)/2)
        return loss, {"loss": loss, "accuracy": mean((pred * ys) > 0)}
    err = mean((pred - ys) ** 2)
    return err, {"loss": err, "mse": err}


def icl_boolean_loss(model, variables, batch, *, rng, step, train):
    return icl_functions_loss(model, variables, batch, rng=rng, step=step, train=train, boolean=True)
