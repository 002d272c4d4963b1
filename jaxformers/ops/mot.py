"""Mixture-of-Transformers (Liang et al., TMLR 2025, arXiv 2411.04996): modality-untied weights.

With `model.num_modalities = K > 1` every non-embedding parameter of a block carries a leading
modality axis (nn/linear.py projections, nn/norms.py RMSNorm scales, the QK-norm here) and each
token uses the parameters of its own modality; attention stays ONE global causal attention over
the whole sequence (paper §2.2, Algorithm 1; methods.md §4.1-4.3).

This file holds the efficient "grouped" dispatch (methods.md §4.3 options b/c): tokens are sorted
by modality into a static, tile-padded buffer so that every tile belongs to one modality, and each
tile is multiplied by its modality's kernel only. FLOPs per token are the dense block's, plus at
most (K-1)·tile_size padding rows per group; shapes are static, so it is jit-friendly and exact
(no capacity drops). `modality_select_matmul` (compute every modality, select; K× the FLOPs) in
nn/linear.py is the reference this is tested against.

Also here: `QKNorm`, the per-head-dim RMSNorm on queries and keys, untied per modality (paper §2.2,
"optional QK-norm"), and the config validator for the MoT options.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.models.config import ConfigError, ModelConfig
from jaxformers.nn import linear, registry
from jaxformers.nn.context import Context
from jaxformers.nn.norms import rms_normalize


def dispatch_plan(modality_ids: jax.Array, num_modalities: int, tile: int):
    """Where each token goes in the modality-sorted, tile-padded buffer (Algorithm 1 step 1).

    modality_ids: [N] int in [0, K). Returns
      dest [N]: buffer row of each token (tokens of modality m keep their order, "stable sort");
      src [P]: token index of each buffer row, N for a padding row (P = num_tiles · tile);
      tile_modality [num_tiles]: the modality whose kernel each tile uses.
    num_tiles = ceil(N / tile) + K - 1 is a static bound: Σ_m ceil(n_m / tile) never exceeds it.
    """
    n, k = modality_ids.shape[0], num_modalities
    onehot = jax.nn.one_hot(modality_ids, k, dtype=jnp.int32)  # [N, K]
    counts = onehot.sum(0)  # [K]
    rank = jnp.sum(jnp.cumsum(onehot, axis=0) * onehot, axis=-1) - 1  # rank within modality
    tiles_per_modality = (counts + tile - 1) // tile
    tile_end = jnp.cumsum(tiles_per_modality)
    tile_start = tile_end - tiles_per_modality
    dest = tile_start[modality_ids] * tile + rank
    num_tiles = -(-n // tile) + k - 1
    src = jnp.full((num_tiles * tile,), n, jnp.int32).at[dest].set(
        jnp.arange(n, dtype=jnp.int32), unique_indices=True
    )
    tile_ids = jnp.arange(num_tiles)
    tile_modality = jnp.minimum(jnp.sum(tile_ids[:, None] >= tile_end[None, :], axis=-1), k - 1)
    return dest, src, tile_modality


def tiled_grouped_matmul(x: jax.Array, kernel: jax.Array, modality_ids: jax.Array, *,
                         tile: int) -> jax.Array:
    """y_i = x_i W^{m_i} with each token multiplied by one kernel only (paper eq. 2, per token).

    x: [N, d_in]; kernel: [K, d_in, d_out]; modality_ids: [N] -> [N, d_out].
    FLOPs: 2 · num_tiles · tile · d_in · d_out ≤ 2 · (N + (K-1)·tile) · d_in · d_out.
    """
    n, d_in = x.shape
    tile = max(1, min(tile, n))
    dest, src, tile_modality = dispatch_plan(modality_ids, kernel.shape[0], tile)
    x_padded = jnp.concatenate([x, jnp.zeros((1, d_in), x.dtype)], axis=0)  # row N = padding
    buffer_TBD = x_padded[src].reshape(-1, tile, d_in)
    y_TBF = jnp.einsum("tbd,tdf->tbf", buffer_TBD, kernel[tile_modality])
    return y_TBF.reshape(-1, kernel.shape[-1])[dest]


def ragged_grouped_matmul(x: jax.Array, kernel: jax.Array, modality_ids: jax.Array) -> jax.Array:
    """Same contract as `tiled_grouped_matmul` via `jax.lax.ragged_dot` (a grouped GEMM on GPU/TPU;
    on CPU XLA lowers it to K masked dense matmuls, so prefer "tiles" there)."""
    dest, src, _ = dispatch_plan(modality_ids, kernel.shape[0], 1)  # tile 1 = plain stable sort
    counts = jnp.bincount(modality_ids, length=kernel.shape[0]).astype(jnp.int32)
    sorted_x = x[src[: x.shape[0]]]  # with tile 1 there is no padding among the first N rows
    return jax.lax.ragged_dot(sorted_x, kernel, counts)[dest]


def grouped_matmul(x: jax.Array, kernel: jax.Array, modality_ids: jax.Array | None, *,
                   impl: str = "tiles", tile_size: int = 128, groups: int = 1) -> jax.Array:
    """Modality-routed projection with dense FLOPs. x: [B, T, d_in]; kernel: [K, d_in, d_out];
    modality_ids: [B, T] (None = modality 0) -> [B, T, d_out].

    "tiles" sorts tokens within `groups` equal slices of the batch (each a whole number of
    sequences): groups = the data-parallel size keeps the sort shard-local (like MoE groups);
    a batch that `groups` does not divide uses gcd(groups, batch) groups.
    "ragged_dot" sorts the whole batch once.
    """
    batch, length, d_in = x.shape
    if modality_ids is None:
        return x @ kernel[0]
    groups = math.gcd(groups, batch)  # e.g. the 1-example init batch, or decoding one sequence
    ids = modality_ids.astype(jnp.int32)
    if impl == "ragged_dot":  # one global sort (ragged_dot has no batching rule over groups)
        y = ragged_grouped_matmul(x.reshape(-1, d_in), kernel, ids.reshape(-1))
    elif impl == "tiles":
        y = jax.vmap(lambda xg, ig: tiled_grouped_matmul(xg, kernel, ig, tile=tile_size))(
            x.reshape(groups, -1, d_in), ids.reshape(groups, -1)
        )
    else:
        raise ValueError(f"model.mot.grouped_impl={impl!r}; expected 'tiles' or 'ragged_dot'")
    return y.reshape(batch, length, kernel.shape[-1])


def _grouped_projection(x, kernel, modality_ids, *, cfg: ModelConfig):
    opts = cfg.mot
    return grouped_matmul(x, kernel, modality_ids, impl=opts.grouped_impl,
                          tile_size=opts.tile_size, groups=opts.groups)


linear.GROUPED_MATMUL["grouped"] = _grouped_projection


class QKNorm(nn.Module):
    """RMSNorm over the head dimension of q or k [B, T, H, D], scale [K, D] per modality
    (MoT §2.2: "QK-norm ... per modality"; Chameleon's QK-norm). Statistics in float32.
    `parametric=False` (TokenFormer's non-parametric norms) drops the scale."""

    cfg: ModelConfig
    parametric: bool = True
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        y = rms_normalize(x, self.eps)
        if self.parametric:
            scale = self.param(
                "scale",
                nn.with_logical_partitioning(nn.initializers.ones, ("modality", "norm")),
                (self.cfg.num_modalities, x.shape[-1]),
                self.cfg.parameter_dtype,
            ).astype(jnp.float32)
            if self.cfg.num_modalities == 1 or ctx.modality_ids is None:
                y = y * scale[0]
            else:
                y = y * jnp.take(scale, ctx.modality_ids, axis=0)[:, :, None, :]
        return y.astype(x.dtype)


def make_qk_norm(cfg: ModelConfig, name: str) -> QKNorm:
    return QKNorm(cfg=cfg, parametric=cfg.projections != "pattention", name=name)


@registry.register_validator
def _validate_mot(cfg: ModelConfig) -> None:
    opts = cfg.mot
    if opts.grouped_impl not in ("tiles", "ragged_dot"):
        raise ConfigError(
            f"model.mot.grouped_impl={opts.grouped_impl!r}; expected 'tiles' or 'ragged_dot'"
        )
    if opts.tile_size < 1:
        raise ConfigError(f"model.mot.tile_size={opts.tile_size} must be >= 1")
    if opts.groups < 1:
        raise ConfigError(f"model.mot.groups={opts.groups} must be >= 1")
