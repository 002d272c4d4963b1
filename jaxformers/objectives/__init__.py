"""Losses and masking schemes. Importing registers them with `objectives.registry`."""

from jaxformers.objectives import icl_regression, mlm_u, next_token  # noqa: F401
