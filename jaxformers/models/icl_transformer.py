"""Continuous-input transformer for in-context function learning (model family "icl_transformer").

Garg, Tsipras, Liang & Valiant 2022 (arXiv 2208.01066, §2-3): a prompt (x_1, y_1, ..., x_n, y_n) is
the token sequence x_1, ỹ_1, x_2, ỹ_2, ... with ỹ_i = (y_i, 0, ..., 0) ∈ R^d, both token kinds read
in by one linear map R^d -> R^embed (no token-type embedding); the backbone is this library's
decoder block stack (models/decoder.py `Block`, so every `model.token_mixer` and
`model.feed_forward` works, causal); a linear read-out R^embed -> R at the x positions gives ŷ_i,
the prediction of y_i from the pairs before it and x_i. Softmax attention gets positions via RoPE;
the linear mixers are causal recurrences and need none.

  xs [B, n, d], ys [B, n] -> ŷ [B, n] float32
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ConfigError, ModelConfig
from jaxformers.models.decoder import Block, layer_stack
from jaxformers.nn.context import Context
from jaxformers.nn.norms import make_norm


def interleave(xs: jax.Array, ys: jax.Array) -> jax.Array:
    """xs [B, n, d], ys [B, n] -> tokens [B, 2n, d]: x_1, (y_1, 0..0), x_2, (y_2, 0..0), ..."""
    y_tok = jnp.zeros_like(xs).at[..., 0].set(ys.astype(xs.dtype))
    return jnp.stack([xs, y_tok], axis=2).reshape(xs.shape[0], -1, xs.shape[-1])


class ICLTransformer(nn.Module):
    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        dense = dict(param_dtype=cfg.parameter_dtype, dtype=cfg.activation_dtype)
        self.read_in = nn.Dense(cfg.embed_dim, kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), (None, "embed")), name="read_in", **dense)
        self.layers = layer_stack(Block, cfg, "layers", self.is_initializing())
        self.final_norm = make_norm(cfg, "final_norm")
        self.read_out = nn.Dense(1, kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(cfg.init_std), ("embed", None)), name="read_out", **dense)

    def __call__(self, xs: jax.Array, ys: jax.Array) -> jax.Array:
        if xs.ndim != 3 or ys.shape != xs.shape[:2]:
            raise ValueError(f"xs must be [batch, n, d] and ys [batch, n]; got {xs.shape}, {ys.shape}")
        if 2 * xs.shape[1] > self.cfg.max_len:
            raise ConfigError(f"data.num_points={xs.shape[1]} makes a prompt of {2 * xs.shape[1]} "
                              f"tokens > model.max_len={self.cfg.max_len}; raise model.max_len")
        tokens = interleave(xs.astype(self.cfg.activation_dtype), ys)
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape[:2])
        ctx = Context(positions=positions.astype(jnp.int32))
        h, _ = self.layers(self.read_in(tokens), ctx)
        out = self.read_out(self.final_norm(h, ctx))[..., 0]
        return out[:, ::2].astype(jnp.float32)  # the x positions predict their own y

    def init_from_batch(self, batch):
        return self(batch["inputs"], batch["targets"])
