"""Pallas kernels behind attention, each a jax.custom_vjp with Pallas forward and backward.

* `jaxformers.kernels.flash_attention.flash_attention` - softmax attention (FlashAttention-2).
* `jaxformers.kernels.gla.gla` - chunked gated linear attention (GLA §4.2).

`impl="xla"` runs the ops/ reference, `"pallas"` the kernel (interpreted on CPU), `"auto"` the
kernel on GPU/TPU and the reference on CPU. Platform differences live in `kernels.backend`.
(The functions are not re-exported here: their names are the submodules' names.)
"""
