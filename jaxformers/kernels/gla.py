"""Chunked Gated Linear Attention in Pallas (Yang et al. 2024, §4.2), forward and backward.

Same contract as `ops.linear_attention.gla_chunked`: q, k, log_alpha [B, T, H, Dk], v [B, T, H, Dv],
initial_state [B, H, Dk, Dv], segment_ids [B, T] -> (out [B, T, H, Dv] in q.dtype, final_state
[B, H, Dk, Dv] fp32).

Work split (what runs where):
* XLA: padding, transposes to [B, H, T, D], the within-chunk cumulative log gate L (TPU kernels
  cannot `cumsum`) and its last row per chunk gamma = L_C; their gradients come from autodiff.
* Each program owns one value tile of the state for one head, held transposed, S^T [block_v, Dk],
  so the per-key gate exp(gamma) is a row broadcast (no in-kernel transpose of a gate vector).
  Two drivers run the same chunk bodies, chosen by `backend.sequential_grid`:
  GPU: grid (B, H, Dv / block_v), whole sequence per program, an in-kernel fori_loop over
  chunks (GPU programs run in parallel and cannot carry state across grid steps);
  TPU: grid (B, H, Dv / block_v, N) with the chunk axis "arbitrary" and the state in VMEM
  scratch, so VMEM holds one chunk whatever T is (axlearn ssd_kernels-style).
* Per chunk (GLA §4.2, "secondary-level chunking" with sub-chunks of 16 rows):
    O_a  = (Q_a ⊙ e^{L_a}) S + Σ_{b<a} P_ab V_b + P_aa V_a
    S'   = e^{gamma} ⊙ S + (K ⊙ e^{gamma - L})^T V
  Off-diagonal blocks P_ab are one matmul after anchoring at n_a = max L_a (the first row of
  sub-chunk a): both factors have exponents <= 0. Diagonal blocks are exact pairwise
  Σ_d q k e^{L_r - L_j} on the vector unit ([16, 16, Dk] in fp32) - never anchored, so no
  exponent is positive for any gate strength (tokamax compute_kda.py warns about NaN otherwise).
* Backward, chunks in reverse with dS carried: dq, dk, dv by the same blocks (key-side anchor
  m_b = min L_b for dk/dv), and the gate gradient in the compact form of gla-jax:
  dL = q ⊙ dq - k ⊙ dk (L enters only through q e^{L} and k e^{-L}) and d gamma = Σ_v dS' ⊙ S'.
  Per-chunk states from the forward are saved (fp32 [N, Dv, Dk]) instead of recomputed.
  dq, dk, dL, d gamma are partial sums per value tile, summed in XLA.
* Packed documents (`segment_ids`): XLA turns the ids into `rel`, each token's document counted
  from the one entering its chunk, passed as a column [B, T, 1] and per-chunk rows [B, N, 1, C];
  the kernel masks the inter-chunk term, the intra-chunk blocks and the state update with it
  (forward and backward, `_gla_kernels.py`), never the gates, so the decays stay exact.
All arithmetic after loading is fp32; matmuls use precision=HIGHEST (IEEE on Triton). The chunk
bodies and the two drivers are in `_gla_kernels.py`.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxformers.kernels import _gla_kernels as gk
from jaxformers.kernels import backend
from jaxformers.ops.linear_attention import document_index, gla_chunked

SUB_CHUNK = gk.SUB_CHUNK
f32 = jnp.float32

MAX_KEY_DIM = 256
_Static = gk.Static


def _spec(st: _Static, dk: int, dims: str, *, reverse: bool = False):
    """BlockSpec from a layout string over the array's axes: b, h (one per program), j (value-tile
    axis, squeezed), v (value tile of block_v), t (time: all rows, or one chunk in grid mode),
    n (chunk axis: all, or squeezed in grid mode), 1, k (Dk, full), c (one chunk of lanes)."""
    grid_mode = st.grid_carry
    sizes = dict(b=None, h=None, j=None, v=st.block_v, k=dk, one=1, c=st.chunk,
                 t=st.chunk if grid_mode else st.chunk * st.num_chunks,
                 n=None if grid_mode else st.num_chunks)
    block = tuple(sizes["one" if d == "1" else d] for d in dims)

    def index_map(b, h, j, n=0):
        chunk = st.num_chunks - 1 - n if reverse else n
        pick = dict(b=b, h=h, j=j, v=j, t=chunk if grid_mode else 0, n=chunk if grid_mode else 0)
        return tuple(pick.get(d, 0) for d in dims)

    return pl.BlockSpec(block, index_map)


def _call(kernel, st: _Static, grid_bvh, out_shape, in_specs, out_specs, scratch, vmem, name):
    b, h, nv = grid_bvh
    grid = (b, h, nv, st.num_chunks) if st.grid_carry else (b, h, nv)
    extra = {}
    if st.grid_carry:
        extra["scratch_shapes"] = [pltpu.VMEM(shape, f32) for shape in scratch]
    return pl.pallas_call(
        functools.partial(kernel, st=st), out_shape=out_shape, grid=grid, in_specs=in_specs,
        out_specs=out_specs, name=name, **extra,
        **backend.pallas_params(len(grid), st.options, vmem_bytes=vmem,
                                sequential_last=st.grid_carry))


def _segment_specs(st: _Static, dk: int, *, reverse: bool = False):
    """rel as a column [B, T, 1] and as per-chunk rows [B, N, 1, C] (no head axis), or []."""
    if not st.segments:
        return []
    return [_spec(st, dk, "bt1", reverse=reverse), _spec(st, dk, "bn1c", reverse=reverse)]


def _segment_bytes(st: _Static, rows: int, nst: int):
    return ((rows, 1), jnp.int32), ((nst, 8, st.chunk), jnp.int32)


def _forward(q, k, v, cum, gam, s0_t, col, row, st: _Static):
    b, h, t, dk = q.shape
    dv, bv = v.shape[-1], st.block_v
    rows = st.chunk if st.grid_carry else t
    nst = 1 if st.grid_carry else st.num_chunks
    key, val = _spec(st, dk, "bhtk"), _spec(st, dk, "bhtv")
    state = _spec(st, dk, "bhvk")
    return _call(
        gk.fwd_kernel_grid if st.grid_carry else gk.fwd_kernel_loop, st, (b, h, dv // bv),
        out_shape=(jax.ShapeDtypeStruct((b, h, t, dv), q.dtype),
                   jax.ShapeDtypeStruct((b, h, dv, dk), f32),
                   jax.ShapeDtypeStruct((b, h, st.num_chunks, dv, dk), f32)),
        in_specs=[key, key, val, key, _spec(st, dk, "bhn1k"), state] + _segment_specs(st, dk),
        out_specs=(val, state, _spec(st, dk, "bhnvk")),
        scratch=[(bv, dk)],
        vmem=backend.block_bytes(
            ((rows, dk), q.dtype), ((rows, dk), k.dtype), ((rows, dk), f32), ((rows, bv), v.dtype),
            ((rows, bv), q.dtype), ((nst, 8, dk), f32), ((nst + 3, bv, dk), f32),
            *(_segment_bytes(st, rows, nst) if st.segments else ())),
        name="gla_fwd",
    )(q, k, v, cum, gam, s0_t, *((col, row) if st.segments else ()))


def _backward(q, k, v, cum, gam, col, row, states, sfin_t, do, dsfin_t, st: _Static):
    b, h, t, dk = q.shape
    dv, bv = v.shape[-1], st.block_v
    nv = dv // bv
    rows = st.chunk if st.grid_carry else t
    nst = 1 if st.grid_carry else st.num_chunks
    spec = functools.partial(_spec, st, dk, reverse=True)
    key, val, state = spec("bhtk"), spec("bhtv"), spec("bhvk")
    part = spec("bhjtk")
    dq, dk_, dv_, dl, dgam, ds0_t = _call(
        gk.bwd_kernel_grid if st.grid_carry else gk.bwd_kernel_loop, st, (b, h, nv),
        out_shape=(jax.ShapeDtypeStruct((b, h, nv, t, dk), f32),) * 2
        + (jax.ShapeDtypeStruct((b, h, t, dv), v.dtype),
           jax.ShapeDtypeStruct((b, h, nv, t, dk), f32),
           jax.ShapeDtypeStruct((b, h, nv, st.num_chunks, 1, dk), f32),
           jax.ShapeDtypeStruct((b, h, dv, dk), f32)),
        in_specs=[key, key, val, key, spec("bhn1k"), spec("bhnvk"), state, val, state]
        + _segment_specs(st, dk, reverse=True),
        out_specs=(part, part, val, part, spec("bhjn1k"), state),
        scratch=[(bv, dk), (bv, dk)],
        vmem=backend.block_bytes(
            ((rows, dk), q.dtype), ((rows, dk), k.dtype), ((4 * rows, dk), f32),
            ((3 * rows, bv), v.dtype), ((2 * nst, 8, dk), f32), ((nst + 6, bv, dk), f32),
            *(_segment_bytes(st, rows, nst) if st.segments else ())),
        name="gla_bwd",
    )(q, k, v, cum, gam, states, sfin_t, do, dsfin_t, *((col, row) if st.segments else ()))
    return (dq.sum(2).astype(q.dtype), dk_.sum(2).astype(k.dtype), dv_, dl.sum(2),
            dgam.sum(2), ds0_t)


@functools.partial(jax.custom_vjp, nondiff_argnums=(8,))
def _gla_core(q, k, v, cum, gam, s0_t, col, row, st):
    out, sfin_t, _ = _forward(q, k, v, cum, gam, s0_t, col, row, st)
    return out, sfin_t


def _core_fwd(q, k, v, cum, gam, s0_t, col, row, st):
    out, sfin_t, states = _forward(q, k, v, cum, gam, s0_t, col, row, st)
    return (out, sfin_t), (q, k, v, cum, gam, col, row, states, sfin_t)


def _core_bwd(st, res, cotangents):
    do, dsfin_t = cotangents
    return _backward(*res, do, dsfin_t, st) + (None, None)  # no gradient for the document ids


_gla_core.defvjp(_core_fwd, _core_bwd)


def _validate(q, k, v, log_alpha, initial_state, segment_ids, chunk_size, block_v):
    for name, x in (("q", q), ("k", k), ("v", v), ("log_alpha", log_alpha)):
        if x.ndim != 4:
            raise ValueError(f"{name} must be [batch, time, heads, dim]; got shape {x.shape}")
        backend.check_dtype(name, x)
    if k.shape != q.shape or log_alpha.shape != q.shape:
        raise ValueError(f"q {q.shape}, k {k.shape} and log_alpha {log_alpha.shape} must match")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v {v.shape} must share batch/time/heads with q {q.shape}")
    if q.shape[-1] > MAX_KEY_DIM:
        raise ValueError(f"key dim {q.shape[-1]} > {MAX_KEY_DIM} is not supported by the kernel")
    if initial_state is not None:
        want = (q.shape[0], q.shape[2], q.shape[3], v.shape[3])
        if initial_state.shape != want:
            raise ValueError(f"initial_state must be [B,H,Dk,Dv]={want}; got {initial_state.shape}")
    if segment_ids is not None:
        if segment_ids.shape != q.shape[:2]:
            raise ValueError(f"segment_ids must be [batch, time]={q.shape[:2]}; got "
                             f"{segment_ids.shape}")
        if not jnp.issubdtype(segment_ids.dtype, jnp.integer):
            raise ValueError(f"segment_ids must be integers; got {segment_ids.dtype}")
    _check_tiles(chunk_size, block_v)


def _check_tiles(chunk_size, block_v):
    if not isinstance(chunk_size, int) or chunk_size < SUB_CHUNK or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size={chunk_size!r}; the kernel needs a power of two >= "
                         f"{SUB_CHUNK}")
    backend.check_block("block_v", block_v)


def _relative_documents(segment_ids, q, t_pad, n, c):
    """rel [B, N, C] int32: each token's document counted from the one that enters its chunk
    (the initial state's document for chunk 0), the kernel's only view of packed documents."""
    doc = jnp.pad(document_index(segment_ids, q), ((0, 0), (0, t_pad)), mode="edge")
    doc = doc.reshape(q.shape[0], n, c)
    last = doc[:, :, -1]
    entering = jnp.concatenate([jnp.zeros_like(last[:, :1]), last[:, :-1]], axis=1)
    return (doc - entering[:, :, None]).astype(jnp.int32)


def gla(q, k, v, log_alpha, *, chunk_size=64, scale=None, initial_state=None, segment_ids=None,
        impl="auto", block_v=128, options=backend.KernelOptions()):
    """Gated linear attention, chunked (GLA §4.2); equals `ops.linear_attention.gla_chunked`.

    q, k, log_alpha (<= 0): [B, T, H, Dk]; v: [B, T, H, Dv]; initial_state: [B, H, Dk, Dv].
    segment_ids: [B, T] ints or None; packed documents: the state restarts at zero where the id
    changes (`initial_state` belongs to the first document), in the kernel as in the reference.
    chunk_size: power of two >= 16 for the kernel; block_v: value tile per program.
    impl: "xla" (ops/ reference), "pallas", "auto" (Pallas on GPU/TPU, XLA on CPU).
    Returns (out [B, T, H, Dv] in q.dtype, final_state [B, H, Dk, Dv] float32).
    """
    resolved = backend.resolve_impl(impl)
    if impl != "xla":  # "auto" checks the kernel's constraints on CPU too, before a TPU run does
        _check_tiles(chunk_size, block_v)
    if resolved == "xla":
        return gla_chunked(q, k, v, log_alpha, chunk_size=chunk_size, scale=scale,
                           initial_state=initial_state, segment_ids=segment_ids)
    _validate(q, k, v, log_alpha, initial_state, segment_ids, chunk_size, block_v)
    b, t, h, dk = q.shape
    dv = v.shape[-1]
    c = chunk_size
    t_pad = -t % c
    n = (t + t_pad) // c
    dk_pad = backend.next_pow2(dk, 16) - dk  # Triton: power-of-two value shapes
    dv_p = backend.next_pow2(dv, 16)
    bv = min(block_v, dv_p)
    st = _Static(chunk=c, scale=dk**-0.5 if scale is None else float(scale), block_v=bv,
                 num_chunks=n, options=options, grid_carry=backend.sequential_grid(options),
                 segments=segment_ids is not None)

    def prep(x, d_pad):  # [B, T, H, D] -> [B, H, T_pad, D_pad]; zero keys/gates change nothing
        return jnp.pad(x, ((0, 0), (0, t_pad), (0, 0), (0, d_pad))).transpose(0, 2, 1, 3)

    g = prep(log_alpha.astype(f32), dk_pad)
    cum = jnp.cumsum(g.reshape(b, h, n, c, dk + dk_pad), axis=3)  # within-chunk L (GLA §4.2)
    gam = cum[:, :, :, -1:, :]  # [B, H, N, 1, Dk]: total log decay of each chunk
    s0 = jnp.zeros((b, h, dk, dv), f32) if initial_state is None else initial_state.astype(f32)
    s0_t = jnp.pad(s0, ((0, 0), (0, 0), (0, dk_pad), (0, dv_p - dv))).swapaxes(-1, -2)
    col = row = None
    if segment_ids is not None:
        rel = _relative_documents(segment_ids, q, t_pad, n, c)
        col, row = rel.reshape(b, n * c, 1), rel[:, :, None, :]
    out, sfin_t = _gla_core(prep(q, dk_pad), prep(k, dk_pad), prep(v, dv_p - dv),
                            cum.reshape(g.shape), gam, s0_t, col, row, st)
    out = out.transpose(0, 2, 1, 3)[:, :t, :, :dv]
    return out, sfin_t.swapaxes(-1, -2)[:, :, :dk, :dv]
