"""Decoder-only language model composed from the model config.

Embedding -> L blocks (nn.scan: parameters carry a leading "layers" axis) -> RMSNorm -> head.
A block is token mixer + feed-forward, chosen by name from `nn.registry`, with pre-norm or
norm-after-branch (Chameleon / MoT §2.2) residuals.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.nn import registry
from jaxformers.nn.context import Context
from jaxformers.nn.linear import Unembedding
from jaxformers.nn.norms import make_norm

# Collections whose variables live per layer and are stacked along the scanned axis.
LAYER_COLLECTIONS = ("params", "constants", "cache", "aux_loss", "intermediates", "quant_stats")


def token_context(tokens: jax.Array, *, positions=None, segment_ids=None, modality_ids=None,
                  step=None, active_experts=None, decode=False, deterministic=True) -> Context:
    """The Context of a [batch, time] token batch (positions 0..T-1 unless given)."""
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [batch, time]; got shape {tokens.shape}")
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    return Context(
        positions=positions.astype(jnp.int32),
        segment_ids=segment_ids,
        modality_ids=None if modality_ids is None else modality_ids.astype(jnp.int32),
        step=step,
        active_experts=active_experts,
        decode=decode,
        deterministic=deterministic,
    )


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context):
        cfg = self.cfg
        mixer = registry.TOKEN_MIXERS[cfg.token_mixer](cfg=cfg, name="mixer")
        ffn = registry.FEED_FORWARDS[cfg.feed_forward](cfg=cfg, name="ffn")
        mixer_norm, ffn_norm = make_norm(cfg, "mixer_norm"), make_norm(cfg, "ffn_norm")
        if cfg.norm_placement == "pre":
            mixer_out = mixer(mixer_norm(x, ctx), ctx)
            x = x + mixer_out
            ffn_out = ffn(ffn_norm(x, ctx), ctx)
            x = x + ffn_out
        else:  # norm after branch: h = x + norm(attn(x)); out = h + norm(ffn(h))  (MoT eq. 3)
            mixer_out = mixer_norm(mixer(x, ctx), ctx)
            x = x + mixer_out
            ffn_out = ffn_norm(ffn(x, ctx), ctx)
            x = x + ffn_out
        # Block outputs for the outlier evaluator (train/outliers.py); no-ops unless "intermediates"
        # is mutable in apply.
        self.sow("intermediates", "mixer_out", mixer_out)
        self.sow("intermediates", "ffn_out", ffn_out)
        self.sow("intermediates", "residual", x)
        return x.astype(cfg.activation_dtype), None


def layer_stack(block, cfg: ModelConfig, name: str, initializing: bool = False):
    """cfg.num_layers copies of `block` with their parameters stacked on a leading "layers" axis
    (nn.scan), rematerialised if cfg.remat, unrolled if cfg.unroll_layers (model.layer_loop): the
    same parameter tree either way, so checkpoints, growth and sharding rules do not depend on it.
    `initializing` (the caller's `self.is_initializing()`): model.init always scans, since
    unrolling only speeds up the step and an unrolled init compiles every layer's initialisers
    (8 layers: 3.7 s instead of ~0.5 s); the per-layer keys, so the parameters, are the same."""
    if cfg.remat:
        block = nn.remat(block, prevent_cse=False)
    return nn.scan(
        block,
        variable_axes={c: 0 for c in LAYER_COLLECTIONS},
        split_rngs={"params": True, "dropout": True, "routing": True},
        in_axes=nn.broadcast,
        length=cfg.num_layers,
        unroll=cfg.num_layers if cfg.unroll_layers and not initializing else 1,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )(cfg, name=name)


class Decoder(nn.Module):
    """tokens [B, T] int -> logits [B, T, vocab] in model.precision.output (float32 by default)."""

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.embed = nn.Embed(
            cfg.vocab_size,
            cfg.embed_dim,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(1.0), ("vocab", "embed")
            ),
            param_dtype=cfg.parameter_dtype,
            dtype=cfg.activation_dtype,
            name="embed",
        )
        self.layers = layer_stack(Block, cfg, "layers", self.is_initializing())
        self.final_norm = make_norm(cfg, "final_norm")
        if not cfg.tie_embeddings:
            self.head = Unembedding(cfg, cfg.vocab_size, name="head")

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
    ) -> jax.Array:
        ctx = token_context(tokens, positions=positions, segment_ids=segment_ids,
                            modality_ids=modality_ids, step=step, active_experts=active_experts,
                            decode=decode, deterministic=deterministic)
        x = self.embed(tokens)
        x, _ = self.layers(x, ctx)
        x = self.final_norm(x, ctx)
        if self.cfg.tie_embeddings:
            logits = self.embed.attend(x)
        else:
            logits = self.head(x)
        return logits.astype(self.cfg.output_dtype)
