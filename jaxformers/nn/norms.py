"""RMSNorm (Zhang & Sennrich 2019, eq. 4) with statistics in float32, untied per modality if K > 1."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.models.config import ModelConfig
from jaxformers.nn.context import Context


def rms_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """x / sqrt(mean(x^2) + eps), computed in float32, returned in float32."""
    x32 = x.astype(jnp.float32)
    return x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)


def select_by_modality(table: jax.Array, modality_ids: jax.Array | None) -> jax.Array:
    """table: [K, ...] -> [B, T, ...] rows chosen per token (modality 0 when ids are None).

    K = 1 ignores the ids, so a dense model runs unchanged on multi-modality batches (jnp.take
    would otherwise fill out-of-range rows with NaN)."""
    if modality_ids is None or table.shape[0] == 1:
        return table[0][None, None]
    return jnp.take(table, modality_ids, axis=0)


class RMSNorm(nn.Module):
    """Learned scale per channel (and per modality for Mixture-of-Transformers, §2.2 eq. 2).

    TokenFormer uses non-parametric norms (methods.md §1.2): `parametric=False` drops the scale.
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
            y = y * select_by_modality(scale.astype(jnp.float32), ctx.modality_ids)
        return y.astype(self.cfg.activation_dtype)


def make_norm(cfg: ModelConfig, name: str) -> RMSNorm:
    return RMSNorm(cfg=cfg, parametric=cfg.projections != "pattention", name=name)
