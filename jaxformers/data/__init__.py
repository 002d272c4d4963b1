"""Datasets as grain sources + batch specs. Importing registers them with `data.registry`."""

from jaxformers.data import text  # noqa: F401
from jaxformers.data import mazes, maze_navigation  # noqa: F401  (MLM-U mazes + evaluator)
from jaxformers.data import icl_regression  # noqa: F401
from jaxformers.data import two_modality  # noqa: F401  (MoT: synthetic text/image, mazes)
