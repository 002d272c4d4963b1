"""Chunked Gated Linear Attention in Pallas (Yang et al. 2024, §4.2), forward and backward.

Same contract as `ops.linear_attention.gla_chunked`: q, k, log_alpha [B, T, H, Dk], v [B, T, H, Dv],
initial_state [B, H, Dk, Dv] -> (out [B, T, H, Dv] in q.dtype, final_state [B, H, Dk, Dv] fp32).

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
All arithmetic after loading is fp32; matmuls use precision=HIGHEST (IEEE on Triton).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from jaxformers.kernels import backend
from jaxformers.ops.linear_attention import gla_chunked

SUB_CHUNK = 16
MAX_KEY_DIM = 256
_NN = (((1,), (0,)), ((), ()))
_NT = (((1,), (1,)), ((), ()))
_TN = (((0,), (0,)), ((), ()))
f32 = jnp.float32


def _mm(a, b, dims=_NN):
    return jax.lax.dot_general(a, b, dims, precision=jax.lax.Precision.HIGHEST,
                               preferred_element_type=f32)


@dataclasses.dataclass(frozen=True)
class _Static:
    chunk: int
    scale: float
    block_v: int
    num_chunks: int
    options: backend.KernelOptions = backend.KernelOptions()
    grid_carry: bool = False  # chunk axis in the grid (TPU) instead of an in-kernel loop

    @property
    def num_sub(self):
        return self.chunk // SUB_CHUNK


def _load(ref, rows):
    return ref[rows, :].astype(f32)


def _tri():
    r = jax.lax.broadcasted_iota(jnp.int32, (SUB_CHUNK, SUB_CHUNK), 0)
    return r >= jax.lax.broadcasted_iota(jnp.int32, (SUB_CHUNK, SUB_CHUNK), 1)


def _cols(chunk):
    return jax.lax.broadcasted_iota(jnp.int32, (SUB_CHUNK, chunk), 1)


def _diag_decay(la):
    """E[r, j, d] = exp(min(L_rd - L_jd, 0)) for one sub-chunk: [BC, BC, Dk] (exact diagonal)."""
    return jnp.exp(jnp.minimum(la[:, None, :] - la[None, :, :], 0.0))


def _fwd_chunk(q_ref, k_ref, v_ref, cum_ref, o_ref, off, gam, s_t, st: _Static):
    """Rows [off, off + C) of the refs: writes O, returns S'^T. s_t: S^T [bv, Dk]; gam [1, Dk]."""
    c, bc = st.chunk, SUB_CHUNK
    rows = pl.ds(off, c)
    kk, ll, vv = _load(k_ref, rows), cum_ref[rows, :], _load(v_ref, rows)
    for a in range(st.num_sub):
        sub = pl.ds(pl.multiple_of(off + a * bc, bc), bc)
        qa = _load(q_ref, sub) * st.scale
        la, ka, va = cum_ref[sub, :], _load(k_ref, sub), _load(v_ref, sub)
        o = _mm(qa * jnp.exp(la), s_t, _NT)  # inter-chunk
        p_diag = jnp.sum(qa[:, None, :] * ka[None, :, :] * _diag_decay(la), axis=-1)
        o = o + _mm(jnp.where(_tri(), p_diag, 0.0), va)
        if a > 0:  # earlier sub-chunks of this chunk, anchored at n_a = L(first row of a)
            anchor = jnp.max(la, axis=0, keepdims=True)
            p = _mm(qa * jnp.exp(la - anchor), kk * jnp.exp(jnp.minimum(anchor - ll, 0.0)), _NT)
            o = o + _mm(jnp.where(_cols(c) < a * bc, p, 0.0), vv)
        o_ref[sub, :] = o.astype(o_ref.dtype)
    return jnp.exp(gam) * s_t + _mm(vv, kk * jnp.exp(gam - ll), _TN)


def _bwd_chunk(q_ref, k_ref, v_ref, cum_ref, do_ref, dq_ref, dk_ref, dv_ref, dl_ref, off, gam,
               s_prev, ds_t, st: _Static):
    """Rows [off, off + C): writes dq, dk, dv, dL given S^T before the chunk and dS'^T after it;
    returns dS^T before the chunk."""
    c, bc = st.chunk, SUB_CHUNK
    rows = pl.ds(off, c)
    qq = _load(q_ref, rows) * st.scale
    kk, vv, ll, do = _load(k_ref, rows), _load(v_ref, rows), cum_ref[rows, :], _load(do_ref, rows)
    for a in range(st.num_sub):
        sub = pl.ds(pl.multiple_of(off + a * bc, bc), bc)
        qa = _load(q_ref, sub) * st.scale
        la, ka, va, doa = cum_ref[sub, :], _load(k_ref, sub), _load(v_ref, sub), _load(do_ref, sub)
        e = _diag_decay(la)
        p_diag = jnp.where(_tri(), jnp.sum(qa[:, None, :] * ka[None, :, :] * e, axis=-1), 0.0)
        dp_diag = jnp.where(_tri(), _mm(doa, va, _NT), 0.0)
        dqa = jnp.exp(la) * _mm(doa, s_prev) + jnp.sum(dp_diag[:, :, None] * ka[None] * e, 1)
        k_decay = jnp.exp(gam - la)
        dka = k_decay * _mm(va, ds_t) + jnp.sum(dp_diag[:, :, None] * qa[:, None, :] * e, 0)
        dva = _mm(ka * k_decay, ds_t, _NT) + jnp.sum(p_diag[:, :, None] * doa[:, None, :], 0)
        if a > 0:  # queries of a against keys of earlier sub-chunks
            anchor = jnp.max(la, axis=0, keepdims=True)
            dp = jnp.where(_cols(c) < a * bc, _mm(doa, vv, _NT), 0.0)
            k_anch = kk * jnp.exp(jnp.minimum(anchor - ll, 0.0))
            dqa = dqa + jnp.exp(la - anchor) * _mm(dp, k_anch)
        if a < st.num_sub - 1:  # keys of a against queries of later sub-chunks
            anchor = jnp.min(la, axis=0, keepdims=True)  # L(last row of a)
            later = _cols(c) >= (a + 1) * bc
            q_anch = qq * jnp.exp(jnp.minimum(ll - anchor, 0.0))
            k_anch = ka * jnp.exp(anchor - la)
            dp_t = jnp.where(later, _mm(va, do, _NT), 0.0)
            dka = dka + jnp.exp(anchor - la) * _mm(dp_t, q_anch)
            p_t = jnp.where(later, _mm(k_anch, q_anch, _NT), 0.0)
            dva = dva + _mm(p_t, do)
        dq_ref[sub, :] = dqa * st.scale
        dk_ref[sub, :] = dka
        dv_ref[sub, :] = dva.astype(dv_ref.dtype)
        dl_ref[sub, :] = qa * dqa - ka * dka
    return jnp.exp(gam) * ds_t + _mm(do, qq * jnp.exp(ll), _TN)


# Two drivers around the same chunk bodies (backend.sequential_grid picks one):
# "loop" (GPU; CPU default): grid (B, H, Dv/bv), whole sequence per program, fori_loop over chunks.
# "grid" (TPU): grid (B, H, Dv/bv, N), chunk axis "arbitrary", state in VMEM scratch, so VMEM holds
# one chunk at a time (any T). The backward's index maps run the chunk axis in reverse.
def _fwd_kernel_loop(q_ref, k_ref, v_ref, cum_ref, gam_ref, s0_ref, o_ref, sfin_ref, states_ref,
                     *, st: _Static):
    def step(n, s_t):
        states_ref[n] = s_t
        off = pl.multiple_of(n * st.chunk, st.chunk)
        return _fwd_chunk(q_ref, k_ref, v_ref, cum_ref, o_ref, off, gam_ref[n], s_t, st)

    sfin_ref[...] = jax.lax.fori_loop(0, st.num_chunks, step, s0_ref[...])


def _fwd_kernel_grid(q_ref, k_ref, v_ref, cum_ref, gam_ref, s0_ref, o_ref, sfin_ref, states_ref,
                     s_scratch, *, st: _Static):
    n = pl.program_id(3)

    @pl.when(n == 0)
    def _():
        s_scratch[...] = s0_ref[...]

    s_t = s_scratch[...]
    states_ref[...] = s_t
    s_new = _fwd_chunk(q_ref, k_ref, v_ref, cum_ref, o_ref, 0, gam_ref[...], s_t, st)
    s_scratch[...] = s_new

    @pl.when(n == st.num_chunks - 1)
    def _():
        sfin_ref[...] = s_new


def _bwd_kernel_loop(q_ref, k_ref, v_ref, cum_ref, gam_ref, states_ref, sfin_ref, do_ref,
                     dsfin_ref, dq_ref, dk_ref, dv_ref, dl_ref, dgam_ref, ds0_ref, *, st: _Static):
    def step(i, carry):
        ds_t, s_next = carry  # dS'^T and S'^T after chunk n
        n = st.num_chunks - 1 - i
        s_prev = states_ref[n]
        dgam_ref[n] = jnp.sum(ds_t * s_next, axis=0, keepdims=True)
        off = pl.multiple_of(n * st.chunk, st.chunk)
        ds_prev = _bwd_chunk(q_ref, k_ref, v_ref, cum_ref, do_ref, dq_ref, dk_ref, dv_ref,
                             dl_ref, off, gam_ref[n], s_prev, ds_t, st)
        return ds_prev, s_prev

    ds0, _ = jax.lax.fori_loop(0, st.num_chunks, step, (dsfin_ref[...], sfin_ref[...]))
    ds0_ref[...] = ds0


def _bwd_kernel_grid(q_ref, k_ref, v_ref, cum_ref, gam_ref, states_ref, sfin_ref, do_ref,
                     dsfin_ref, dq_ref, dk_ref, dv_ref, dl_ref, dgam_ref, ds0_ref, ds_scratch,
                     s_next_scratch, *, st: _Static):
    m = pl.program_id(3)  # chunk n = N - 1 - m (reversed in the index maps)

    @pl.when(m == 0)
    def _():
        ds_scratch[...] = dsfin_ref[...]
        s_next_scratch[...] = sfin_ref[...]

    ds_t, s_prev = ds_scratch[...], states_ref[...]
    dgam_ref[...] = jnp.sum(ds_t * s_next_scratch[...], axis=0, keepdims=True)
    ds_prev = _bwd_chunk(q_ref, k_ref, v_ref, cum_ref, do_ref, dq_ref, dk_ref, dv_ref, dl_ref, 0,
                         gam_ref[...], s_prev, ds_t, st)
    ds_scratch[...] = ds_prev
    s_next_scratch[...] = s_prev

    @pl.when(m == st.num_chunks - 1)
    def _():
        ds0_ref[...] = ds_prev


def _spec(st: _Static, dk: int, dims: str, *, reverse: bool = False):
    """BlockSpec from a layout string over the array's axes: b, h (one per program), j (value-tile
    axis, squeezed), v (value tile of block_v), t (time: all rows, or one chunk in grid mode),
    n (chunk axis: all, or squeezed in grid mode), 1, k (Dk, full)."""
    grid_mode = st.grid_carry
    sizes = dict(b=None, h=None, j=None, v=st.block_v, k=dk, one=1,
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


def _forward(q, k, v, cum, gam, s0_t, st: _Static):
    b, h, t, dk = q.shape
    dv, bv = v.shape[-1], st.block_v
    rows = st.chunk if st.grid_carry else t
    nst = 1 if st.grid_carry else st.num_chunks
    key, val = _spec(st, dk, "bhtk"), _spec(st, dk, "bhtv")
    state = _spec(st, dk, "bhvk")
    return _call(
        _fwd_kernel_grid if st.grid_carry else _fwd_kernel_loop, st, (b, h, dv // bv),
        out_shape=(jax.ShapeDtypeStruct((b, h, t, dv), q.dtype),
                   jax.ShapeDtypeStruct((b, h, dv, dk), f32),
                   jax.ShapeDtypeStruct((b, h, st.num_chunks, dv, dk), f32)),
        in_specs=[key, key, val, key, _spec(st, dk, "bhn1k"), state],
        out_specs=(val, state, _spec(st, dk, "bhnvk")),
        scratch=[(bv, dk)],
        vmem=backend.block_bytes(
            ((rows, dk), q.dtype), ((rows, dk), k.dtype), ((rows, dk), f32), ((rows, bv), v.dtype),
            ((rows, bv), q.dtype), ((nst, 8, dk), f32), ((nst + 3, bv, dk), f32)),
        name="gla_fwd",
    )(q, k, v, cum, gam, s0_t)


def _backward(q, k, v, cum, gam, states, sfin_t, do, dsfin_t, st: _Static):
    b, h, t, dk = q.shape
    dv, bv = v.shape[-1], st.block_v
    nv = dv // bv
    rows = st.chunk if st.grid_carry else t
    nst = 1 if st.grid_carry else st.num_chunks
    spec = functools.partial(_spec, st, dk, reverse=True)
    key, val, state = spec("bhtk"), spec("bhtv"), spec("bhvk")
    part = spec("bhjtk")
    dq, dk_, dv_, dl, dgam, ds0_t = _call(
        _bwd_kernel_grid if st.grid_carry else _bwd_kernel_loop, st, (b, h, nv),
        out_shape=(jax.ShapeDtypeStruct((b, h, nv, t, dk), f32),) * 2
        + (jax.ShapeDtypeStruct((b, h, t, dv), v.dtype),
           jax.ShapeDtypeStruct((b, h, nv, t, dk), f32),
           jax.ShapeDtypeStruct((b, h, nv, st.num_chunks, 1, dk), f32),
           jax.ShapeDtypeStruct((b, h, dv, dk), f32)),
        in_specs=[key, key, val, key, spec("bhn1k"), spec("bhnvk"), state, val, state],
        out_specs=(part, part, val, part, spec("bhjn1k"), state),
        scratch=[(bv, dk), (bv, dk)],
        vmem=backend.block_bytes(
            ((rows, dk), q.dtype), ((rows, dk), k.dtype), ((4 * rows, dk), f32),
            ((3 * rows, bv), v.dtype), ((2 * nst, 8, dk), f32), ((nst + 6, bv, dk), f32)),
        name="gla_bwd",
    )(q, k, v, cum, gam, states, sfin_t, do, dsfin_t)
    return (dq.sum(2).astype(q.dtype), dk_.sum(2).astype(k.dtype), dv_, dl.sum(2),
            dgam.sum(2), ds0_t)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _gla_core(q, k, v, cum, gam, s0_t, st):
    out, sfin_t, _ = _forward(q, k, v, cum, gam, s0_t, st)
    return out, sfin_t


def _core_fwd(q, k, v, cum, gam, s0_t, st):
    out, sfin_t, states = _forward(q, k, v, cum, gam, s0_t, st)
    return (out, sfin_t), (q, k, v, cum, gam, states, sfin_t)


def _core_bwd(st, res, cotangents):
    do, dsfin_t = cotangents
    return _backward(*res, do, dsfin_t, st)


_gla_core.defvjp(_core_fwd, _core_bwd)


def _validate(q, k, v, log_alpha, initial_state, chunk_size, block_v):
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
    _check_tiles(chunk_size, block_v)


def _check_tiles(chunk_size, block_v):
    if not isinstance(chunk_size, int) or chunk_size < SUB_CHUNK or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size={chunk_size!r}; the kernel needs a power of two >= "
                         f"{SUB_CHUNK}")
    backend.check_block("block_v", block_v)


def gla(q, k, v, log_alpha, *, chunk_size=64, scale=None, initial_state=None, impl="auto",
        block_v=128, options=backend.KernelOptions()):
    """Gated linear attention, chunked (GLA §4.2); equals `ops.linear_attention.gla_chunked`.

    q, k, log_alpha (<= 0): [B, T, H, Dk]; v: [B, T, H, Dv]; initial_state: [B, H, Dk, Dv].
    chunk_size: power of two >= 16 for the kernel; block_v: value tile per program.
    impl: "xla" (ops/ reference), "pallas", "auto" (Pallas on GPU/TPU, XLA on CPU).
    Returns (out [B, T, H, Dv] in q.dtype, final_state [B, H, Dk, Dv] float32).
    """
    resolved = backend.resolve_impl(impl)
    if impl != "xla":  # "auto" checks the kernel's constraints on CPU too, before a TPU run does
        _check_tiles(chunk_size, block_v)
    if resolved == "xla":
        return gla_chunked(q, k, v, log_alpha, chunk_size=chunk_size, scale=scale,
                           initial_state=initial_state)
    _validate(q, k, v, log_alpha, initial_state, chunk_size, block_v)
    b, t, h, dk = q.shape
    dv = v.shape[-1]
    c = chunk_size
    t_pad = -t % c
    n = (t + t_pad) // c
    dk_pad = backend.next_pow2(dk, 16) - dk  # Triton: power-of-two value shapes
    dv_p = backend.next_pow2(dv, 16)
    bv = min(block_v, dv_p)
    st = _Static(chunk=c, scale=dk**-0.5 if scale is None else float(scale), block_v=bv,
                 num_chunks=n, options=options, grid_carry=backend.sequential_grid(options))

    def prep(x, d_pad):  # [B, T, H, D] -> [B, H, T_pad, D_pad]; zero keys/gates change nothing
        return jnp.pad(x, ((0, 0), (0, t_pad), (0, 0), (0, d_pad))).transpose(0, 2, 1, 3)

    g = prep(log_alpha.astype(f32), dk_pad)
    cum = jnp.cumsum(g.reshape(b, h, n, c, dk + dk_pad), axis=3)  # within-chunk L (GLA §4.2)
    gam = cum[:, :, :, -1:, :]  # [B, H, N, 1, Dk]: total log decay of each chunk
    s0 = jnp.zeros((b, h, dk, dv), f32) if initial_state is None else initial_state.astype(f32)
    s0_t = jnp.pad(s0, ((0, 0), (0, 0), (0, dk_pad), (0, dv_p - dv))).swapaxes(-1, -2)
    out, sfin_t = _gla_core(prep(q, dk_pad), prep(k, dk_pad), prep(v, dv_p - dv),
                            cum.reshape(g.shape), gam, s0_t, st)
    out = out.transpose(0, 2, 1, 3)[:, :t, :, :dv]
    return out, sfin_t.swapaxes(-1, -2)[:, :, :dk, :dv]
