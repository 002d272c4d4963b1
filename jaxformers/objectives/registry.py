"""Objectives plug into the one training loop by name (`config.objective`).

Contract of a registered objective:

    loss_fn(model, variables, batch, *, rng, step, train) -> (loss, metrics)

model: the Linen module built from the config; variables: {"params", "constants"?};
batch: dict of global jax arrays (see the dataset's docstring for the keys); rng: a key for
masking / dropout; step: scalar int32; train: static bool. loss: float32 scalar (include any
auxiliary losses); metrics: dict of float32 scalars, averaged over evaluation batches.
"""

from jaxformers.registry import Registry

OBJECTIVES = Registry("config.objective", populate="jaxformers.objectives")
register_objective = OBJECTIVES.register
get_objective = OBJECTIVES.get
