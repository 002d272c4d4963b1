"""Losses and masking schemes. Importing registers them with `objectives.registry`."""

from jaxformers.objectives import next_token  # noqa: F401
from jaxformers.objectives import mlm_u  # noqa: F401
from jaxformers.objectives import icl_regression  # noqa: F401
