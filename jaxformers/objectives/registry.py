"""Objectives plug into the one training loop by name (`config.objective`).

Contract of a registered objective:

    loss_fn(model, variables, batch, *, rng, step, train) -> (loss, metrics)

model: the Linen module built from the config; variables: {"params", "constants"?};
batch: dict of global jax arrays (see the dataset's docstring for the keys); rng: a key for
masking / dropout; step: scalar int32; train: static bool. loss: float32 scalar (include any
auxiliary losses); metrics: dict of float32 scalars, averaged over evaluation batches.
"""

OBJECTIVES: dict = {}


def register_objective(name: str):
    def wrap(fn):
        OBJECTIVES[name] = fn
        return fn

    return wrap


def get_objective(name: str):
    import jaxformers.objectives  # noqa: F401  (registers the built-in objectives)

    if name not in OBJECTIVES:
        raise ValueError(f"config.objective={name!r}; expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]
