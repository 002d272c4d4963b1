"""Kernel bodies of `flash_attention` (FlashAttention-2, Dao 2023, Alg. 1 and 2).

Each pass has one block body (one [bq, bkv] tile of scores) and two drivers around it, chosen by
`backend.sequential_grid`:
* loop (GPU; CPU default): the program holds all keys (or all queries for dK/dV) of its head and
  runs a fori_loop over the tiles it needs (causal: up to / from the diagonal);
* grid (TPU): the tile axis is the last, "arbitrary" grid axis, the running statistics live in
  VMEM scratch, and the index maps clamp skipped causal tiles onto the last needed one (no DMA).
No value slices (Triton rejects them), no cumsum; partial reads are `ref[pl.ds(...)]`.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxformers.kernels import backend

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
_NT = (((1,), (1,)), ((), ()))  # a @ b.T
f32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class Static:
    causal: bool
    scale: float
    block_q: int
    block_kv: int
    q_len: int  # padded
    kv_len: int  # padded
    kv_valid: int  # real number of keys (positions >= kv_valid are padding)
    group: int  # query heads per kv head
    options: backend.KernelOptions = backend.KernelOptions()
    grid_carry: bool = False  # TPU driver

    @property
    def num_q(self):
        return self.q_len // self.block_q

    @property
    def num_kv(self):
        return self.kv_len // self.block_kv


def mask(st: Static, row_pos0, col_pos0, shape, *, rows_are_queries, row_seg, col_seg):
    """Boolean [rows, cols] visibility mask or None; rows/cols are (queries, keys) or swapped."""
    out = None
    row_pos = row_pos0 + jax.lax.broadcasted_iota(jnp.int32, shape, 0)
    col_pos = col_pos0 + jax.lax.broadcasted_iota(jnp.int32, shape, 1)
    q_pos, k_pos = (row_pos, col_pos) if rows_are_queries else (col_pos, row_pos)
    if st.causal:
        out = q_pos >= k_pos
    if st.kv_valid < st.kv_len:
        valid = k_pos < st.kv_valid
        out = valid if out is None else out & valid
    if row_seg is not None:
        same = row_seg == col_seg  # [rows, 1] == [1, cols]
        out = same if out is None else out & same
    return out


def last_kv_block(st: Static, qi):
    """Exclusive end of the key blocks query block qi needs (all, or up to the diagonal)."""
    if not st.causal:
        return st.num_kv
    return jnp.minimum(st.num_kv, ((qi + 1) * st.block_q + st.block_kv - 1) // st.block_kv)


def first_q_block(st: Static, kj):
    """First query block that sees key block kj (0, or the diagonal when causal)."""
    return (kj * st.block_kv) // st.block_q if st.causal else 0


# ------------------------------------------------------------------------------------------------
# block bodies
# ------------------------------------------------------------------------------------------------
def _fwd_block(st, q, k, v, q_seg, kv_seg, q0, k0, carry):
    m, row_sum, acc = carry
    s = jax.lax.dot_general(q, k, _NT, preferred_element_type=f32) * st.scale
    vis = mask(st, q0, k0, s.shape, rows_are_queries=True, row_seg=q_seg, col_seg=kv_seg)
    if vis is not None:
        s = jnp.where(vis, s, MASK_VALUE)
    m_new = jnp.maximum(m, jnp.max(s, axis=1, keepdims=True))
    p = jnp.exp(s - m_new)
    if vis is not None:
        p = jnp.where(vis, p, 0.0)
    alpha = jnp.exp(m - m_new)
    row_sum = alpha * row_sum + jnp.sum(p, axis=1, keepdims=True)
    pv = jnp.dot(p.astype(v.dtype), v, preferred_element_type=f32)
    return m_new, row_sum, alpha * acc + pv


def _fwd_finish(o_ref, lse_ref, carry):
    m, row_sum, acc = carry
    empty = row_sum == 0.0  # fully masked row -> output 0 (as ops.attention)
    l_safe = jnp.where(empty, 1.0, row_sum)
    o_ref[...] = (acc / l_safe).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(empty, 0.0, m + jnp.log(l_safe))


def _dq_block(st, q, k, v, do, lse, delta, q_seg, kv_seg, q0, k0, dq):
    s = jax.lax.dot_general(q, k, _NT, preferred_element_type=f32) * st.scale
    vis = mask(st, q0, k0, s.shape, rows_are_queries=True, row_seg=q_seg, col_seg=kv_seg)
    p = jnp.exp(s - lse)
    if vis is not None:
        p = jnp.where(vis, p, 0.0)
    dp = jax.lax.dot_general(do, v, _NT, preferred_element_type=f32)
    ds = p * (dp - delta)
    return dq + jnp.dot(ds.astype(k.dtype), k, preferred_element_type=f32)


def _dkv_block(st, k, v, q, do, lse_row, delta_row, kv_seg, q_seg, k0, q0, carry):
    dk, dv = carry
    s_t = jax.lax.dot_general(k, q, _NT, preferred_element_type=f32) * st.scale  # [bkv, bq]
    vis = mask(st, k0, q0, s_t.shape, rows_are_queries=False, row_seg=kv_seg, col_seg=q_seg)
    p_t = jnp.exp(s_t - lse_row)
    if vis is not None:
        p_t = jnp.where(vis, p_t, 0.0)
    dv = dv + jnp.dot(p_t.astype(do.dtype), do, preferred_element_type=f32)
    dp_t = jax.lax.dot_general(v, do, _NT, preferred_element_type=f32)
    ds_t = p_t * (dp_t - delta_row)
    return dk + jnp.dot(ds_t.astype(q.dtype), q, preferred_element_type=f32), dv


def _unpack(refs, n_in, n_out, has_seg):
    """(inputs, segment refs (2 or Nones), outputs, scratch) from a kernel's flat ref list."""
    ins = refs[:n_in]
    segs = refs[n_in:n_in + 2] if has_seg else (None, None)
    rest = refs[n_in + (2 if has_seg else 0):]
    return ins, segs, rest[:n_out], rest[n_out:]


def _read(ref):
    return None if ref is None else ref[...]


# ------------------------------------------------------------------------------------------------
# loop drivers (GPU)
# ------------------------------------------------------------------------------------------------
def fwd_loop(*refs, st: Static, has_seg: bool):
    (q_ref, k_ref, v_ref), (qseg_ref, kvseg_ref), (o_ref, lse_ref), _ = _unpack(refs, 3, 2, has_seg)
    bq, bkv = st.block_q, st.block_kv
    qi = pl.program_id(2)
    q, q_seg = q_ref[...], _read(qseg_ref)

    def body(j, carry):
        start = pl.multiple_of(j * bkv, bkv)
        kv_seg = kvseg_ref[:, pl.ds(start, bkv)] if has_seg else None
        return _fwd_block(st, q, k_ref[pl.ds(start, bkv), :], v_ref[pl.ds(start, bkv), :], q_seg,
                          kv_seg, qi * bq, start, carry)

    init = (jnp.full((bq, 1), MASK_VALUE, f32), jnp.zeros((bq, 1), f32),
            jnp.zeros((bq, q.shape[-1]), f32))
    _fwd_finish(o_ref, lse_ref, jax.lax.fori_loop(0, last_kv_block(st, qi), body, init))


def dq_loop(*refs, st: Static, has_seg: bool):
    ins, (qseg_ref, kvseg_ref), (dq_ref,), _ = _unpack(refs, 6, 1, has_seg)
    q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = ins
    bq, bkv = st.block_q, st.block_kv
    qi = pl.program_id(2)
    q, do, lse, delta, q_seg = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...], _read(
        qseg_ref)

    def body(j, dq):
        start = pl.multiple_of(j * bkv, bkv)
        kv_seg = kvseg_ref[:, pl.ds(start, bkv)] if has_seg else None
        return _dq_block(st, q, k_ref[pl.ds(start, bkv), :], v_ref[pl.ds(start, bkv), :], do, lse,
                         delta, q_seg, kv_seg, qi * bq, start, dq)

    dq = jax.lax.fori_loop(0, last_kv_block(st, qi), body, jnp.zeros(q.shape, f32))
    dq_ref[...] = (dq * st.scale).astype(dq_ref.dtype)


def dkv_loop(*refs, st: Static, has_seg: bool):
    ins, (kvseg_ref, qseg_ref), (dk_ref, dv_ref), _ = _unpack(refs, 6, 2, has_seg)
    q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = ins
    bq, bkv = st.block_q, st.block_kv
    kj = pl.program_id(2)
    k, v, kv_seg = k_ref[...], v_ref[...], _read(kvseg_ref)

    def body(i, carry):
        start = pl.multiple_of(i * bq, bq)
        rows = pl.ds(start, bq)
        q_seg = qseg_ref[:, rows] if has_seg else None
        return _dkv_block(st, k, v, q_ref[rows, :], do_ref[rows, :], lse_ref[:, rows],
                          delta_ref[:, rows], kv_seg, q_seg, kj * bkv, start, carry)

    zeros = jnp.zeros(k.shape, f32)
    dk, dv = jax.lax.fori_loop(first_q_block(st, kj), st.num_q, body, (zeros, zeros))
    dk_ref[...] = (dk * st.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


# ------------------------------------------------------------------------------------------------
# grid drivers (TPU): grid (B, H, outer blocks, inner blocks), inner axis "arbitrary"
# ------------------------------------------------------------------------------------------------
def fwd_grid(*refs, st: Static, has_seg: bool):
    (q_ref, k_ref, v_ref), (qseg_ref, kvseg_ref), (o_ref, lse_ref), scratch = _unpack(
        refs, 3, 2, has_seg)
    m_ref, l_ref, acc_ref = scratch
    qi, kj = pl.program_id(2), pl.program_id(3)

    @pl.when(kj == 0)
    def _():
        m_ref[...] = jnp.full(m_ref.shape, MASK_VALUE, f32)
        l_ref[...] = jnp.zeros(l_ref.shape, f32)
        acc_ref[...] = jnp.zeros(acc_ref.shape, f32)

    @pl.when(kj < last_kv_block(st, qi))
    def _():
        carry = _fwd_block(st, q_ref[...], k_ref[...], v_ref[...], _read(qseg_ref),
                           _read(kvseg_ref), qi * st.block_q, kj * st.block_kv,
                           (m_ref[...], l_ref[...], acc_ref[...]))
        m_ref[...], l_ref[...], acc_ref[...] = carry

    @pl.when(kj == st.num_kv - 1)
    def _():
        _fwd_finish(o_ref, lse_ref, (m_ref[...], l_ref[...], acc_ref[...]))


def dq_grid(*refs, st: Static, has_seg: bool):
    ins, (qseg_ref, kvseg_ref), (dq_ref,), (acc_ref,) = _unpack(refs, 6, 1, has_seg)
    q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = ins
    qi, kj = pl.program_id(2), pl.program_id(3)

    @pl.when(kj == 0)
    def _():
        acc_ref[...] = jnp.zeros(acc_ref.shape, f32)

    @pl.when(kj < last_kv_block(st, qi))
    def _():
        acc_ref[...] = _dq_block(st, q_ref[...], k_ref[...], v_ref[...], do_ref[...],
                                 lse_ref[...], delta_ref[...], _read(qseg_ref), _read(kvseg_ref),
                                 qi * st.block_q, kj * st.block_kv, acc_ref[...])

    @pl.when(kj == st.num_kv - 1)
    def _():
        dq_ref[...] = (acc_ref[...] * st.scale).astype(dq_ref.dtype)


def dkv_grid(*refs, st: Static, has_seg: bool):
    ins, (kvseg_ref, qseg_ref), (dk_ref, dv_ref), (dk_acc, dv_acc) = _unpack(refs, 6, 2, has_seg)
    q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref = ins
    kj, qi = pl.program_id(2), pl.program_id(3)

    @pl.when(qi == 0)
    def _():
        dk_acc[...] = jnp.zeros(dk_acc.shape, f32)
        dv_acc[...] = jnp.zeros(dv_acc.shape, f32)

    @pl.when(qi >= first_q_block(st, kj))
    def _():
        dk, dv = _dkv_block(st, k_ref[...], v_ref[...], q_ref[...], do_ref[...], lse_ref[...],
                            delta_ref[...], _read(kvseg_ref), _read(qseg_ref), kj * st.block_kv,
                            qi * st.block_q, (dk_acc[...], dv_acc[...]))
        dk_acc[...], dv_acc[...] = dk, dv

    @pl.when(qi == st.num_q - 1)
    def _():
        dk_ref[...] = (dk_acc[...] * st.scale).astype(dk_ref.dtype)
        dv_ref[...] = dv_acc[...].astype(dv_ref.dtype)
