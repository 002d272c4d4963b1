"""Losses and masking schemes; the table is `objectives/registry.py`."""
