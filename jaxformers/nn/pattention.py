"""TokenFormer layers: the "pattention" projection and the Pattention feed-forward.

Paper: Wang et al., TokenFormer: Rethinking Transformer Scaling with Tokenized Model Parameters
(ICLR 2025, arXiv 2410.23168).

- `cfg.projections = "pattention"` turns every learned map that goes through `nn.projection.Projection`
  into a Pattention (eq. 4): Q, K, V and O of the attention (eqs. 5-8; token-token attention is
  unchanged), and every other mixer's / FFN's projections too. Token counts come from the role:
  q, k, v, o (and any role not listed) use `cfg.pattention.attn_tokens`; ffn, ffn_up, ffn_down
  use `cfg.pattention.ffn_tokens`.
- `cfg.feed_forward = "pattention"` is the paper's FFN (eqs. 9-10): ONE Pattention d -> d with
  `ffn_tokens` parameter tokens, i.e. a 2-layer MLP with W_in = K_P^T, W_out = V_P and Θ as the
  nonlinearity. Its module is named "pattention" (G_zero treats it as a residual output).
- Norms become non-parametric (`nn.norms.make_norm`, paper Table 5).

Parameters (leading modality axis K = `cfg.num_modalities`, as for dense kernels, so
Mixture-of-Transformers untying works too; the decoder's scan adds a "layers" axis in front):
  key_tokens   [K, n, d_in]   N(0, 0.02)                  (`init_method: normal`, §1.3)
  value_tokens [K, n, d_out]  N(0, (2 / (L sqrt(d)))^2)    (`wang_init`, §1.3; the dense
                                                            projections' init_scale is not used)
  constants/tau  scalar τ = default_tau(norm, n), stored in the non-trainable, checkpointed
  "constants" collection so that growth (`growth/tokens.py`) can freeze it at its old value.
The token axis is always axis -2 of both token tensors.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.nn.context import Context
from jaxformers.ops import pattention as ops


class PattentionProjection(nn.Module):
    """y = Θ(x K_P^T) V_P (TokenFormer eq. 4) in place of y = x W."""

    cfg: ModelConfig
    features: int
    axes: tuple[str, str] = ("embed", "mlp")
    init_scale: float = 1.0  # accepted for the Projection interface; the paper's init is used
    role: str = ""

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        n = cfg.pattention.tokens_for_role(self.role)
        k_modalities = cfg.num_modalities
        token_axis = "mlp" if self.role == "ffn" else "param_tokens"
        key_init = nn.initializers.normal(ops.KEY_INIT_STD)
        value_init = nn.initializers.normal(ops.value_init_std(cfg.num_layers, cfg.embed_dim))
        key_tokens = self.param(
            "key_tokens",
            nn.with_logical_partitioning(key_init, ("modality", token_axis, self.axes[0])),
            (k_modalities, n, x.shape[-1]),
            cfg.parameter_dtype,
        )
        value_tokens = self.param(
            "value_tokens",
            nn.with_logical_partitioning(value_init, ("modality", token_axis, self.axes[1])),
            (k_modalities, n, self.features),
            cfg.parameter_dtype,
        )
        tau = self.variable(
            "constants", "tau", lambda: jnp.asarray(ops.default_tau(cfg.pattention.norm, n),
                                                    jnp.float32)
        ).value
        x = x.astype(cfg.activation_dtype)

        def one(keys, values):
            return ops.pattention(x, keys, values, norm=cfg.pattention.norm, tau=tau,
                                  eps=cfg.pattention.eps)

        if k_modalities == 1:
            return one(key_tokens[0], value_tokens[0])
        all_BTKF = jax.vmap(one, out_axes=2)(key_tokens, value_tokens)  # every modality's map
        if ctx.modality_ids is None:
            return all_BTKF[:, :, 0]
        return jnp.take_along_axis(all_BTKF, ctx.modality_ids[:, :, None, None], axis=2)[:, :, 0]


class PattentionFFN(nn.Module):
    """FFN(x) = Θ(x K_P^T) V_P with `ffn_tokens` tokens: one Pattention d -> d (eqs. 9-10)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        return PattentionProjection(
            cfg=cfg, features=cfg.embed_dim, axes=("embed", "embed"), role="ffn",
            name="pattention",
        )(x, ctx)
