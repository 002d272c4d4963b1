"""RMSNorm (Zhang & Sennrich 2019, eq. 4) with statistics in float32, untied per modality if K > 1.

One module serves the residual stream ([B, T, d]) and the per-head QK-norm of queries and keys
([B, T, H, D]; Mixture-of-Transformers §2.2 "QK-norm ... per modality", Chameleon's QK-norm): the
scale is [K, last_dim] either way.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.nn.context import Context
from jaxformers.ops.mot import select_by_modality
from jaxformers.ops.norms import rms_normalize


class RMSNorm(nn.Module):
    """Learned scale per channel, and per modality for Mixture-of-Transformers (§2.2 eq. 2).

    TokenFormer uses non-parametric norms (Wang et al. 2025, Table 5): `parametric=False` drops the
    scale.
    """

    cfg: ModelConfig
    parametric: bool = True
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        y = rms_normalize(x, self.eps)
        if self.parametric:
            scale = self.param(
                "scale",
                nn.with_logical_partitioning(nn.initializers.ones, ("modality", "norm")),
                (self.cfg.num_modalities, x.shape[-1]),
                self.cfg.parameter_dtype,
            )
            scale = select_by_modality(scale.astype(jnp.float32), ctx.modality_ids)  # [B|1, T|1, D]
            y = y * scale.reshape(scale.shape[:2] + (1,) * (x.ndim - 3) + scale.shape[-1:])
        return y.astype(self.cfg.activation_dtype)


def make_norm(cfg: ModelConfig, name: str) -> RMSNorm:
    return RMSNorm(cfg=cfg, parametric=cfg.parametric_norms, name=name)
