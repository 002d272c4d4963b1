"""Datasets as grain sources + batch specs. Importing registers them with `data.registry`.

text: byte-level LM; mazes + maze_navigation: MLM-U mazes and their evaluator; icl_regression:
in-context linear regression; two_modality: MoT's synthetic text/image data.
"""

from jaxformers.data import icl_regression, maze_navigation, mazes, text, two_modality  # noqa: F401
