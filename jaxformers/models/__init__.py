"""Whole networks. Importing registers every model family with `models.registry`."""

from jaxformers.models import decoder  # noqa: F401
from jaxformers.models import lsa  # noqa: F401  (linear self-attention for ICL)
