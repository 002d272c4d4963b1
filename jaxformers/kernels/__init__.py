"""Pallas kernels behind attention (flash attention, chunked GLA), each a jax.custom_vjp.

`impl="xla"` runs the ops/ reference, `"pallas"` the kernel (interpreted on CPU), `"auto"` the
kernel on GPU/TPU and the reference on CPU. Platform differences live in `kernels.backend`.
"""

from jaxformers.kernels.backend import KernelOptions, resolve_impl, target_platform
from jaxformers.kernels.flash_attention import flash_attention
from jaxformers.kernels.gla import gla

__all__ = ["KernelOptions", "flash_attention", "gla", "resolve_impl", "target_platform"]
