"""Flash attention in Pallas (Dao et al. 2022, Alg. 1 forward; FlashAttention-2, Dao 2023, Alg. 2).

Layout outside: q [B, T, H, D], k/v [B, S, K, D] with H % K == 0 (GQA), as `ops.attention`.
Inside, the kernels see [B, H, T, D] (a transpose in XLA) so that every block's last two dims are
(rows, head_dim): (8, 128)-aligned for Mosaic, powers of two for Triton.

* Forward, grid (B, H, T/bq): one query block per program, a fori_loop over key blocks with the
  online softmax (running max m and sum l in fp32, as [bq, 1] columns), output O and the
  log-sum-exp L = m + log l stored as a [B, H, T, 1] array (a 1-D (None, bq) block does not lower
  on TPU). Causal: the loop stops at the diagonal block (block skipping).
* Backward (FA2 §3.1.2): delta = rowsum(dO * O) in XLA; a dK/dV kernel (grid over key blocks,
  loop over query blocks from the diagonal on, scores recomputed transposed S^T = K Q^T so that
  every matmul is NN or NT) and a dQ kernel (grid over query blocks, loop over key blocks).
  GQA: dK/dV are computed per query head in fp32 and summed over each group in XLA.
* Any length: T and S are padded to the block sizes; padded keys are masked out (kv_pos < S).
  Fully masked rows (possible with segment ids) return 0, like the reference.

No value slices (Triton rejects them) and no cumsum; all partial reads are `ref[pl.ds(...)]`.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxformers.kernels import backend
from jaxformers.ops.attention import dot_product_attention

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
MAX_HEAD_DIM = 256
_NT = (((1,), (1,)), ((), ()))  # a @ b.T


@dataclasses.dataclass(frozen=True)
class _Static:
    causal: bool
    scale: float
    block_q: int
    block_kv: int
    q_len: int  # padded
    kv_len: int  # padded
    kv_valid: int  # real number of keys (positions >= kv_valid are padding)
    group: int  # query heads per kv head
    options: backend.KernelOptions = backend.KernelOptions()


def _mask(st: _Static, row_pos0, col_pos0, shape, *, rows_are_queries, row_seg, col_seg):
    """Boolean [rows, cols] visibility mask or None; rows/cols are (queries, keys) or swapped."""
    mask = None
    row_pos = row_pos0 + jax.lax.broadcasted_iota(jnp.int32, shape, 0)
    col_pos = col_pos0 + jax.lax.broadcasted_iota(jnp.int32, shape, 1)
    q_pos, k_pos = (row_pos, col_pos) if rows_are_queries else (col_pos, row_pos)
    if st.causal:
        mask = q_pos >= k_pos
    if st.kv_valid < st.kv_len:
        valid = k_pos < st.kv_valid
        mask = valid if mask is None else mask & valid
    if row_seg is not None:
        same = row_seg == col_seg  # [rows, 1] == [1, cols]
        mask = same if mask is None else mask & same
    return mask


def _num_kv_blocks(st: _Static, q_block_idx):
    """Key blocks a query block needs: all, or up to the diagonal when causal."""
    n = st.kv_len // st.block_kv
    if not st.causal:
        return n
    last = (q_block_idx + 1) * st.block_q  # exclusive end of this query block
    return jnp.minimum(n, (last + st.block_kv - 1) // st.block_kv)


def _fwd_kernel(*refs, st: _Static, has_seg: bool):
    if has_seg:
        q_ref, k_ref, v_ref, qseg_ref, kvseg_ref, o_ref, lse_ref = refs
    else:
        (q_ref, k_ref, v_ref, o_ref, lse_ref), qseg_ref, kvseg_ref = refs, None, None
    bq, bkv = st.block_q, st.block_kv
    qi = pl.program_id(2)
    q = q_ref[...]
    q_seg = qseg_ref[...] if has_seg else None

    def body(j, carry):
        m, row_sum, acc = carry
        start = pl.multiple_of(j * bkv, bkv)
        k = k_ref[pl.ds(start, bkv), :]
        v = v_ref[pl.ds(start, bkv), :]
        s = jax.lax.dot_general(q, k, _NT, preferred_element_type=jnp.float32) * st.scale
        kv_seg = kvseg_ref[:, pl.ds(start, bkv)] if has_seg else None
        mask = _mask(st, qi * bq, start, (bq, bkv), rows_are_queries=True,
                     row_seg=q_seg, col_seg=kv_seg)
        if mask is not None:
            s = jnp.where(mask, s, MASK_VALUE)
        m_new = jnp.maximum(m, jnp.max(s, axis=1, keepdims=True))
        p = jnp.exp(s - m_new)
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        alpha = jnp.exp(m - m_new)
        row_sum = alpha * row_sum + jnp.sum(p, axis=1, keepdims=True)
        pv = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
        return m_new, row_sum, alpha * acc + pv

    init = (jnp.full((bq, 1), MASK_VALUE, jnp.float32), jnp.zeros((bq, 1), jnp.float32),
            jnp.zeros((bq, q.shape[-1]), jnp.float32))
    m, row_sum, acc = jax.lax.fori_loop(0, _num_kv_blocks(st, qi), body, init)
    empty = row_sum == 0.0  # fully masked row -> output 0 (as ops.attention)
    l_safe = jnp.where(empty, 1.0, row_sum)
    o_ref[...] = (acc / l_safe).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(empty, 0.0, m + jnp.log(l_safe))


def _specs(st: _Static, d: int, has_seg: bool, *, grid_over: str):
    """BlockSpecs for (q-like, kv-like, per-row stats, segments) on grid (B, H, blocks)."""
    g = st.group
    if grid_over == "q":
        q_spec = pl.BlockSpec((None, None, st.block_q, d), lambda b, h, i: (b, h, i, 0))
        kv_spec = pl.BlockSpec((None, None, st.kv_len, d), lambda b, h, i: (b, h // g, 0, 0))
        col_spec = pl.BlockSpec((None, None, st.block_q, 1), lambda b, h, i: (b, h, i, 0))
        seg_specs = [pl.BlockSpec((None, st.block_q, 1), lambda b, h, i: (b, i, 0)),
                     pl.BlockSpec((None, 1, st.kv_len), lambda b, h, i: (b, 0, 0))]
        return q_spec, kv_spec, col_spec, seg_specs if has_seg else []
    q_spec = pl.BlockSpec((None, None, st.q_len, d), lambda b, h, j: (b, h, 0, 0))
    kv_spec = pl.BlockSpec((None, None, st.block_kv, d), lambda b, h, j: (b, h // g, j, 0))
    row_spec = pl.BlockSpec((None, None, 1, st.q_len), lambda b, h, j: (b, h, 0, 0))
    seg_specs = [pl.BlockSpec((None, st.block_kv, 1), lambda b, h, j: (b, j, 0)),
                 pl.BlockSpec((None, 1, st.q_len), lambda b, h, j: (b, 0, 0))]
    return q_spec, kv_spec, row_spec, seg_specs if has_seg else []


def _segments(q_seg, kv_seg):
    """[B, T] ids -> (q column [B,T,1], kv row [B,1,S], kv column [B,S,1], q row [B,1,T])."""
    if q_seg is None:
        return None
    return q_seg[:, :, None], kv_seg[:, None, :], kv_seg[:, :, None], q_seg[:, None, :]


def _forward(q, k, v, q_seg, kv_seg, st: _Static):
    b, h, t, d = q.shape
    segs = _segments(q_seg, kv_seg)
    has_seg = segs is not None
    q_spec, kv_spec, col_spec, seg_specs = _specs(st, d, has_seg, grid_over="q")
    grid = (b, h, st.q_len // st.block_q)
    out, lse = pl.pallas_call(
        functools.partial(_fwd_kernel, st=st, has_seg=has_seg),
        out_shape=(jax.ShapeDtypeStruct(q.shape, q.dtype),
                   jax.ShapeDtypeStruct((b, h, t, 1), jnp.float32)),
        grid=grid,
        in_specs=[q_spec, kv_spec, kv_spec] + seg_specs,
        out_specs=(q_spec, col_spec),
        name="flash_attention_fwd",
        **backend.pallas_params(len(grid), st.options, vmem_bytes=backend.block_bytes(
            ((st.block_q, d), q.dtype), ((st.block_q, d), q.dtype), ((st.kv_len, d), k.dtype),
            ((st.kv_len, d), v.dtype), ((st.block_q, 128), jnp.float32))),
    )(q, k, v, *(segs[:2] if has_seg else ()))
    return out, lse


def _dq_kernel(*refs, st: _Static, has_seg: bool):
    if has_seg:
        q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, qseg_ref, kvseg_ref, dq_ref = refs
    else:
        q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref = refs
    bq, bkv = st.block_q, st.block_kv
    qi = pl.program_id(2)
    q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]
    q_seg = qseg_ref[...] if has_seg else None

    def body(j, dq):
        start = pl.multiple_of(j * bkv, bkv)
        k = k_ref[pl.ds(start, bkv), :]
        v = v_ref[pl.ds(start, bkv), :]
        s = jax.lax.dot_general(q, k, _NT, preferred_element_type=jnp.float32) * st.scale
        kv_seg = kvseg_ref[:, pl.ds(start, bkv)] if has_seg else None
        mask = _mask(st, qi * bq, start, (bq, bkv), rows_are_queries=True,
                     row_seg=q_seg, col_seg=kv_seg)
        p = jnp.exp(s - lse)
        if mask is not None:
            p = jnp.where(mask, p, 0.0)
        dp = jax.lax.dot_general(do, v, _NT, preferred_element_type=jnp.float32)
        ds = p * (dp - delta)
        return dq + jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)

    dq = jax.lax.fori_loop(0, _num_kv_blocks(st, qi), body,
                           jnp.zeros((bq, q.shape[-1]), jnp.float32))
    dq_ref[...] = (dq * st.scale).astype(dq_ref.dtype)


def _dkv_kernel(*refs, st: _Static, has_seg: bool):
    if has_seg:
        q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, kvseg_ref, qseg_ref, dk_ref, dv_ref = refs
    else:
        q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref = refs
    bq, bkv = st.block_q, st.block_kv
    kj = pl.program_id(2)
    k, v = k_ref[...], v_ref[...]
    kv_seg = kvseg_ref[...] if has_seg else None

    def body(i, carry):
        dk, dv = carry
        start = pl.multiple_of(i * bq, bq)
        q = q_ref[pl.ds(start, bq), :]
        do = do_ref[pl.ds(start, bq), :]
        lse = lse_ref[:, pl.ds(start, bq)]  # [1, bq]
        delta = delta_ref[:, pl.ds(start, bq)]
        s_t = jax.lax.dot_general(k, q, _NT, preferred_element_type=jnp.float32) * st.scale
        q_seg = qseg_ref[:, pl.ds(start, bq)] if has_seg else None
        mask = _mask(st, kj * bkv, start, (bkv, bq), rows_are_queries=False,
                     row_seg=kv_seg, col_seg=q_seg)
        p_t = jnp.exp(s_t - lse)
        if mask is not None:
            p_t = jnp.where(mask, p_t, 0.0)
        dv = dv + jnp.dot(p_t.astype(do.dtype), do, preferred_element_type=jnp.float32)
        dp_t = jax.lax.dot_general(v, do, _NT, preferred_element_type=jnp.float32)
        ds_t = p_t * (dp_t - delta)
        dk = dk + jnp.dot(ds_t.astype(q.dtype), q, preferred_element_type=jnp.float32)
        return dk, dv

    first = (kj * bkv) // bq if st.causal else 0  # query blocks above the diagonal see nothing
    zeros = jnp.zeros((bkv, k.shape[-1]), jnp.float32)
    dk, dv = jax.lax.fori_loop(first, st.q_len // bq, body, (zeros, zeros))
    dk_ref[...] = (dk * st.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _backward(q, k, v, q_seg, kv_seg, out, lse, do, st: _Static):
    b, h, t, d = q.shape
    kvh, s_len = k.shape[1], k.shape[2]
    delta = jnp.sum(out.astype(jnp.float32) * do.astype(jnp.float32), axis=-1, keepdims=True)
    segs = _segments(q_seg, kv_seg)
    has_seg = segs is not None
    vmem = backend.block_bytes(  # the larger of the two kernels' blocks
        ((max(st.q_len, st.kv_len), d), q.dtype), ((max(st.q_len, st.kv_len), d), q.dtype),
        ((max(st.q_len, st.kv_len), d), k.dtype), ((max(st.q_len, st.kv_len), d), k.dtype),
        ((st.block_kv, d), jnp.float32), ((st.block_kv, d), jnp.float32),
        ((8, st.q_len), jnp.float32), ((8, st.q_len), jnp.float32))
    params = backend.pallas_params(3, st.options, vmem_bytes=vmem)

    q_spec, kv_spec, col_spec, seg_specs = _specs(st, d, has_seg, grid_over="q")
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, st=st, has_seg=has_seg),
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        grid=(b, h, st.q_len // st.block_q),
        in_specs=[q_spec, kv_spec, kv_spec, q_spec, col_spec, col_spec] + seg_specs,
        out_specs=q_spec,
        name="flash_attention_dq",
        **params,
    )(q, k, v, do, lse, delta, *(segs[:2] if has_seg else ()))

    q_spec, kv_spec, row_spec, seg_specs = _specs(st, d, has_seg, grid_over="kv")
    dkv_dtype = k.dtype if st.group == 1 else jnp.float32  # fp32 partials summed over the group
    dkv_spec = pl.BlockSpec((None, None, st.block_kv, d), lambda b, h, j: (b, h, j, 0))
    dk, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, st=st, has_seg=has_seg),
        out_shape=(jax.ShapeDtypeStruct((b, h, s_len, d), dkv_dtype),) * 2,
        grid=(b, h, st.kv_len // st.block_kv),
        in_specs=[q_spec, kv_spec, kv_spec, q_spec, row_spec, row_spec] + seg_specs,
        out_specs=(dkv_spec, dkv_spec),
        name="flash_attention_dkv",
        **params,
    )(q, k, v, do, lse.reshape(b, h, 1, t), delta.reshape(b, h, 1, t),
      *(segs[2:] if has_seg else ()))
    if st.group > 1:
        dk = dk.reshape(b, kvh, st.group, s_len, d).sum(2).astype(k.dtype)
        dv = dv.reshape(b, kvh, st.group, s_len, d).sum(2).astype(v.dtype)
    return dq, dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _flash_core(q, k, v, q_seg, kv_seg, st):
    return _forward(q, k, v, q_seg, kv_seg, st)[0]


def _core_fwd(q, k, v, q_seg, kv_seg, st):
    out, lse = _forward(q, k, v, q_seg, kv_seg, st)
    return out, (q, k, v, q_seg, kv_seg, out, lse)


def _core_bwd(st, res, do):
    q, k, v, q_seg, kv_seg, out, lse = res
    dq, dk, dv = _backward(q, k, v, q_seg, kv_seg, out, lse, do, st)
    return dq, dk, dv, None, None


_flash_core.defvjp(_core_fwd, _core_bwd)


def _validate(q, k, v, segment_ids, block_q, block_kv):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(f"{name} must be [batch, time, heads, head_dim]; got shape {x.shape}")
        backend.check_dtype(name, x)
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape; got {k.shape} vs {v.shape}")
    if k.shape[0] != q.shape[0] or k.shape[3] != q.shape[3]:
        raise ValueError(f"k {k.shape} does not match q {q.shape} on batch or head_dim")
    if q.shape[2] % k.shape[2]:
        raise ValueError(f"q heads ({q.shape[2]}) must be a multiple of k/v heads ({k.shape[2]})")
    if q.shape[3] > MAX_HEAD_DIM:
        raise ValueError(f"head_dim={q.shape[3]} > {MAX_HEAD_DIM} is not supported by the kernel")
    if segment_ids is not None:
        if segment_ids.shape != q.shape[:2] or q.shape[1] != k.shape[1]:
            raise ValueError(f"segment_ids must be [batch, time]={q.shape[:2]} (self-attention); "
                             f"got {segment_ids.shape} with kv length {k.shape[1]}")
        if not jnp.issubdtype(segment_ids.dtype, jnp.integer):
            raise ValueError(f"segment_ids must be integers; got {segment_ids.dtype}")
    backend.check_block("block_q", block_q)
    backend.check_block("block_kv", block_kv)


def flash_attention(q, k, v, *, causal, segment_ids=None, scale=None, block_q=128,
                    block_kv=128, impl="auto", options=backend.KernelOptions()):
    """softmax(q k^T * scale + mask) v, tiled (FlashAttention-2), equal to
    `ops.attention.dot_product_attention(q, k, v, causal=..., segment_ids=...)`.

    q: [B, T, H, D]; k, v: [B, S, K, D] (H % K == 0); segment_ids: [B, T] (needs S == T).
    block_q / block_kv: powers of two >= 8, shrunk to the (padded) length for short inputs.
    impl: "xla" (the ops/ reference), "pallas", "auto" (Pallas on GPU/TPU, XLA on CPU).
    Shape/dtype/block errors are ValueErrors raised before anything is traced into Pallas.
    """
    resolved = backend.resolve_impl(impl)
    if impl != "xla":  # "auto" checks the kernel's constraints on CPU too, before a TPU run does
        backend.check_block("block_q", block_q)
        backend.check_block("block_kv", block_kv)
    if resolved == "xla":
        return dot_product_attention(q, k, v, causal=causal, segment_ids=segment_ids, scale=scale)
    _validate(q, k, v, segment_ids, block_q, block_kv)
    b, t, h, d = q.shape
    s_len, kvh = k.shape[1], k.shape[2]
    scale = d**-0.5 if scale is None else float(scale)
    bq = min(block_q, backend.next_pow2(t, 8))
    bkv = min(block_kv, backend.next_pow2(s_len, 8))
    t_pad, s_pad = -t % bq, -s_len % bkv
    d_pad = backend.next_pow2(d, 16) - d  # Triton needs power-of-two value shapes

    def prep(x, pad):  # [B, T, H, D] -> [B, H, T_pad, D_pad]
        return jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, d_pad))).transpose(0, 2, 1, 3)

    st = _Static(causal=bool(causal), scale=scale, block_q=bq, block_kv=bkv, q_len=t + t_pad,
                 kv_len=s_len + s_pad, kv_valid=s_len, group=h // kvh, options=options)
    q_seg = kv_seg = None
    if segment_ids is not None:
        seg = segment_ids.astype(jnp.int32)
        q_seg = jnp.pad(seg, ((0, 0), (0, t_pad)))
        kv_seg = jnp.pad(seg, ((0, 0), (0, s_pad)))
    out = _flash_core(prep(q, t_pad), prep(k, s_pad), prep(v, s_pad), q_seg, kv_seg, st)
    return out.transpose(0, 2, 1, 3)[:, :t, :, :d]
