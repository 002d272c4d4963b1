"""Whole networks. Importing registers every model family with `models.registry`."""

from jaxformers.models import (
    decoder,  # noqa: F401
    encdec,  # noqa: F401
    lsa,  # noqa: F401  (linear self-attention for ICL)
)
