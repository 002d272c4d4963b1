"""Projections: every learned linear map of a block goes through `Projection`.

`cfg.projections` picks the implementation from `registry.PROJECTIONS` ("dense" here; TokenFormer
registers "pattention"). With `cfg.num_modalities = K > 1` the dense kernel gains a leading
modality axis and each token uses its modality's kernel (Mixture-of-Transformers §2.2 eq. 1), so
every mixer and feed-forward built from projections is untied per modality for free.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.models.config import ModelConfig
from jaxformers.nn import registry
from jaxformers.nn.context import Context


def modality_select_matmul(x: jax.Array, kernel: jax.Array, modality_ids) -> jax.Array:
    """Reference MoT projection: compute every modality's x @ W_k, keep the token's own.

    x: [B, T, d_in]; kernel: [K, d_in, d_out]; modality_ids: [B, T] -> [B, T, d_out].
    K times the dense FLOPs; `nn.mot` provides the grouped path with dense FLOPs.
    """
    if modality_ids is None:
        return x @ kernel[0]
    all_BTKF = jnp.einsum("btd,kdf->btkf", x, kernel)
    return jnp.take_along_axis(all_BTKF, modality_ids[:, :, None, None], axis=2)[:, :, 0]


# Set by nn.mot when it is imported: (x, kernel, modality_ids, *, cfg) -> y, dense FLOPs.
GROUPED_MATMUL = {}


@registry.register_projection("dense")
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
        x = x.astype(cfg.activation_dtype)
        kernel = kernel.astype(cfg.activation_dtype)
        if cfg.num_modalities == 1:
            return x @ kernel[0]
        if cfg.modality_dispatch == "grouped" and "grouped" in GROUPED_MATMUL:
            return GROUPED_MATMUL["grouped"](x, kernel, ctx.modality_ids, cfg=cfg)
        return modality_select_matmul(x, kernel, ctx.modality_ids)


def Projection(cfg: ModelConfig, features: int, *, axes=("embed", "mlp"), name: str,
               init_scale: float = 1.0, role: str = "") -> nn.Module:  # noqa: N802
    """The projection module the config asks for. `role` (q, k, v, o, ffn_up, ffn_down, ...)
    lets a projection family size itself (TokenFormer: attention vs FFN token counts)."""
    cls = registry.PROJECTIONS[cfg.projections]
    return cls(cfg=cfg, features=features, axes=axes, init_scale=init_scale, role=role, name=name)
