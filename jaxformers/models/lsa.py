"""Linear self-attention (LSA) stack for in-context linear regression (model family "lsa").

tokens [B, N+1, d+1] (context (x_i, y_i), query (x_q, 0) last) -> prediction ŷ [B] read from the
query's label slot after `num_layers` LSA layers (ops.linear_attention.linear_self_attention):
  "merged"   (Zhang, Frei & Bartlett 2024, eq. 3.2): W_KQ, W_PV per layer, ŷ = f(E)_{d+1,N+1};
  "separate" (von Oswald et al. 2023, eq. 6): W_Q, W_K, W_V, W_P per layer, ŷ = -e_q[-1].
One head, no softmax, norm, MLP or positional encoding. Initialisation normal(cfg.init_std)
(ZFB ran 1e-3; vO used VarianceScaling(0.002)).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.ops.lsa import linear_self_attention

_NAMES = {"merged": ("kq", "pv"), "separate": ("query", "key", "value", "projection")}


class LSA(nn.Module):
    """A stack of LSA layers; `__call__(tokens) -> ŷ [B]`, `layer_outputs(tokens)` for probing."""

    cfg: ModelConfig

    def layer_params(self, i: int) -> dict:
        dim = self.cfg.embed_dim
        init = nn.initializers.normal(self.cfg.init_std)
        return {
            name: self.param(f"layer_{i}_{name}", init, (dim, dim), self.cfg.parameter_dtype)
            for name in _NAMES[self.cfg.lsa.parameterization]
        }

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        cfg = self.cfg
        if tokens.ndim != 3 or tokens.shape[-1] != cfg.embed_dim:
            raise ValueError(
                f"tokens must be [batch, N+1, model.embed_dim={cfg.embed_dim}]; got {tokens.shape}"
            )
        x = tokens.astype(cfg.activation_dtype)
        for i in range(cfg.num_layers):  # a handful of tiny layers: unrolled
            params = {k: v.astype(x.dtype) for k, v in self.layer_params(i).items()}
            x = linear_self_attention(
                x, params, include_query_as_key=cfg.lsa.include_query_as_key,
                normalize_by_context=cfg.lsa.normalize_by_context,
            )
        pred = x[:, -1, -1].astype(jnp.float32)
        return -pred if cfg.lsa.readout == "negated" else pred

    def init_from_batch(self, batch):
        return self(batch["inputs"])


def effective_preconditioner(params: dict, d: int, layer: int = 0) -> jax.Array:
    """The d×d matrix A of ŷ ≈ x_q^T A (1/N) Σ y_i x_i that one merged layer implements:
    A = u · W_KQ[:d, :d]^T with u = W_PV[d, d] (ZFB Lemma: only these blocks matter); the
    trained value should approach Γ^{-1} (ZFB Thm. 4.1)."""
    kq, pv = params[f"layer_{layer}_kq"], params[f"layer_{layer}_pv"]
    return pv[d, d] * kq[:d, :d].T
