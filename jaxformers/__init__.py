"""jaxformers: recent transformer research ideas as pure, tested, fast JAX/Flax functions."""

__version__ = "0.1.0"
