"""SwiGLU feed-forward (Shazeer 2020, "GLU Variants Improve Transformer", eq. 6)."""

import flax.linen as nn
import jax

from jaxformers.config import ModelConfig
from jaxformers.nn.context import Context
from jaxformers.nn.projection import Projection


class SwiGLU(nn.Module):
    """FFN(x) = (swish(x W_gate) * x W_up) W_down."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        gate = Projection(cfg, cfg.hidden_dim, axes=("embed", "mlp"), name="gate", role="ffn_up")
        up = Projection(cfg, cfg.hidden_dim, axes=("embed", "mlp"), name="up", role="ffn_up")
        down = Projection(
            cfg, cfg.embed_dim, axes=("mlp", "embed"), name="down", role="ffn_down",
            init_scale=1.0 / (2 * cfg.num_layers) ** 0.5,
        )
        return down(nn.silu(gate(x, ctx)) * up(x, ctx), ctx)
