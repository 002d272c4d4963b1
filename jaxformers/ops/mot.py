"""Mixture-of-Transformers projections (Liang et al., TMLR 2025, arXiv 2411.04996, §2.2).

With K modalities every non-embedding weight carries a leading modality axis and each token is
multiplied by its own modality's weight (eq. 1, Algorithm 1); attention stays one global causal
attention over the whole sequence.

`modality_select_matmul` is the reference: compute every modality's product, keep the token's own
(K times the dense FLOPs). `grouped_matmul` is the efficient form (Algorithm 1 step 1): tokens are
sorted by modality into a static, tile-padded buffer so that every tile belongs to one modality, and
each tile is multiplied by its modality's kernel only. FLOPs per token are the dense block's, plus at
most (K-1)·tile_size padding rows per group; shapes are static, so it is jit-friendly and exact (no
capacity drops).
"""

import math

import jax
import jax.numpy as jnp

from jaxformers.ops import matmul as mm


def select_by_modality(table: jax.Array, modality_ids: jax.Array | None) -> jax.Array:
    """table: [K, ...] -> [B, T, ...] rows chosen per token ([1, 1, ...], modality 0, when ids are
    None). K = 1 ignores the ids, so a dense model runs unchanged on multi-modality batches
    (jnp.take would otherwise fill out-of-range rows with NaN)."""
    if modality_ids is None or table.shape[0] == 1:
        return table[0][None, None]
    return jnp.take(table, modality_ids, axis=0)


def modality_select_matmul(x: jax.Array, kernel: jax.Array, modality_ids, *,
                           canonical: bool = False) -> jax.Array:
    """Reference MoT projection: compute every modality's x @ W_k, keep the token's own.

    x: [B, T, d_in]; kernel: [K, d_in, d_out]; modality_ids: [B, T] -> [B, T, d_out].
    canonical: weight gradients as row-major dots (ops/matmul.py, the CPU fast path).
    """
    if modality_ids is None:
        return mm.matmul(x, kernel[0], canonical=canonical)
    all_BTKF = mm.modality_matmul(x, kernel, canonical=canonical)  # einsum "btd,kdf->btkf"
    return jnp.take_along_axis(all_BTKF, modality_ids[:, :, None, None], axis=2)[:, :, 0]


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
                         tile: int, canonical: bool = False) -> jax.Array:
    """y_i = x_i W^{m_i} with each token multiplied by one kernel only (paper eq. 2, per token).

    x: [N, d_in]; kernel: [K, d_in, d_out]; modality_ids: [N] -> [N, d_out].
    FLOPs: 2 · num_tiles · tile · d_in · d_out ≤ 2 · (N + (K-1)·tile) · d_in · d_out.
    """
    n, d_in = x.shape
    tile = max(1, min(tile, n))
    dest, src, tile_modality = dispatch_plan(modality_ids, kernel.shape[0], tile)
    x_padded = jnp.concatenate([x, jnp.zeros((1, d_in), x.dtype)], axis=0)  # row N = padding
    buffer_TBD = x_padded[src].reshape(-1, tile, d_in)
    y_TBF = mm.batched_matmul(buffer_TBD, kernel[tile_modality], canonical=canonical)  # tbd,tdf->tbf
    return y_TBF.reshape(-1, kernel.shape[-1])[dest]


def ragged_grouped_matmul(x: jax.Array, kernel: jax.Array, modality_ids: jax.Array) -> jax.Array:
    """Same contract as `tiled_grouped_matmul` via `jax.lax.ragged_dot` (a grouped GEMM on GPU/TPU;
    on CPU XLA lowers it to K masked dense matmuls, so prefer "tiles" there)."""
    dest, src, _ = dispatch_plan(modality_ids, kernel.shape[0], 1)  # tile 1 = plain stable sort
    counts = jnp.bincount(modality_ids, length=kernel.shape[0]).astype(jnp.int32)
    sorted_x = x[src[: x.shape[0]]]  # with tile 1 there is no padding among the first N rows
    return jax.lax.ragged_dot(sorted_x, kernel, counts)[dest]


def grouped_matmul(x: jax.Array, kernel: jax.Array, modality_ids: jax.Array | None, *,
                   impl: str = "tiles", tile_size: int = 128, groups: int = 1,
                   canonical: bool = False) -> jax.Array:
    """Modality-routed projection with dense FLOPs. x: [B, T, d_in]; kernel: [K, d_in, d_out];
    modality_ids: [B, T] (None = modality 0) -> [B, T, d_out].

    "tiles" sorts tokens within `groups` equal slices of the batch (each a whole number of
    sequences): groups = the data-parallel size keeps the sort shard-local (like MoE groups);
    a batch that `groups` does not divide uses gcd(groups, batch) groups.
    "ragged_dot" sorts the whole batch once. canonical: as in `modality_select_matmul` ("tiles").
    """
    batch, length, d_in = x.shape
    if modality_ids is None:
        return mm.matmul(x, kernel[0], canonical=canonical)
    groups = math.gcd(groups, batch)  # e.g. the 1-example init batch, or decoding one sequence
    ids = modality_ids.astype(jnp.int32)
    if impl == "ragged_dot":  # one global sort (ragged_dot has no batching rule over groups)
        y = ragged_grouped_matmul(x.reshape(-1, d_in), kernel, ids.reshape(-1))
    elif impl == "tiles":
        y = jax.vmap(lambda xg, ig: tiled_grouped_matmul(xg, kernel, ig, tile=tile_size,
                                                         canonical=canonical))(
            x.reshape(groups, -1, d_in), ids.reshape(groups, -1)
        )
    else:
        raise ValueError(f"impl={impl!r}; expected 'tiles' or 'ragged_dot'")
    return y.reshape(batch, length, kernel.shape[-1])
