"""Whole networks. Importing registers every model family with `models.registry`."""

from jaxformers.models import decoder  # noqa: F401
