"""Gated linear attention and causal linear attention token mixers.

"gla": the GLA layer in its current fla form (fla/layers/gla.py, Yang et al. 2024 §4.4):
    q = x W_q, k = x W_k (d -> key_dim_ratio*d), v = x W_v (d -> value_dim_ratio*d)
    g = logsigmoid(x W_1 W_2 + b) / gate_logit_normalizer     (low-rank gate, rank 16, §4.1)
    o = GLA(phi(q), phi(k), v, g) per head, scale = dk_head^-1/2, phi = model.gla.feature_map
        (identity by default, as in the paper)
    y = (RMSNorm_head(o) * w ⊙ swish(x W_r)) W_o              (fla FusedRMSNormGated)
  Variant chosen: fla's (RMSNorm per head with a learned weight shared by the heads, no bias on
  the output gate), not the original module's affine-free LayerNorm + biased gate, so that
  fla-hub checkpoints map onto it. Initialisation: the library's normal(init_std) for every
  projection (the original used xavier with gain 2^-2.5 for q, k and the gate).

"linear_attention": causal linear attention (Katharopoulos et al. 2020, eq. 4-6) with a feature
map, optional normaliser and a per-head RMSNorm of the output (fla's `output_norm="rmsnorm"`).

Training and prefill use the chunked form; `ctx.decode` carries the recurrent state [B,H,Dk,Dv]
in the "cache" collection (one token at a time with the recurrence, longer prompts chunked).
Packed documents: `ctx.segment_ids` reset the state at every document start, in the XLA forms
(ops/linear_attention.py) and in the Pallas GLA kernel (kernels/gla.py, forward and backward).
Decoding takes no segment_ids (one document per sequence).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.nn.context import Context, segments_for
from jaxformers.nn.projection import Projection
from jaxformers.ops import causal_linear_attention as cla_ops
from jaxformers.ops import linear_attention as la_ops
from jaxformers.ops.norms import rms_normalize


class RecurrentState(nn.Module):
    """The decode state [B, H, Dk, Dv] (float32) in the "cache" collection.

    `run(fn)` calls fn(initial_state) -> (out, new_state) and stores new_state. During
    `model.init(decode=True)` the state is only allocated (fn runs without it).
    """

    shape: tuple

    @nn.compact
    def __call__(self, fn):
        initialized = self.has_variable("cache", "state")
        state = self.variable("cache", "state", jnp.zeros, self.shape, jnp.float32)
        if not initialized:
            return fn(None)[0]
        out, new_state = fn(state.value)
        state.value = new_state.astype(jnp.float32)
        return out


def _heads(x, h):
    return x.reshape(x.shape[:2] + (h, x.shape[-1] // h))


class GatedLinearAttention(nn.Module):
    """GLA token mixer (Yang et al. 2024, §4.1 gate, §4.4 layer; fla variant, see module doc)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg, opt = self.cfg, self.cfg.gla
        segment_ids = segments_for(ctx, "gla")
        b, t, d = x.shape
        h = cfg.num_heads
        key_dim, value_dim = cfg.gla.dims(cfg.embed_dim)
        q = Projection(cfg, key_dim, axes=("embed", "q_heads"), name="query", role="q")(x, ctx)
        k = Projection(cfg, key_dim, axes=("embed", "kv_heads"), name="key", role="k")(x, ctx)
        v = Projection(cfg, value_dim, axes=("embed", "kv_heads"), name="value", role="v")(x, ctx)
        # low-rank gate: logsigmoid(x W1 W2 + b) / tau  (GLA §4.1, alpha = sigmoid(.)^(1/tau))
        low = Projection(
            cfg, opt.gate_low_rank_dim, axes=("embed", None), name="gate_down", role="gate"
        )(x, ctx)
        gate_logits = Projection(
            cfg, key_dim, axes=(None, "kv_heads"), name="gate_up", role="gate"
        )(low, ctx)
        bias = self.param(
            "gate_bias",
            nn.with_logical_partitioning(nn.initializers.zeros, ("kv_heads",)),
            (key_dim,),
            cfg.parameter_dtype,
        )
        gate_logits = gate_logits.astype(jnp.float32) + bias.astype(jnp.float32)
        log_alpha = jax.nn.log_sigmoid(gate_logits) / opt.gate_logit_normalizer
        q, k, v, log_alpha = (_heads(a, h) for a in (q, k, v, log_alpha))
        q, k = (cla_ops.apply_feature_map(a, opt.feature_map) for a in (q, k))

        def run(initial_state):
            if initial_state is None and opt.impl != "xla":
                from jaxformers.kernels.gla import gla  # late import: kernels are optional
                from jaxformers.kernels.sharding import per_shard

                def kernel(q, k, v, log_alpha, segment_ids):
                    return gla(q, k, v, log_alpha, chunk_size=opt.chunk_size, impl=opt.impl,
                               segment_ids=segment_ids)

                # (out [B,T,H,Dv], state [B,H,Dk,Dv]) per device shard on a mesh.
                return per_shard(kernel, q, k, v, log_alpha, segment_ids,
                                 head_dims=(2, 2, 2, 2, None), out_head_dims=(2, 1))
            if t == 1 and initial_state is not None:
                return la_ops.gla_recurrent(q, k, v, log_alpha, initial_state=initial_state)
            return la_ops.gla_chunked(
                q, k, v, log_alpha, chunk_size=opt.chunk_size, initial_state=initial_state,
                segment_ids=segment_ids,
            )

        if ctx.decode:
            out = RecurrentState((b, h, key_dim // h, value_dim // h), name="cache")(run)
        else:
            out = run(None)[0]
        # fla FusedRMSNormGated: rmsnorm(o) * w * silu(r), per head, statistics in float32
        norm_w = self.param(
            "norm_scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
            (value_dim // h,),
            cfg.parameter_dtype,
        )
        out = rms_normalize(out, opt.norm_eps) * norm_w.astype(jnp.float32)
        r = Projection(cfg, value_dim, axes=("embed", "q_heads"), name="out_gate", role="gate")(
            x, ctx
        )
        out = out.reshape(b, t, value_dim) * jax.nn.silu(r.astype(jnp.float32))
        return Projection(
            cfg, d, axes=("q_heads", "embed"), name="out", role="o",
            init_scale=1.0 / (2 * cfg.num_layers) ** 0.5,
        )(out.astype(cfg.activation_dtype), ctx)


class LinearAttention(nn.Module):
    """Causal linear attention: o_t = phi(q_t) S_t [/ phi(q_t) z_t] (Katharopoulos et al. eq. 4-6)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg, opt = self.cfg, self.cfg.linear_attention
        segment_ids = segments_for(ctx, "linear_attention")
        b, t, d = x.shape
        h, hd = cfg.num_heads, cfg.qk_head_dim
        q = Projection(cfg, h * hd, axes=("embed", "q_heads"), name="query", role="q")(x, ctx)
        k = Projection(cfg, h * hd, axes=("embed", "kv_heads"), name="key", role="k")(x, ctx)
        v = Projection(cfg, h * hd, axes=("embed", "kv_heads"), name="value", role="v")(x, ctx)
        q, k, v = (_heads(a, h) for a in (q, k, v))
        kw = dict(normalize=opt.normalize, feature_map=opt.feature_map)

        def run(initial_state):
            if t == 1 and initial_state is not None:
                return cla_ops.linear_attention_recurrent(q, k, v, initial_state=initial_state, **kw)
            return cla_ops.linear_attention_chunked(
                q, k, v, chunk_size=opt.chunk_size, initial_state=initial_state,
                segment_ids=segment_ids, **kw
            )

        if ctx.decode:
            shape = (b, h, hd, hd + int(opt.normalize))
            out = RecurrentState(shape, name="cache")(run)
        else:
            out = run(None)[0]
        if opt.output_norm:
            out = rms_normalize(out) * self.param(
                "norm_scale",
                nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                (hd,),
                cfg.parameter_dtype,
            ).astype(jnp.float32)
        out = out.reshape(b, t, h * hd).astype(cfg.activation_dtype)
        return Projection(
            cfg, d, axes=("q_heads", "embed"), name="out", role="o",
            init_scale=1.0 / (2 * cfg.num_layers) ** 0.5,
        )(out, ctx)
