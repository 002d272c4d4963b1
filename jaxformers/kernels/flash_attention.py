"""Flash attention in Pallas (Dao et al. 2022, Alg. 1 forward; FlashAttention-2, Dao 2023, Alg. 2).

Layout outside: q [B, T, H, D], k/v [B, S, K, D] with H % K == 0 (GQA), as `ops.attention`.
Inside, the kernels see [B, H, T, D] (a transpose in XLA) so that every block's last two dims are
(rows, head_dim): (8, 128)-aligned for Mosaic, powers of two for Triton.

* Forward: one query block per program, online softmax over key blocks (running max m and sum l in
  fp32 as [bq, 1] columns); writes O and the log-sum-exp L = m + log l as a [B, H, T, 1] array (a
  1-D (None, bq) block does not lower on TPU). Causal: key blocks past the diagonal are skipped.
* Backward (FA2 §3.1.2): delta = rowsum(dO * O) in XLA; a dK/dV kernel (per key block, over query
  blocks from the diagonal on, scores recomputed transposed S^T = K Q^T so every matmul is NN or
  NT) and a dQ kernel (per query block, over key blocks). GQA: dK/dV are computed per query head
  in fp32 and summed over each group in XLA.
* Any length: T and S are padded to the block sizes; padded keys are masked out (kv_pos < S).
  Fully masked rows (possible with segment ids) return 0, like the reference.
Kernel bodies and the GPU (in-kernel loop) / TPU (grid axis + VMEM scratch) drivers are in
`_flash_kernels.py`; `backend.sequential_grid` picks the driver.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxformers.kernels import _flash_kernels as fk
from jaxformers.kernels import backend
from jaxformers.ops.attention import dot_product_attention

MAX_HEAD_DIM = 256
_Static = fk.Static


def _segments(q_seg, kv_seg):
    """[B, T] ids -> (q column [B,T,1], kv row [B,1,S], kv column [B,S,1], q row [B,1,T])."""
    if q_seg is None:
        return None
    return q_seg[:, :, None], kv_seg[:, None, :], kv_seg[:, :, None], q_seg[:, None, :]


def _q_major_specs(st: _Static, d: int, has_seg: bool):
    """Specs for the forward and dQ passes: grid (B, H, q blocks[, kv blocks])."""
    g, bq, bkv = st.group, st.block_q, st.block_kv
    if st.grid_carry:  # (b, h, i, j); skipped causal kv blocks re-map to the last needed one
        def kv_idx(i, j):
            return jnp.minimum(j, fk.last_kv_block(st, i) - 1) if st.causal else j

        q_spec = pl.BlockSpec((None, None, bq, d), lambda b, h, i, j: (b, h, i, 0))
        kv_spec = pl.BlockSpec((None, None, bkv, d), lambda b, h, i, j: (b, h // g, kv_idx(i, j), 0))
        col = pl.BlockSpec((None, None, bq, 1), lambda b, h, i, j: (b, h, i, 0))
        segs = [pl.BlockSpec((None, bq, 1), lambda b, h, i, j: (b, i, 0)),
                pl.BlockSpec((None, 1, bkv), lambda b, h, i, j: (b, 0, kv_idx(i, j)))]
    else:  # (b, h, i): all keys of the head in one block
        q_spec = pl.BlockSpec((None, None, bq, d), lambda b, h, i: (b, h, i, 0))
        kv_spec = pl.BlockSpec((None, None, st.kv_len, d), lambda b, h, i: (b, h // g, 0, 0))
        col = pl.BlockSpec((None, None, bq, 1), lambda b, h, i: (b, h, i, 0))
        segs = [pl.BlockSpec((None, bq, 1), lambda b, h, i: (b, i, 0)),
                pl.BlockSpec((None, 1, st.kv_len), lambda b, h, i: (b, 0, 0))]
    return q_spec, kv_spec, col, segs if has_seg else []


def _kv_major_specs(st: _Static, d: int, has_seg: bool):
    """Specs for the dK/dV pass: grid (B, H, kv blocks[, q blocks])."""
    g, bq, bkv = st.group, st.block_q, st.block_kv
    if st.grid_carry:  # (b, h, j, i); skipped causal q blocks re-map to the first needed one
        def q_idx(j, i):
            return jnp.maximum(i, fk.first_q_block(st, j)) if st.causal else i

        q_spec = pl.BlockSpec((None, None, bq, d), lambda b, h, j, i: (b, h, q_idx(j, i), 0))
        kv_spec = pl.BlockSpec((None, None, bkv, d), lambda b, h, j, i: (b, h // g, j, 0))
        row = pl.BlockSpec((None, None, 1, bq), lambda b, h, j, i: (b, h, 0, q_idx(j, i)))
        out = pl.BlockSpec((None, None, bkv, d), lambda b, h, j, i: (b, h, j, 0))
        segs = [pl.BlockSpec((None, bkv, 1), lambda b, h, j, i: (b, j, 0)),
                pl.BlockSpec((None, 1, bq), lambda b, h, j, i: (b, 0, q_idx(j, i)))]
    else:  # (b, h, j): all queries of the head in one block
        q_spec = pl.BlockSpec((None, None, st.q_len, d), lambda b, h, j: (b, h, 0, 0))
        kv_spec = pl.BlockSpec((None, None, bkv, d), lambda b, h, j: (b, h // g, j, 0))
        row = pl.BlockSpec((None, None, 1, st.q_len), lambda b, h, j: (b, h, 0, 0))
        out = pl.BlockSpec((None, None, bkv, d), lambda b, h, j: (b, h, j, 0))
        segs = [pl.BlockSpec((None, bkv, 1), lambda b, h, j: (b, j, 0)),
                pl.BlockSpec((None, 1, st.q_len), lambda b, h, j: (b, 0, 0))]
    return q_spec, kv_spec, row, out, segs if has_seg else []


def _call(st, kernels, outer, inner, *, has_seg, scratch, vmem, name, **kwargs):
    """pallas_call on grid (B, H, outer[, inner]) with the loop or grid driver of a pass."""
    loop, grid_kernel = kernels
    b, h = kwargs.pop("bh")
    grid = (b, h, outer, inner) if st.grid_carry else (b, h, outer)
    extra = {}
    if st.grid_carry:
        extra["scratch_shapes"] = [pltpu.VMEM(shape, jnp.float32) for shape in scratch]
    kernel = grid_kernel if st.grid_carry else loop
    return pl.pallas_call(
        functools.partial(kernel, st=st, has_seg=has_seg), grid=grid, name=name, **extra,
        **kwargs, **backend.pallas_params(len(grid), st.options, vmem_bytes=vmem,
                                          sequential_last=st.grid_carry))


def _vmem(st, d, dtype, q_rows, kv_rows):
    """Block bytes of one program: q-like and kv-like blocks, fp32 stats/accumulators."""
    return backend.block_bytes(((2 * q_rows, d), dtype), ((2 * kv_rows, d), dtype),
                               ((2 * max(st.block_q, st.block_kv), d), jnp.float32),
                               ((8, 2 * max(st.q_len, 128)), jnp.float32))


def _forward(q, k, v, q_seg, kv_seg, st: _Static):
    b, h, t, d = q.shape
    segs = _segments(q_seg, kv_seg)
    has_seg = segs is not None
    q_spec, kv_spec, col, seg_specs = _q_major_specs(st, d, has_seg)
    return _call(
        st, (fk.fwd_loop, fk.fwd_grid), st.num_q, st.num_kv, has_seg=has_seg, bh=(b, h),
        scratch=[(st.block_q, 1), (st.block_q, 1), (st.block_q, d)],
        vmem=_vmem(st, d, q.dtype, st.block_q, st.block_kv if st.grid_carry else st.kv_len),
        name="flash_attention_fwd",
        out_shape=(jax.ShapeDtypeStruct(q.shape, q.dtype),
                   jax.ShapeDtypeStruct((b, h, t, 1), jnp.float32)),
        in_specs=[q_spec, kv_spec, kv_spec] + seg_specs,
        out_specs=(q_spec, col),
    )(q, k, v, *(segs[:2] if has_seg else ()))


def _backward(q, k, v, q_seg, kv_seg, out, lse, do, st: _Static):
    b, h, t, d = q.shape
    kvh, s_len = k.shape[1], k.shape[2]
    delta = jnp.sum(out.astype(jnp.float32) * do.astype(jnp.float32), axis=-1, keepdims=True)
    segs = _segments(q_seg, kv_seg)
    has_seg = segs is not None
    rows = (st.block_q, st.block_kv) if st.grid_carry else (st.q_len, st.kv_len)

    q_spec, kv_spec, col, seg_specs = _q_major_specs(st, d, has_seg)
    dq = _call(
        st, (fk.dq_loop, fk.dq_grid), st.num_q, st.num_kv, has_seg=has_seg, bh=(b, h),
        scratch=[(st.block_q, d)], vmem=_vmem(st, d, q.dtype, st.block_q, rows[1]),
        name="flash_attention_dq",
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        in_specs=[q_spec, kv_spec, kv_spec, q_spec, col, col] + seg_specs,
        out_specs=q_spec,
    )(q, k, v, do, lse, delta, *(segs[:2] if has_seg else ()))

    q_spec, kv_spec, row, out_spec, seg_specs = _kv_major_specs(st, d, has_seg)
    dkv_dtype = k.dtype if st.group == 1 else jnp.float32  # fp32 partials summed over the group
    dk, dv = _call(
        st, (fk.dkv_loop, fk.dkv_grid), st.num_kv, st.num_q, has_seg=has_seg, bh=(b, h),
        scratch=[(st.block_kv, d), (st.block_kv, d)],
        vmem=_vmem(st, d, q.dtype, rows[0], st.block_kv),
        name="flash_attention_dkv",
        out_shape=(jax.ShapeDtypeStruct((b, h, s_len, d), dkv_dtype),) * 2,
        in_specs=[q_spec, kv_spec, kv_spec, q_spec, row, row] + seg_specs,
        out_specs=(out_spec, out_spec),
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
    block_q / block_kv: powers of two >= 8 (multiples of 128 on TPU), shrunk to the (padded)
    length for short inputs.
    impl: "xla" (the ops/ reference), "pallas", "auto" (Pallas on GPU/TPU, XLA on CPU).
    options: `backend.KernelOptions` (Triton warps/stages, TPU VMEM limit, driver choice).
    On a multi-device mesh wrap it in `kernels.sharding.per_shard` (shard_map, check_vma=False).
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
    if backend.target_platform() == "tpu":  # lane-dim blocks (LSE rows, segment rows)
        for name, blk, full in (("block_q", bq, t + t_pad), ("block_kv", bkv, s_len + s_pad)):
            if blk % 128 and blk != full:
                raise ValueError(f"{name}={blk}: on TPU a block must be a multiple of 128 or "
                                 f"cover the whole padded length {full}")
    d_pad = backend.next_pow2(d, 16) - d  # Triton needs power-of-two value shapes

    def prep(x, pad):  # [B, T, H, D] -> [B, H, T_pad, D_pad]
        return jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, d_pad))).transpose(0, 2, 1, 3)

    st = _Static(causal=bool(causal), scale=scale, block_q=bq, block_kv=bkv, q_len=t + t_pad,
                 kv_len=s_len + s_pad, kv_valid=s_len, group=h // kvh, options=options,
                 grid_carry=backend.sequential_grid(options))
    q_seg = kv_seg = None
    if segment_ids is not None:
        seg = segment_ids.astype(jnp.int32)
        q_seg = jnp.pad(seg, ((0, 0), (0, t_pad)))
        kv_seg = jnp.pad(seg, ((0, 0), (0, s_pad)))
    out = _flash_core(prep(q, t_pad), prep(k, s_pad), prep(v, s_pad), q_seg, kv_seg, st)
    return out.transpose(0, 2, 1, 3)[:, :t, :, :d]
