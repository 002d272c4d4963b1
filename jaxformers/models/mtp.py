"""Multi-token prediction decoder: a shared trunk and n predictions per position, as parallel heads
(Gloeckle et al. 2024, arXiv 2404.19737, §2) or as sequential MTP modules (DeepSeek-V3, arXiv
2412.19437, §2.2).

The trunk is the composed `Decoder` (embedding -> model.num_layers blocks, any token mixer, FFN,
projection or modality setting). Head 1, the next-token head, is one more `Block` on the trunk output
z, followed by the shared final norm and the shared unembedding, for both kinds, so the module called
plainly returns head 1's logits and decodes with `models.sampling.generate` like a Decoder.

parallel (model.mtp.kind): head i = 1..n is its own `Block` on z,
    P(x_{t+i} | x_{<=t}) = softmax(f_u(f_{h_i}(z_t)))                     (Gloeckle §2, eq. 2)
sequential: depth k = 1..n-1 combines depth k-1's hidden state h^{k-1} (h^0 = head 1's block
output) with the embedding of the token k steps ahead, then runs one `Block`,
    h'^k_t = M_k [RMSNorm(Emb(x_{t+k})); RMSNorm(h^{k-1}_t)],  h^k = TRM_k(h'^k)
    P(x_{t+k+1} | x_{<=t+k}) = softmax(OutHead(h^k_t))                     (DeepSeek-V3 eqs. 21-23)
with the embedding and output head shared. The paper writes [h; emb]; the released weights and
every implementation put the embedding first (`eh_proj(cat[enorm(emb), hnorm(h)])`), as here.
ftp: future token prediction (Walker 2024, arXiv 2410.18160): the trunk's vector z_t (RMSNorm) is
projected linearly into a pseudo-sequence of L = model.mtp.pseudo_sequence_length vectors,
    S_t = reshape(W z_t) in R^{L x d},   W in R^{Ld x d},
and a small decoder reads the n tokens (x_t, x_{t+1}, ..., x_{t+n-1}) with causal self-attention
(one `Block`) and cross-attention to S_t (one encdec `DecoderBlock`); its output j, through the
shared final norm and unembedding, predicts x_{t+j+1} from x_{<=t+j}. Chosen here, as the paper's
details were not available: the decoder's first input is x_t itself, one self-attention and one
cross-attention block, RoPE positions 0..L-1 / 0..n-1 in the decoder, L = 4.
`heads="all"` returns every prediction's logits [n, B, T, V] for the "mtp" objective.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.models.decoder import Block, Decoder, token_context
from jaxformers.models.encdec import DecoderBlock
from jaxformers.nn.context import Context
from jaxformers.nn.norms import make_norm


def shift_left(tokens: jax.Array, k: int) -> jax.Array:
    """tokens [B, T] -> [B, T] with column t holding tokens[:, t+k] (zeros past the end; those
    positions have no target k+1 steps ahead and carry no loss)."""
    return jnp.pad(tokens[:, k:], ((0, 0), (0, k)))


class SequentialMTPModule(nn.Module):
    """One DeepSeek-V3 MTP depth (§2.2 eqs. 21-22): (h^{k-1}, Emb(x_{t+k})) [B, T, d] -> h^k."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, hidden: jax.Array, next_embedding: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        combined = jnp.concatenate(
            [make_norm(cfg, "embed_norm")(next_embedding, ctx), make_norm(cfg, "hidden_norm")(hidden, ctx)],
            axis=-1,
        )
        projected = nn.DenseGeneral(  # M_k in R^{d x 2d}
            cfg.embed_dim,
            use_bias=False,
            kernel_init=nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), ("mlp", "embed")),
            param_dtype=cfg.parameter_dtype,
            dtype=cfg.activation_dtype,
            name="proj",
        )(combined)
        return Block(cfg, name="block")(projected, ctx)[0]


class FutureTokenDecoder(nn.Module):
    """Walker 2024's FTP decoder: (z [B, T, d], decoder inputs [B, T, m] token ids with column j =
    x_{t+j}) -> hidden [B, T, m, d], column j predicting x_{t+j+1}."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, z, embedded_inputs, ctx: Context):
        cfg = self.cfg
        batch, time, count, d = embedded_inputs.shape
        length = cfg.mtp.pseudo_sequence_length
        pseudo = nn.DenseGeneral(  # the expansive linear map W in R^{Ld x d}
            length * d,
            use_bias=False,
            kernel_init=nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), ("embed", "mlp")),
            param_dtype=cfg.parameter_dtype,
            dtype=cfg.activation_dtype,
            name="expand",
        )(make_norm(cfg, "trunk_norm")(z, ctx))
        memory = pseudo.reshape(batch * time, length, d)
        y = embedded_inputs.reshape(batch * time, count, d)
        # each position's n-token mini-sequence: causal, never cached (it is rebuilt every step)
        mini = token_context(
            jnp.zeros((batch * time, count), jnp.int32), step=ctx.step,
            active_experts=ctx.active_experts, deterministic=ctx.deterministic,
        )  # fmt: skip
        y = Block(cfg, name="self_block")(y, mini)[0]
        memory_positions = jnp.broadcast_to(jnp.arange(length), (batch * time, length))
        visible = jnp.ones((batch * time, length), bool)
        cross = DecoderBlock(cfg, name="cross_block")
        y = cross(y, mini.positions, memory, memory_positions, visible, mini)[0]
        return y.reshape(batch, time, count, d)


class MTPDecoder(Decoder):
    """tokens [B, T] -> head-1 logits [B, T, V], or [n, B, T, V] with heads="all" (precision.output)."""

    def setup(self):
        super().setup()
        cfg = self.cfg
        block = nn.remat(Block, prevent_cse=False) if cfg.remat else Block
        n = cfg.mtp.num_future_tokens
        if cfg.mtp.kind == "parallel":
            self.mtp_heads = [block(cfg) for _ in range(n)]
        elif cfg.mtp.kind == "ftp":
            self.ftp_decoder = FutureTokenDecoder(cfg)
        else:
            self.mtp_heads = [block(cfg)]
            module = nn.remat(SequentialMTPModule, prevent_cse=False) if cfg.remat else SequentialMTPModule
            self.mtp_modules = [module(cfg) for _ in range(n - 1)]

    def unembed(self, h: jax.Array, ctx: Context) -> jax.Array:
        h = self.final_norm(h, ctx)
        logits = self.embed.attend(h) if self.cfg.tie_embeddings else self.head(h)
        return logits.astype(self.cfg.output_dtype)

    def trunk(self, tokens: jax.Array, **context) -> jax.Array:
        """tokens [B, T] -> z [B, T, d], the trunk output every head reads."""
        return self.layers(self.embed(tokens), token_context(tokens, **context))[0]

    def parallel_head(self, tokens: jax.Array, *, z: jax.Array, index: int, **context) -> jax.Array:
        """Logits [B, T, V] of parallel head `index` (0-based) on the trunk output z."""
        ctx = token_context(tokens, **context)
        return self.unembed(self.mtp_heads[index](z, ctx)[0], ctx)

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
        if decode and heads == "all" and self.cfg.mtp.kind != "parallel" and not self.is_initializing():
            raise ValueError(
                "heads='all' with decode=True needs model.mtp.kind='parallel' (a sequential module "
                "or the FTP decoder reads the tokens ahead, which decoding has not produced)"
            )
        ctx = token_context(
            tokens,
            positions=positions,
            segment_ids=segment_ids,
            modality_ids=modality_ids,
            step=step,
            active_experts=active_experts,
            decode=decode,
            deterministic=deterministic,
        )
        z, _ = self.layers(self.embed(tokens), ctx)
        # init creates every head (and every head's decode cache) whichever heads are asked for
        every = heads == "all" or self.is_initializing()
        if self.cfg.mtp.kind == "parallel":
            used = self.mtp_heads if every else self.mtp_heads[:1]
            logits = [self.unembed(head(z, ctx)[0], ctx) for head in used]
        elif self.cfg.mtp.kind == "ftp":
            count = self.cfg.mtp.num_future_tokens if every else 1
            ahead = jnp.stack([shift_left(tokens, j) for j in range(count)], axis=-1)  # [B, T, m]
            hidden = self.ftp_decoder(z, self.embed(ahead), ctx)
            logits = list(jnp.moveaxis(self.unembed(hidden, ctx), 2, 0))
        else:
            hidden = self.mtp_heads[0](z, ctx)[0]
            logits = [self.unembed(hidden, ctx)]
            for k, module in enumerate(self.mtp_modules if every else (), start=1):
                hidden = module(hidden, self.embed(shift_left(tokens, k)), ctx)
                logits.append(self.unembed(hidden, ctx))
        return jnp.stack(logits) if heads == "all" else logits[0]
