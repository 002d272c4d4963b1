"""Multi-token prediction decoder: a shared trunk and n parallel heads (Gloeckle et al. 2024,
arXiv 2404.19737, §2).

The trunk is the composed `Decoder` (embedding -> model.num_layers blocks, any token mixer, FFN,
projection or modality setting); head i (i = 1..n, n = model.mtp.num_future_tokens) is one more
`Block` on the trunk output z, followed by the shared final norm and the shared unembedding:
P(x_{t+i} | x_{<=t}) = softmax(f_u(f_{h_i}(z_t))). Head 1 is the next-token head, so the module
called plainly returns head 1's logits and decodes with `models.sampling.generate` like a Decoder;
`heads="all"` returns every head's logits for the "mtp" objective and speculative decoding.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.models.decoder import Block, Decoder, token_context
from jaxformers.nn.context import Context


class MTPDecoder(Decoder):
    """tokens [B, T] -> head-1 logits [B, T, V], or [n, B, T, V] with heads="all" (float32)."""

    def setup(self):
        super().setup()
        block = nn.remat(Block, prevent_cse=False) if self.cfg.remat else Block
        self.mtp_heads = [block(self.cfg) for _ in range(self.cfg.mtp.num_future_tokens)]

    def unembed(self, h: jax.Array, ctx: Context) -> jax.Array:
        h = self.final_norm(h, ctx)
        logits = self.embed.attend(h) if self.cfg.tie_embeddings else self.head(h)
        return logits.astype(jnp.float32)

    def __call__(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        modality_ids: jax.Array | None = None,
        step: jax.Array | None = None,
        active_experts: jax.Array | None = None,
        decode: bool = False,
        deterministic: bool = True,
        heads: str = "first",
    ) -> jax.Array:
        if heads not in ("first", "all"):
            raise ValueError(f"heads={heads!r}; expected 'first' or 'all'")
        ctx = token_context(tokens, positions=positions, segment_ids=segment_ids,
                            modality_ids=modality_ids, step=step, active_experts=active_experts,
                            decode=decode, deterministic=deterministic)
        z, _ = self.layers(self.embed(tokens), ctx)
        # init creates every head (and every head's decode cache) whichever heads are asked for
        used = self.mtp_heads if heads == "all" or self.is_initializing() else self.mtp_heads[:1]
        logits = [self.unembed(head(z, ctx)[0], ctx) for head in used]
        return jnp.stack(logits) if heads == "all" else logits[0]
