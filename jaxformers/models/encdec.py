"""The MLM-U encoder-decoder ("PAST", Nolte et al. 2024 §3.1).

Encoder: `num_layers` pre-norm blocks of bidirectional self-attention whose keys are the *visible*
tokens only (masked tokens are removed from attention, no [MASK] embedding), + feed-forward.
Decoder: `num_layers` blocks of **cross-attention only** (no decoder self-attention) + feed-forward.
Its queries are one learned vector, the same at every position; the position enters only through
RoPE on the query, so a query carries no token content. Keys/values are the encoder's final
normalised output (every decoder layer reads the same memory), masked to visible tokens.

`num_layers` is per stack (the paper's n_layer), so an encdec with L layers has about as many
parameters as a decoder-only model with 2L layers. RoPE (ops/rope.py) runs in float32 whatever the
activation dtype: the paper found half-precision RoPE breaks MLM-U on large mazes.
Parts reused from nn/: `Projection` (so MoT / TokenFormer projections apply), `make_norm`, the
registered feed-forward; math from ops/attention.py and ops/rope.py.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.models.decoder import layer_stack
from jaxformers.nn import registry
from jaxformers.nn.context import Context
from jaxformers.nn.linear import Unembedding
from jaxformers.nn.norms import make_norm
from jaxformers.nn.projection import Projection
from jaxformers.ops.attention import dot_product_attention
from jaxformers.ops.rope import apply_rope


class VisibleKeyAttention(nn.Module):
    """softmax(q k^T / sqrt(d)) v over visible keys only, RoPE on q and k (RoFormer eq. 34).

    x_q [B, Tq, d] at q_positions [B, Tq]; memory [B, Tk, d] at kv_positions [B, Tk];
    kv_visible [B, Tk] bool. Self-attention when x_q is memory.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_q, q_positions, memory, kv_positions, kv_visible, ctx: Context):
        cfg = self.cfg
        h, kvh, hd = cfg.num_heads, cfg.kv_heads, cfg.qk_head_dim
        batch, q_len, _ = x_q.shape
        kv_len = memory.shape[1]
        q = Projection(cfg, h * hd, axes=("embed", "q_heads"), name="query", role="q")(x_q, ctx)
        k = Projection(cfg, kvh * hd, axes=("embed", "kv_heads"), name="key", role="k")(memory, ctx)
        v = Projection(cfg, kvh * hd, axes=("embed", "kv_heads"), name="value", role="v")(
            memory, ctx)
        # PAST has biases on every linear map; the key bias gives every key a content-free part,
        # which the content-free decoder query needs to attend by relative position alone.
        q, k, v = (x + self._bias(name, x.shape[-1], axis)
                   for x, name, axis in ((q, "query_bias", "q_heads"), (k, "key_bias", "kv_heads"),
                                         (v, "value_bias", "kv_heads")))
        q = apply_rope(q.reshape(batch, q_len, h, hd), q_positions, base=cfg.rope_base)
        k = apply_rope(k.reshape(batch, kv_len, kvh, hd), kv_positions, base=cfg.rope_base)
        v = v.reshape(batch, kv_len, kvh, hd)
        mask = kv_visible.astype(bool)[:, None, None, :]  # [B, 1, 1, Tk]: same keys for every query
        out = dot_product_attention(q, k, v, causal=False, mask=mask)
        return Projection(
            cfg, cfg.embed_dim, axes=("q_heads", "embed"), name="out", role="o",
            init_scale=1.0 / (2 * cfg.num_layers) ** 0.5,
        )(out.reshape(batch, q_len, h * hd), ctx)


    def _bias(self, name, features, axis):
        bias = self.param(name, nn.with_logical_partitioning(nn.initializers.zeros, (axis,)),
                          (features,), self.cfg.parameter_dtype)
        return bias.astype(self.cfg.activation_dtype)


class EncoderBlock(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, positions, visible, ctx: Context):
        cfg = self.cfg
        h = make_norm(cfg, "attn_norm")(x, ctx)
        x = x + VisibleKeyAttention(cfg, name="self_attn")(h, positions, h, positions, visible, ctx)
        ffn = registry.FEED_FORWARDS[cfg.feed_forward](cfg=cfg, name="ffn")
        x = x + ffn(make_norm(cfg, "ffn_norm")(x, ctx), ctx)
        return x.astype(cfg.activation_dtype), None


class DecoderBlock(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, y, q_positions, memory, kv_positions, visible, ctx: Context):
        cfg = self.cfg
        h = make_norm(cfg, "attn_norm")(y, ctx)
        y = y + VisibleKeyAttention(cfg, name="cross_attn")(
            h, q_positions, memory, kv_positions, visible, ctx)
        ffn = registry.FEED_FORWARDS[cfg.feed_forward](cfg=cfg, name="ffn")
        y = y + ffn(make_norm(cfg, "ffn_norm")(y, ctx), ctx)
        return y.astype(cfg.activation_dtype), None


class EncoderDecoder(nn.Module):
    """(tokens [B,T], visible [B,T]) -> logits [B, Tq, vocab] (model.precision.output) at
    query_positions [B,Tq] (default: every position 0..T-1)."""

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.embed = nn.Embed(
            cfg.vocab_size, cfg.embed_dim,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0),
                                                        ("vocab", "embed")),
            param_dtype=cfg.parameter_dtype, dtype=cfg.activation_dtype, name="embed",
        )
        self.encoder = layer_stack(EncoderBlock, cfg, "encoder", self.is_initializing())
        self.encoder_norm = make_norm(cfg, "encoder_norm")
        self.query = self.param(  # the decoder's single learned query vector (PAST `wpe`)
            "query", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("embed",)),
            (cfg.embed_dim,), cfg.parameter_dtype,
        )
        self.decoder = layer_stack(DecoderBlock, cfg, "decoder", self.is_initializing())
        self.final_norm = make_norm(cfg, "final_norm")
        if not cfg.tie_embeddings:
            self.head = Unembedding(cfg, cfg.vocab_size, name="head")

    def _context(self, positions, deterministic):
        return Context(positions=positions.astype(jnp.int32), deterministic=deterministic)

    def encode(self, tokens, visible, *, deterministic: bool = True):
        """Memory [B, T, d]: the encoder's final normalised output (keys restricted to visible)."""
        if tokens.ndim != 2 or visible.shape != tokens.shape:
            raise ValueError(f"tokens {tokens.shape} and visible {visible.shape} must be [B, T]")
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        ctx = self._context(positions, deterministic)
        x, _ = self.encoder(self.embed(tokens), positions, visible, ctx)
        return self.encoder_norm(x, ctx)

    def decode(self, memory, visible, query_positions, *, deterministic: bool = True):
        """Logits [B, Tq, V] at query_positions [B, Tq] from memory [B, T, d] (visible keys)."""
        batch, length, _ = memory.shape
        kv_positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
        ctx = self._context(query_positions, deterministic)
        y = jnp.broadcast_to(self.query.astype(self.cfg.activation_dtype),
                             query_positions.shape + (self.cfg.embed_dim,))
        y, _ = self.decoder(y, query_positions.astype(jnp.int32), memory, kv_positions, visible,
                            ctx)
        y = self.final_norm(y, ctx)
        logits = self.embed.attend(y) if self.cfg.tie_embeddings else self.head(y)
        return logits.astype(self.cfg.output_dtype)

    def __call__(self, tokens, visible, *, query_positions=None, deterministic: bool = True):
        if query_positions is None:
            query_positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        memory = self.encode(tokens, visible, deterministic=deterministic)
        return self.decode(memory, visible, query_positions, deterministic=deterministic)

    def init_from_batch(self, batch):
        """Used by the training loop's init (the call signature differs from the decoder's)."""
        tokens = batch["inputs"]
        return self(tokens, jnp.ones(tokens.shape, bool),
                    query_positions=batch.get("query_positions"))


@functools.partial(jax.jit, static_argnames=("model", "steps"))
def greedy_decode(model: EncoderDecoder, variables, prompt: jax.Array, *, steps: int) -> jax.Array:
    """Left-to-right greedy decoding, one token per forward pass (Nolte et al. 2024, arXiv 2412.05117).

    prompt [B, P] (everything up to <PATH_START>) -> [B, steps] tokens. At step k the visible set
    is the prompt plus the k tokens decoded so far; the decoder queries only position P + k.
    """
    batch, prompt_len = prompt.shape
    length = prompt_len + steps
    tokens = jnp.concatenate([prompt, jnp.zeros((batch, steps), prompt.dtype)], axis=1)

    def body(k, tokens):
        visible = jnp.broadcast_to(jnp.arange(length)[None] < prompt_len + k, tokens.shape)
        query = jnp.full((batch, 1), prompt_len + k, jnp.int32)
        logits = model.apply(variables, tokens, visible, query_positions=query)
        nxt = jnp.argmax(logits[:, 0], axis=-1).astype(tokens.dtype)
        return jax.lax.dynamic_update_slice(tokens, nxt[:, None], (0, prompt_len + k))

    return jax.lax.fori_loop(0, steps, body, tokens)[:, prompt_len:]
