"""Softmax attention reference (Vaswani et al. 2017, eq. 1) with GQA, causal and segment masks,
and the clipped softmax of Bondarenko et al. 2023 (arXiv 2306.12929, eq. 4.1).

This is the oracle for `nn.attention` and `kernels.flash_attention`. Layout: [batch, time, heads,
head_dim]. Scores and softmax run in float32 whatever the input dtype. Plain softmax attention has a
hand-written backward (FlashAttention's, Dao et al. 2022, arXiv 2205.14135), so it supports reverse-mode
autodiff (grad, vjp, remat) but not forward mode (jvp).
"""

import functools

import jax
import jax.numpy as jnp

_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def attention_mask(
    q_len: int,
    kv_len: int,
    *,
    causal: bool,
    q_segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    q_positions: jax.Array | None = None,
    kv_positions: jax.Array | None = None,
    kv_valid: jax.Array | None = None,
) -> jax.Array | None:
    """Boolean mask [B or 1, 1, Tq, Tk]; True = may attend.

    Causality compares positions (default: arange), so a KV cache whose query sits at position p
    sees keys 0..p. Segment ids restrict attention to tokens of the same packed document.
    kv_valid: [B, Tk] marks real (non-padding) keys.
    """
    mask = None
    if causal:
        qp = jnp.arange(q_len)[None] if q_positions is None else q_positions
        kp = jnp.arange(kv_len)[None] if kv_positions is None else kv_positions
        mask = qp[:, :, None] >= kp[:, None, :]
    if q_segment_ids is not None:
        seg = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
        mask = seg if mask is None else mask & seg
    if kv_valid is not None:
        valid = kv_valid[:, None, :].astype(bool)
        mask = valid if mask is None else mask & valid
    return None if mask is None else mask[:, None]


def clipped_softmax(logits: jax.Array, *, gamma: float, zeta: float, axis: int = -1) -> jax.Array:
    """clip((zeta - gamma) * softmax(x) + gamma, 0, 1)  (Bondarenko, Nagel & Blankevoort 2023,
    "Quantizable Transformers", arXiv 2306.12929, §4.1 eq. 4.1).

    gamma <= 0 and zeta >= 1 let a row reach exact zeros (and ones) with finite logits, so a head
    can "do nothing" without pushing its logits (and the residual stream) to extremes. Rows need
    not sum to 1. gamma=0, zeta=1 is plain softmax. Computed in float32 (float64 if given).
    """
    if gamma > 0 or zeta < 1:
        raise ValueError(f"clipped_softmax needs gamma <= 0 and zeta >= 1; got gamma={gamma}, zeta={zeta}")
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    probs = jax.nn.softmax(logits, axis=axis)
    if gamma == 0 and zeta == 1:
        return probs
    return jnp.clip((zeta - gamma) * probs + gamma, 0.0, 1.0)


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    causal: bool = True,
    segment_ids: jax.Array | None = None,
    kv_segment_ids: jax.Array | None = None,
    mask: jax.Array | None = None,
    scale: float | None = None,
    gamma: float = 0.0,
    zeta: float = 1.0,
) -> jax.Array:
    """softmax(q k^T * scale + mask) v  (Attention Is All You Need, eq. 1), grouped-query heads.

    gamma, zeta: the clipped softmax (`clipped_softmax`, eq. 4.1) in place of softmax; the
    defaults (0, 1) are plain softmax.

    q: [B, Tq, H, D]; k, v: [B, Tk, K, D] with H % K == 0 (GQA, Ainslie et al. 2023 §2);
    segment_ids: [B, Tq] (and kv_segment_ids [B, Tk], default the same); mask: optional extra
    boolean [B|1, 1, Tq, Tk]. Returns [B, Tq, H, D] in q.dtype. Fully masked rows return 0.
    """
    batch, q_len, num_heads, head_dim = q.shape
    kv_len, num_kv_heads = k.shape[1], k.shape[2]
    if k.shape != v.shape[:3] + (head_dim,) or k.shape[0] != batch:
        raise ValueError(f"k {k.shape} / v {v.shape} do not match q {q.shape} on batch or head_dim")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not a multiple of num_kv_heads={num_kv_heads}")
    scale = head_dim**-0.5 if scale is None else float(scale)  # static: the backward is hand-written
    full_mask = attention_mask(
        q_len,
        kv_len,
        causal=causal,
        q_segment_ids=segment_ids,
        kv_segment_ids=segment_ids if kv_segment_ids is None else kv_segment_ids,
    )
    if mask is not None:
        full_mask = mask if full_mask is None else full_mask & mask
    if full_mask is None:
        full_mask = jnp.ones((1, 1, q_len, kv_len), bool)
    full_mask = jnp.broadcast_to(full_mask, (full_mask.shape[0], 1, q_len, kv_len))  # [B|1,1,1,Tk] too
    q_BKMD, k_BKSD, v_BKSD = _head_major(q, k, v)
    if gamma == 0 and zeta == 1:
        out = _softmax_attention(q_BKMD, k_BKSD, v_BKSD, full_mask, scale, q_len)
    else:
        out = _clipped_softmax_attention(q_BKMD, k_BKSD, v_BKSD, full_mask, scale, gamma, zeta)
    return _from_head_major(out, q)


def _head_major(q, k, v):
    """[B, T, H, D] operands -> q [B, K, G*Tq, D] (a KV head's G query heads folded into the rows),
    k, v [B, K, Tk, D]. Both products are then plain batched matmuls [B, K] x ([G*Tq, D] @ [D, Tk]),
    which XLA:CPU runs about 1.5x faster (forward + backward, T=256) than the same einsums on
    [B, T, H, D] operands."""
    batch, q_len, num_heads, head_dim = q.shape
    num_kv_heads = k.shape[2]
    q_BKMD = q.reshape(batch, q_len, num_kv_heads, num_heads // num_kv_heads, head_dim)
    q_BKMD = q_BKMD.transpose(0, 2, 3, 1, 4).reshape(batch, num_kv_heads, -1, head_dim)
    return q_BKMD, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)


def _from_head_major(out_BKMD, q):
    batch, q_len, num_heads, head_dim = q.shape
    out = out_BKMD.reshape(batch, out_BKMD.shape[1], -1, q_len, head_dim).transpose(0, 3, 1, 2, 4)
    return out.reshape(batch, q_len, num_heads, head_dim).astype(q.dtype)


def _query_rows(x_BKMX, groups, start, stop):
    """Query positions [start, stop) of every group of a head-major [B, K, G*Tq, X] array."""
    batch, num_kv_heads, rows, width = x_BKMX.shape
    x = x_BKMX.reshape(batch, num_kv_heads, groups, rows // groups, width)[:, :, :, start:stop]
    return x.reshape(batch, num_kv_heads, groups * (stop - start), width)


def _block_keys(q_len, kv_len, block_size, stop):
    """Keys a query block attends to: all of them for one block, else [0, stop) (causal)."""
    return kv_len if block_size == q_len else stop


def _row_mask(mask, groups, start, stop, keys):
    """The mask of query positions [start, stop) and keys [0, keys), repeated for the G query heads
    of a KV head: [B|1, 1, G*(stop-start), keys]."""
    return jnp.tile(mask[:, :, start:stop, :keys], (1, 1, groups, 1))


def _scores(q_BKMD, k_BKSD, mask_rows, scale):
    """Masked scores [B, K, G*Tq, Tk] in float32 (float64 in x64 tests)."""
    stats_dtype = jnp.promote_types(q_BKMD.dtype, jnp.float32)
    scores = jnp.einsum("bkmd,bksd->bkms", q_BKMD, k_BKSD, preferred_element_type=stats_dtype)
    return jnp.where(mask_rows, scores.astype(stats_dtype) * scale, _MASK_VALUE)


def _block_forward(q_BKMD, k_BKSD, v_BKSD, mask_rows, scale):
    """One query block: its output [B, K, M, D] and the residuals of the backward, the unnormalised
    probabilities exp(s - max) [B, K, M, Tk] and 1 / (their row sums) [B, K, M, 1]. Normalising the
    [M, D] output instead of the [M, Tk] probabilities saves one pass over the square (as
    FlashAttention does, Dao et al. 2022, arXiv 2205.14135, Algorithm 1). A fully masked row's max
    is replaced by 0, so its exp(_MASK_VALUE) underflows to 0 with no select after the exp."""
    scores = _scores(q_BKMD, k_BKSD, mask_rows, scale)
    row_max = jnp.max(scores, -1, keepdims=True)
    unnormalised = jnp.exp(scores - jnp.where(row_max > 0.5 * _MASK_VALUE, row_max, 0))
    row_sum = jnp.sum(unnormalised, axis=-1, keepdims=True)
    inv_sum = 1 / jnp.where(row_sum == 0, 1, row_sum)  # a fully masked row outputs 0
    out = jnp.einsum("bkms,bksd->bkmd", unnormalised.astype(v_BKSD.dtype), v_BKSD,
                     preferred_element_type=inv_sum.dtype) * inv_sum  # fmt: skip
    return out.astype(q_BKMD.dtype), (unnormalised, inv_sum)


def _softmax_forward(q_BKMD, k_BKSD, v_BKSD, mask, scale, block_size):
    """Query blocks of block_size positions; block i attends to keys [0, (i+1) * block_size) only,
    which is exact for a causal mask (the block skipping of FlashAttention, Dao et al. 2022 §3.1).
    block_size = Tq is one block over all keys, for any mask."""
    groups, (q_len, kv_len) = q_BKMD.shape[2] // mask.shape[2], mask.shape[2:]
    outputs, residuals = [], []
    for start in range(0, q_len, block_size):  # static blocks, not a loop over tokens
        stop = start + block_size
        keys = _block_keys(q_len, kv_len, block_size, stop)
        out, res = _block_forward(_query_rows(q_BKMD, groups, start, stop), k_BKSD[:, :, :keys],
                                  v_BKSD[:, :, :keys], _row_mask(mask, groups, start, stop, keys),
                                  scale)  # fmt: skip
        outputs.append(out.reshape(out.shape[:2] + (groups, block_size, -1)))
        residuals.append(res)
    return jnp.concatenate(outputs, axis=3).reshape(q_BKMD.shape), residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _softmax_attention(q_BKMD, k_BKSD, v_BKSD, mask, scale, block_size):
    """softmax(q k^T * scale, masked) v on head-major operands, with a hand-written backward:
    dS = P * (dP - rowsum(dO * O)) (FlashAttention's D_i = rowsum(dO_i * O_i), Dao et al. 2022,
    eq. 4 of Appendix B.2) needs no select over the mask (masked P are 0) and no [Tq, Tk] row
    sum, where autodiff of the masked softmax makes several extra passes over the square."""
    return _softmax_forward(q_BKMD, k_BKSD, v_BKSD, mask, scale, block_size)[0]


def _softmax_attention_fwd(q_BKMD, k_BKSD, v_BKSD, mask, scale, block_size):
    out, residuals = _softmax_forward(q_BKMD, k_BKSD, v_BKSD, mask, scale, block_size)
    return out, (q_BKMD, k_BKSD, v_BKSD, mask, out, residuals)


def _softmax_attention_bwd(scale, block_size, saved, d_out):
    q_BKMD, k_BKSD, v_BKSD, mask, out, residuals = saved
    groups, (q_len, kv_len) = q_BKMD.shape[2] // mask.shape[2], mask.shape[2:]
    stats_dtype, operand = residuals[0][1].dtype, v_BKSD.dtype
    d_out_stats = d_out.astype(stats_dtype)
    delta = jnp.sum(d_out_stats * out.astype(stats_dtype), axis=-1, keepdims=True)
    d_q, d_k, d_v = [], 0, 0
    for (unnormalised, inv_sum), start in zip(residuals, range(0, q_len, block_size), strict=True):
        stop = start + block_size
        keys = _block_keys(q_len, kv_len, block_size, stop)
        rows = functools.partial(_query_rows, groups=groups, start=start, stop=stop)
        d_v_block = jnp.einsum("bkms,bkmd->bksd", unnormalised.astype(operand),
                               (rows(d_out_stats) * inv_sum).astype(operand))  # fmt: skip
        d_probs = jnp.einsum("bkmd,bksd->bkms", rows(d_out), v_BKSD[:, :, :keys],
                             preferred_element_type=stats_dtype)  # fmt: skip
        d_scores = (unnormalised * inv_sum * (d_probs - rows(delta)) * scale).astype(q_BKMD.dtype)
        d_q.append(jnp.einsum("bkms,bksd->bkmd", d_scores, k_BKSD[:, :, :keys]))
        d_k_block = jnp.einsum("bkms,bkmd->bksd", d_scores, rows(q_BKMD))
        pad = [(0, 0), (0, 0), (0, kv_len - keys), (0, 0)]  # keys after the block get no gradient
        d_k = d_k + jnp.pad(d_k_block.astype(stats_dtype), pad)
        d_v = d_v + jnp.pad(d_v_block.astype(stats_dtype), pad)
    d_q = jnp.concatenate([x.reshape(x.shape[:2] + (groups, block_size, -1)) for x in d_q], axis=3)
    return d_q.reshape(q_BKMD.shape), d_k.astype(k_BKSD.dtype), d_v.astype(v_BKSD.dtype), None


_softmax_attention.defvjp(_softmax_attention_fwd, _softmax_attention_bwd)


def _clipped_softmax_attention(q_BKMD, k_BKSD, v_BKSD, mask, scale, gamma, zeta):
    """The clipped softmax (autodiff backward); masked and fully masked rows' weights are 0."""
    q_len, kv_len = mask.shape[2:]
    mask_rows = _row_mask(mask, q_BKMD.shape[2] // q_len, 0, q_len, kv_len)
    probs = clipped_softmax(_scores(q_BKMD, k_BKSD, mask_rows, scale), gamma=gamma, zeta=zeta, axis=-1)
    probs = jnp.where(mask_rows, probs, 0.0)
    return jnp.einsum("bkms,bksd->bkmd", probs.astype(v_BKSD.dtype), v_BKSD).astype(q_BKMD.dtype)


def causal_block_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    block_size: int,
    segment_ids: jax.Array | None = None,
    scale: float | None = None,
    gamma: float = 0.0,
    zeta: float = 1.0,
) -> jax.Array:
    """Causal `dot_product_attention` that skips the key blocks above the diagonal.

    Query block i (rows [i*b, (i+1)*b)) attends only to keys [0, (i+1)*b): with n = T/b blocks
    the scores, softmax and their residuals cover (n+1)/2n of the T x T square instead of all of
    it (the block skipping of FlashAttention, Dao et al. 2022, arXiv 2205.14135 §3.1, here as
    n static slices for XLA, not a kernel). With plain softmax the blocks share one hand-written
    backward on head-major operands (`_softmax_attention`), which keeps only each block's
    unnormalised probabilities; the clipped softmax rematerialises each block instead. Equal to
    `dot_product_attention(causal=True)`; T must be a multiple of block_size (else it falls back to
    the full square).
    """
    length = q.shape[1]
    if length % block_size or length <= block_size or k.shape[1] != length:
        return dot_product_attention(q, k, v, causal=True, segment_ids=segment_ids, scale=scale,
                                     gamma=gamma, zeta=zeta)
    if gamma == 0 and zeta == 1:
        mask = attention_mask(length, length, causal=True, q_segment_ids=segment_ids,
                              kv_segment_ids=segment_ids)  # fmt: skip
        scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
        q_BKMD, k_BKSD, v_BKSD = _head_major(q, k, v)
        return _from_head_major(_softmax_attention(q_BKMD, k_BKSD, v_BKSD, mask, scale, block_size), q)

    def block(q_block, k_prefix, v_prefix, q_segments, kv_segments, offset):
        q_len, kv_len = q_block.shape[1], k_prefix.shape[1]
        mask = attention_mask(q_len, kv_len, causal=True, q_positions=offset + jnp.arange(q_len)[None],
                              kv_positions=jnp.arange(kv_len)[None])
        return dot_product_attention(
            q_block, k_prefix, v_prefix, causal=False, mask=mask,
            segment_ids=q_segments, kv_segment_ids=kv_segments, scale=scale, gamma=gamma, zeta=zeta,
        )

    block = jax.checkpoint(block)  # the clipped softmax has autodiff's residuals
    outputs = []
    for start in range(0, length, block_size):  # n static blocks, not a loop over tokens
        stop = start + block_size
        q_segments = None if segment_ids is None else segment_ids[:, start:stop]
        kv_segments = None if segment_ids is None else segment_ids[:, :stop]
        outputs.append(block(q[:, start:stop], k[:, :stop], v[:, :stop], q_segments, kv_segments,
                             start))
    return jnp.concatenate(outputs, axis=1)
