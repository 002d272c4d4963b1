"""Whole networks assembled from nn/ by the model config; the table is `models/registry.py`."""
