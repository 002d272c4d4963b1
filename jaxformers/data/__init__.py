"""Datasets as grain sources + batch specs. Importing registers them with `data.registry`."""

from jaxformers.data import text  # noqa: F401
