"""Flax Linen layers: they own parameters (init, names, logical axes) and call ops/ or kernels/.

The tables that map config names to these modules are `nn/registry.py` and `nn/projection.py`.
"""
