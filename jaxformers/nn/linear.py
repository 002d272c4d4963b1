"""The dense projection: y = x W, untied per modality for Mixture-of-Transformers.

With `cfg.num_modalities = K > 1` the kernel gains a leading modality axis and each token uses its
modality's kernel (Mixture-of-Transformers §2.2 eq. 1, `ops/mot.py`), so every mixer and feed-forward
built from projections is untied per modality for free. Built through `nn.projection.Projection`.
"""

import flax.linen as nn
import jax

from jaxformers.config import ModelConfig
from jaxformers.nn.context import Context
from jaxformers.ops import matmul, mot


class DenseProjection(nn.Module):
    """y = x W (no bias), kernel [K, d_in, d_out] with logical axes (modality, in, out)."""

    cfg: ModelConfig
    features: int
    axes: tuple[str, str] = ("embed", "mlp")
    init_scale: float = 1.0
    role: str = ""

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        init = nn.initializers.normal(cfg.init_std * self.init_scale)
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(
                lambda key, shape, dtype: init(key, shape, dtype), ("modality",) + self.axes
            ),
            (cfg.num_modalities, x.shape[-1], self.features),
            cfg.parameter_dtype,
        )
        # promote_dtype (as nn.Dense does) rather than .astype: qwix intercepts it and leaves an
        # already-quantized kernel as it is
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=cfg.activation_dtype)
        canonical = cfg.canonical_matmul  # row-major weight gradients (the CPU fast path)
        if cfg.num_modalities == 1:
            if canonical:
                return matmul.matmul(x, kernel[0], canonical=True)
            # One lax.dot_general on the whole [1, d_in, d_out] param (no slice): a quantization
            # library that intercepts dot_general and traces the weight back to its param
            # (qwix's find_param follows unary ops only) sees it and quantizes it per channel.
            y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ())))
            return y.reshape(*x.shape[:-1], self.features)
        if cfg.modality_dispatch == "grouped":
            opts = cfg.mot
            return mot.grouped_matmul(
                x,
                kernel,
                ctx.modality_ids,
                impl=opts.grouped_impl,
                tile_size=opts.tile_size,
                groups=opts.groups,
                canonical=canonical,
            )
        return mot.modality_select_matmul(x, kernel, ctx.modality_ids, canonical=canonical)


class Unembedding(nn.Module):
    """logits = x W, W [d, vocab]: nn.DenseGeneral's kernel (name, shape, logical axes and init), so
    checkpoints are unchanged, through `ops.matmul` when the CPU fast path is on
    (`model.weight_grad_matmul`): its dW = Xᵀ G is then a row-major dot on a materialised Xᵀ, not a
    transposed write of the cross-entropy gradient."""

    cfg: ModelConfig
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.cfg
        init = nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), ("embed", "vocab"))
        kernel = self.param("kernel", init, (x.shape[-1], self.features), cfg.parameter_dtype)
        x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=cfg.activation_dtype)
        if cfg.canonical_matmul:
            return matmul.matmul(x, kernel, canonical=True)
        return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))  # qwix sees this
