"""In-context classification transformer (model family "icl_classifier").

Chan et al. 2022 (arXiv 2205.05055, §2) feed a sequence of N (exemplar, label) pairs and a query as
2N + 1 tokens: an exemplar token is the exemplar's embedding (here one linear read-in of the
continuous exemplar x ∈ R^D; Chan et al. use a ResNet on Omniglot images), a label token a learned
embedding of the label among L = model.vocab_size; the backbone is this library's decoder block stack
(models/decoder.py `Block`: any `model.token_mixer` / `model.feed_forward`, causal, RoPE for softmax
attention), and a linear read-out at the query, the last token, gives logits over the L labels.

  items [B, N+1, D] float, labels [B, N+1] int (labels[:, N], the query's, is never read)
  -> logits [B, L] float32
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ConfigError, ModelConfig
from jaxformers.models.decoder import Block, layer_stack
from jaxformers.nn.context import Context
from jaxformers.nn.norms import make_norm


def sequence_tokens(item_tokens: jax.Array, label_tokens: jax.Array) -> jax.Array:
    """[B, N+1, E] exemplar and [B, N, E] label embeddings -> [B, 2N+1, E]: x_1, l_1, ..., x_N, l_N, x_q."""
    b, n1, e = item_tokens.shape
    pairs = jnp.stack([item_tokens[:, :-1], label_tokens], axis=2).reshape(b, 2 * (n1 - 1), e)
    return jnp.concatenate([pairs, item_tokens[:, -1:]], axis=1)


class ICLClassifier(nn.Module):
    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        dense = dict(param_dtype=cfg.parameter_dtype, dtype=cfg.activation_dtype)
        self.read_in = nn.Dense(
            cfg.embed_dim,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (None, "embed")),
            name="read_in",
            **dense,
        )
        self.label_embed = nn.Embed(
            cfg.vocab_size,
            cfg.embed_dim,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
            name="label_embed",
            **dense,
        )
        self.layers = layer_stack(Block, cfg, "layers", self.is_initializing())
        self.final_norm = make_norm(cfg, "final_norm")
        self.read_out = nn.Dense(
            cfg.vocab_size,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.normal(cfg.init_std), ("embed", "vocab")
            ),
            name="read_out",
            **dense,
        )

    def __call__(self, items: jax.Array, labels: jax.Array) -> jax.Array:
        if items.ndim != 3 or labels.shape != items.shape[:2]:
            raise ValueError(
                f"items must be [batch, N+1, D] and labels [batch, N+1]; got {items.shape}, {labels.shape}"
            )
        if 2 * items.shape[1] - 1 > self.cfg.max_len:
            raise ConfigError(
                f"data.context={items.shape[1] - 1} makes a sequence of {2 * items.shape[1] - 1} "
                f"tokens > model.max_len={self.cfg.max_len}; raise model.max_len"
            )
        tokens = sequence_tokens(
            self.read_in(items.astype(self.cfg.activation_dtype)), self.label_embed(labels[:, :-1])
        )
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape[:2])
        ctx = Context(positions=positions.astype(jnp.int32))
        h, _ = self.layers(tokens, ctx)
        return self.read_out(self.final_norm(h, ctx)[:, -1]).astype(jnp.float32)  # the query's logits

    def init_from_batch(self, batch):
        return self(batch["inputs"], batch["labels"])
