"""jaxformers: recent transformer research ideas as pure, tested, fast JAX/Flax functions."""

from jaxformers._xla_flags import apply_cpu_workarounds

apply_cpu_workarounds()

__version__ = "0.1.0"
