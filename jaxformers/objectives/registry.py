"""Objectives plug into the one training loop by name (`config.objective`).

Contract of a registered objective:

    loss_fn(model, variables, batch, *, rng, step, train) -> (loss, metrics)

model: the Linen module built from the config; variables: {"params", "constants"?};
batch: dict of global jax arrays (see the dataset's docstring for the keys); rng: a key for
masking / dropout; step: scalar int32; train: static bool. loss: float32 scalar (include any
auxiliary losses); metrics: dict of float32 scalars, averaged over evaluation batches.
"""

from jaxformers.objectives.icl_classification import icl_classification_loss
from jaxformers.objectives.icl_functions import icl_boolean_loss, icl_functions_loss
from jaxformers.objectives.icl_regression import icl_regression_loss
from jaxformers.objectives.mlm_u import mlm_u_objective
from jaxformers.objectives.multi_token import mtp_loss
from jaxformers.objectives.next_token import next_token_loss
from jaxformers.registry import lookup

OBJECTIVES = {
    "next_token": next_token_loss,
    "mlm_u": mlm_u_objective,  # Nolte et al. 2024, arXiv 2412.05117
    "icl_regression": icl_regression_loss,
    "icl_functions": icl_functions_loss,  # squared error at every prefix (Garg et al. 2022)
    "icl_boolean": icl_boolean_loss,  # logistic loss at every prefix (Bhattamishra et al. 2024)
    "icl_classification": icl_classification_loss,  # query label cross-entropy (Chan et al. 2022)
    "mtp": mtp_loss,  # Gloeckle et al. 2024, arXiv 2404.19737 (model_family "mtp")
}


def get_objective(name: str):
    return lookup(OBJECTIVES, name, "config.objective")
