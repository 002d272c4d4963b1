"""Datasets as grain sources + batch specs; the table is `data/registry.py`.

text: byte-level LM; mazes + maze_navigation: MLM-U mazes and their evaluator; icl_regression:
in-context linear regression; two_modality: MoT's synthetic text/image data.
"""
