"""Multi-head softmax attention token mixer: GQA, RoPE, optional QK-norm and a KV cache.

Outlier-free options (Bondarenko, Nagel & Blankevoort 2023, arXiv 2306.12929):
`model.attention.softmax="clipped"` (eq. 4.1, XLA path only) and `model.attention.gate="per_head"`
(§4.2): each head's output is scaled by sigmoid(x W_g + b) computed from the block input x (the same
input as Q/K/V) before the output projection; W_g [d, H] goes through `Projection` (so MoT and
TokenFormer apply) and b = logit(gate_init). The gate sits outside any kernel, so it works with
the Pallas flash path and the KV cache.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.nn.context import Context, segments_for
from jaxformers.nn.norms import RMSNorm
from jaxformers.nn.projection import Projection
from jaxformers.ops import attention as attention_ops
from jaxformers.ops.rope import apply_rope


def attend(q, k, v, *, cfg: ModelConfig, segment_ids=None, mask=None, causal=None):
    """Dispatch to the ops/ reference or the Pallas kernel (cfg.attention.impl)."""
    causal = cfg.causal if causal is None else causal
    if cfg.attention.impl == "xla" and mask is None and causal and cfg.attention.causal_block:
        return attention_ops.causal_block_attention(
            q, k, v, block_size=cfg.attention.causal_block, segment_ids=segment_ids,
            **softmax_kwargs(cfg),
        )
    if cfg.attention.impl == "xla" or mask is not None:
        return attention_ops.dot_product_attention(
            q, k, v, causal=causal, segment_ids=segment_ids, mask=mask, **softmax_kwargs(cfg)
        )
    from jaxformers.kernels.flash_attention import flash_attention  # late: kernels are optional
    from jaxformers.kernels.sharding import per_shard

    def kernel(q, k, v, segment_ids):
        return flash_attention(
            q, k, v, causal=causal, segment_ids=segment_ids, impl=cfg.attention.impl,
            block_q=cfg.attention.block_q, block_kv=cfg.attention.block_kv,
        )

    # Per device shard on a mesh: a pallas_call has no GSPMD partitioning (kernels/sharding.py).
    return per_shard(kernel, q, k, v, segment_ids, head_dims=(2, 2, 2, None), out_head_dims=2)


def softmax_kwargs(cfg: ModelConfig) -> dict:
    """gamma / zeta of the clipped softmax, or {} for plain softmax."""
    if cfg.attention.softmax == "clipped":
        return {"gamma": cfg.attention.gamma, "zeta": cfg.attention.zeta}
    return {}


class HeadGate(nn.Module):
    """g = sigmoid(x W_g + b) [B, T, H]: one gate per head and token (Bondarenko et al. §4.2)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        pi = cfg.attention.gate_init
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.constant(math.log(pi / (1 - pi))), ("q_heads",)),
            (cfg.num_heads,), cfg.parameter_dtype,
        )
        logits = Projection(cfg, cfg.num_heads, axes=("embed", "q_heads"), name="proj", role="gate")(x, ctx)
        return jax.nn.sigmoid(logits.astype(jnp.float32) + bias.astype(jnp.float32))


class KVCache(nn.Module):
    """Fixed-size [B, max_len, K, D] key/value cache; writes T new entries at `index`."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, k, v, ctx: Context):
        batch, length, kv_heads, head_dim = k.shape
        shape = (batch, self.cfg.max_len, kv_heads, head_dim)
        initialized = self.has_variable("cache", "key")
        cached_k = self.variable("cache", "key", jnp.zeros, shape, k.dtype)
        cached_v = self.variable("cache", "value", jnp.zeros, shape, v.dtype)
        index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
        if not initialized:  # model.init(decode=True) only allocates the cache
            return k, v, None
        cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (0, index.value, 0, 0))
        cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (0, index.value, 0, 0))
        kv_positions = jnp.broadcast_to(jnp.arange(self.cfg.max_len), (batch, self.cfg.max_len))
        filled = kv_positions < index.value + length
        index.value = index.value + length
        mask = attention_ops.attention_mask(
            length, self.cfg.max_len, causal=True, q_positions=ctx.positions,
            kv_positions=kv_positions, kv_valid=filled,
        )
        return cached_k.value, cached_v.value, mask


class Attention(nn.Module):
    """softmax((x W_q)(x W_k)^T / sqrt(d)) x W_v W_o with RoPE on q and k (RoFormer eq. 34)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        batch, length, _ = x.shape
        h, kvh, hd = cfg.num_heads, cfg.kv_heads, cfg.qk_head_dim
        q = Projection(cfg, h * hd, axes=("embed", "q_heads"), name="query", role="q")(x, ctx)
        k = Projection(cfg, kvh * hd, axes=("embed", "kv_heads"), name="key", role="k")(x, ctx)
        v = Projection(cfg, kvh * hd, axes=("embed", "kv_heads"), name="value", role="v")(x, ctx)
        q = q.reshape(batch, length, h, hd)
        k = k.reshape(batch, length, kvh, hd)
        v = v.reshape(batch, length, kvh, hd)
        if cfg.attention.qk_norm:  # per head dim, untied per modality (MoT §2.2)
            q = RMSNorm(cfg, parametric=cfg.parametric_norms, name="query_norm")(q, ctx)
            k = RMSNorm(cfg, parametric=cfg.parametric_norms, name="key_norm")(k, ctx)
        q = apply_rope(q, ctx.positions, base=cfg.rope_base)
        k = apply_rope(k, ctx.positions, base=cfg.rope_base)
        segment_ids = segments_for(ctx, "attention")
        if ctx.decode:
            k, v, mask = KVCache(cfg, name="cache")(k, v, ctx)
            out = attention_ops.dot_product_attention(
                q, k, v, causal=mask is None, mask=mask, **softmax_kwargs(cfg)
            )
        else:
            out = attend(q, k, v, cfg=cfg, segment_ids=segment_ids)
        if cfg.attention.gate == "per_head":
            out = out * HeadGate(cfg, name="gate")(x, ctx)[..., None].astype(out.dtype)
        out = out.reshape(batch, length, h * hd)
        return Projection(
            cfg, cfg.embed_dim, axes=("q_heads", "embed"), name="out", role="o",
            init_scale=1.0 / (2 * cfg.num_layers) ** 0.5,
        )(out, ctx)
