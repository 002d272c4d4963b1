"""The Pallas bodies of the chunked GLA kernel (`kernels/gla.py` has the math and the calls).

Per chunk, on rows [off, off + C) of the refs, with sub-chunks of 16 rows (GLA §4.2):
    O_a = c ⊙ (Q_a ⊙ e^{L_a}) S + Σ_{b<a} (P_ab ⊙ M) V_b + (P_aa ⊙ M) V_a
    S'  = κ e^{gamma} ⊙ S + (τ ⊙ K ⊙ e^{gamma - L})^T V
Packed documents enter only through masks, never through the gates, so the decays keep their
exact arithmetic: from `rel`, each token's document counted from the one that the entering state
S belongs to, c = (rel == 0) (the token continues S's document), M = (rel_r == rel_j) (same
document), τ = (rel == rel_last) (the token reaches S'), κ = (rel_last == 0) (no reset inside
the chunk). Without segment ids all four are 1 and are not computed. The backward applies the
same masks to each term, so dL = q ⊙ dq - k ⊙ dk and d gamma = Σ_v dS' ⊙ S' still hold.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxformers.kernels import backend

SUB_CHUNK = 16
_NN = (((1,), (0,)), ((), ()))
_NT = (((1,), (1,)), ((), ()))
_TN = (((0,), (0,)), ((), ()))
f32 = jnp.float32


def _mm(a, b, dims=_NN):
    return jax.lax.dot_general(a, b, dims, precision=jax.lax.Precision.HIGHEST, preferred_element_type=f32)


@dataclasses.dataclass(frozen=True)
class Static:
    chunk: int
    scale: float
    block_v: int
    num_chunks: int
    options: backend.KernelOptions = backend.KernelOptions()
    grid_carry: bool = False  # chunk axis in the grid (TPU) instead of an in-kernel loop
    segments: bool = False  # packed documents: two more inputs, rel as a column and per-chunk rows

    @property
    def num_sub(self):
        return self.chunk // SUB_CHUNK


@dataclasses.dataclass(frozen=True)
class Docs:
    """One chunk's view of `rel` (int32): col_ref [rows, 1] (rows as in the other refs) and
    row_ref [N, 1, C] in the loop driver (chunk n) or [1, C] in the grid driver (n = None)."""

    col_ref: object
    row_ref: object
    n: object = None

    def col(self, rows):
        return self.col_ref[rows, :]

    def row(self, lanes):
        return self.row_ref[:, lanes] if self.n is None else self.row_ref[self.n, :, lanes]


def _docs(seg_refs, n=None):
    return Docs(*seg_refs, n) if seg_refs else None


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


def _chunk_docs(docs: Docs | None, rows, c):
    """(rel of the chunk's rows [C, 1], rel as a row [1, C], rel of the last row [1, 1]) or Nones."""
    if docs is None:
        return None, None, None
    rel_all = docs.row(pl.ds(0, c))
    return docs.col(rows), rel_all, jnp.max(rel_all, axis=1, keepdims=True)


def _sub_masks(docs: Docs | None, sub, a, rel_all):
    """(rel of sub-chunk a [BC, 1], diagonal-block mask [BC, BC], row mask [BC, C] or None)."""
    if docs is None:
        return None, _tri(), None
    rel_a = docs.col(sub)
    diag = _tri() & (rel_a == docs.row(pl.ds(a * SUB_CHUNK, SUB_CHUNK)))
    return rel_a, diag, rel_a == rel_all


def _where(mask, x):
    return x if mask is None else jnp.where(mask, x, 0.0)


def fwd_chunk(q_ref, k_ref, v_ref, cum_ref, o_ref, off, gam, s_t, st: Static, docs=None):
    """Rows [off, off + C) of the refs: writes O, returns S'^T. s_t: S^T [bv, Dk]; gam [1, Dk]."""
    c, bc = st.chunk, SUB_CHUNK
    rows = pl.ds(off, c)
    kk, ll, vv = _load(k_ref, rows), cum_ref[rows, :], _load(v_ref, rows)
    rel_rows, rel_all, rel_last = _chunk_docs(docs, rows, c)
    for a in range(st.num_sub):
        sub = pl.ds(pl.multiple_of(off + a * bc, bc), bc)
        qa = _load(q_ref, sub) * st.scale
        la, ka, va = cum_ref[sub, :], _load(k_ref, sub), _load(v_ref, sub)
        rel_a, diag, same = _sub_masks(docs, sub, a, rel_all)
        o = _where(None if docs is None else rel_a == 0, _mm(qa * jnp.exp(la), s_t, _NT))  # inter
        p_diag = jnp.sum(qa[:, None, :] * ka[None, :, :] * _diag_decay(la), axis=-1)
        o = o + _mm(jnp.where(diag, p_diag, 0.0), va)
        if a > 0:  # earlier sub-chunks of this chunk, anchored at n_a = L(first row of a)
            anchor = jnp.max(la, axis=0, keepdims=True)
            p = _mm(qa * jnp.exp(la - anchor), kk * jnp.exp(jnp.minimum(anchor - ll, 0.0)), _NT)
            earlier = _cols(c) < a * bc
            o = o + _mm(jnp.where(earlier if same is None else earlier & same, p, 0.0), vv)
        o_ref[sub, :] = o.astype(o_ref.dtype)
    k_state, decay = kk * jnp.exp(gam - ll), jnp.exp(gam)
    if docs is not None:
        k_state, decay = _where(rel_rows == rel_last, k_state), _where(rel_last == 0, decay)
    return decay * s_t + _mm(vv, k_state, _TN)


def bwd_chunk(
    q_ref,
    k_ref,
    v_ref,
    cum_ref,
    do_ref,
    dq_ref,
    dk_ref,
    dv_ref,
    dl_ref,
    off,
    gam,
    s_prev,
    ds_t,
    st: Static,
    docs=None,
):
    """Rows [off, off + C): writes dq, dk, dv, dL given S^T before the chunk and dS'^T after it;
    returns dS^T before the chunk."""
    c, bc = st.chunk, SUB_CHUNK
    rows = pl.ds(off, c)
    qq = _load(q_ref, rows) * st.scale
    kk, vv, ll, do = _load(k_ref, rows), _load(v_ref, rows), cum_ref[rows, :], _load(do_ref, rows)
    rel_rows, rel_all, rel_last = _chunk_docs(docs, rows, c)
    for a in range(st.num_sub):
        sub = pl.ds(pl.multiple_of(off + a * bc, bc), bc)
        qa = _load(q_ref, sub) * st.scale
        la, ka, va, doa = cum_ref[sub, :], _load(k_ref, sub), _load(v_ref, sub), _load(do_ref, sub)
        rel_a, diag, same = _sub_masks(docs, sub, a, rel_all)
        e = _diag_decay(la)
        p_diag = jnp.where(diag, jnp.sum(qa[:, None, :] * ka[None, :, :] * e, axis=-1), 0.0)
        dp_diag = jnp.where(diag, _mm(doa, va, _NT), 0.0)
        from_state = _where(None if docs is None else rel_a == 0, _mm(doa, s_prev))
        dqa = jnp.exp(la) * from_state + jnp.sum(dp_diag[:, :, None] * ka[None] * e, 1)
        k_decay = jnp.exp(gam - la)
        if docs is not None:
            k_decay = _where(rel_a == rel_last, k_decay)
        dka = k_decay * _mm(va, ds_t) + jnp.sum(dp_diag[:, :, None] * qa[:, None, :] * e, 0)
        dva = _mm(ka * k_decay, ds_t, _NT) + jnp.sum(p_diag[:, :, None] * doa[:, None, :], 0)
        if a > 0:  # queries of a against keys of earlier sub-chunks
            anchor = jnp.max(la, axis=0, keepdims=True)
            earlier = _cols(c) < a * bc
            dp = jnp.where(earlier if same is None else earlier & same, _mm(doa, vv, _NT), 0.0)
            k_anch = kk * jnp.exp(jnp.minimum(anchor - ll, 0.0))
            dqa = dqa + jnp.exp(la - anchor) * _mm(dp, k_anch)
        if a < st.num_sub - 1:  # keys of a against queries of later sub-chunks
            anchor = jnp.min(la, axis=0, keepdims=True)  # L(last row of a)
            later = _cols(c) >= (a + 1) * bc
            later = later if same is None else later & same
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
    q_state, decay = qq * jnp.exp(ll), jnp.exp(gam)
    if docs is not None:
        q_state, decay = _where(rel_rows == 0, q_state), _where(rel_last == 0, decay)
    return decay * ds_t + _mm(do, q_state, _TN)


# Two drivers around the same chunk bodies (backend.sequential_grid picks one):
# "loop" (GPU; CPU default): grid (B, H, Dv/bv), whole sequence per program, fori_loop over chunks.
# "grid" (TPU): grid (B, H, Dv/bv, N), chunk axis "arbitrary", state in VMEM scratch, so VMEM holds
# one chunk at a time (any T). The backward's index maps run the chunk axis in reverse.
# Ref order: the inputs, then the two segment inputs when st.segments, then outputs, scratch.
def _split(refs, n_in, st: Static):
    n_seg = 2 if st.segments else 0
    return refs[:n_in], refs[n_in : n_in + n_seg], refs[n_in + n_seg :]


def fwd_kernel_loop(*refs, st: Static):
    (q_ref, k_ref, v_ref, cum_ref, gam_ref, s0_ref), seg, (o_ref, sfin_ref, states_ref) = _split(refs, 6, st)

    def step(n, s_t):
        states_ref[n] = s_t
        off = pl.multiple_of(n * st.chunk, st.chunk)
        return fwd_chunk(q_ref, k_ref, v_ref, cum_ref, o_ref, off, gam_ref[n], s_t, st, _docs(seg, n))

    sfin_ref[...] = jax.lax.fori_loop(0, st.num_chunks, step, s0_ref[...])


def fwd_kernel_grid(*refs, st: Static):
    (q_ref, k_ref, v_ref, cum_ref, gam_ref, s0_ref), seg, rest = _split(refs, 6, st)
    o_ref, sfin_ref, states_ref, s_scratch = rest
    n = pl.program_id(3)

    @pl.when(n == 0)
    def _():
        s_scratch[...] = s0_ref[...]

    s_t = s_scratch[...]
    states_ref[...] = s_t
    s_new = fwd_chunk(q_ref, k_ref, v_ref, cum_ref, o_ref, 0, gam_ref[...], s_t, st, _docs(seg))
    s_scratch[...] = s_new

    @pl.when(n == st.num_chunks - 1)
    def _():
        sfin_ref[...] = s_new


def bwd_kernel_loop(*refs, st: Static):
    ins, seg, outs = _split(refs, 9, st)
    q_ref, k_ref, v_ref, cum_ref, gam_ref, states_ref, sfin_ref, do_ref, dsfin_ref = ins
    dq_ref, dk_ref, dv_ref, dl_ref, dgam_ref, ds0_ref = outs

    def step(i, carry):
        ds_t, s_next = carry  # dS'^T and S'^T after chunk n
        n = st.num_chunks - 1 - i
        s_prev = states_ref[n]
        dgam_ref[n] = jnp.sum(ds_t * s_next, axis=0, keepdims=True)
        off = pl.multiple_of(n * st.chunk, st.chunk)
        ds_prev = bwd_chunk(
            q_ref,
            k_ref,
            v_ref,
            cum_ref,
            do_ref,
            dq_ref,
            dk_ref,
            dv_ref,
            dl_ref,
            off,
            gam_ref[n],
            s_prev,
            ds_t,
            st,
            _docs(seg, n),
        )
        return ds_prev, s_prev

    ds0, _ = jax.lax.fori_loop(0, st.num_chunks, step, (dsfin_ref[...], sfin_ref[...]))
    ds0_ref[...] = ds0


def bwd_kernel_grid(*refs, st: Static):
    ins, seg, rest = _split(refs, 9, st)
    q_ref, k_ref, v_ref, cum_ref, gam_ref, states_ref, sfin_ref, do_ref, dsfin_ref = ins
    dq_ref, dk_ref, dv_ref, dl_ref, dgam_ref, ds0_ref, ds_scratch, s_next_scratch = rest
    m = pl.program_id(3)  # chunk n = N - 1 - m (reversed in the index maps)

    @pl.when(m == 0)
    def _():
        ds_scratch[...] = dsfin_ref[...]
        s_next_scratch[...] = sfin_ref[...]

    ds_t, s_prev = ds_scratch[...], states_ref[...]
    dgam_ref[...] = jnp.sum(ds_t * s_next_scratch[...], axis=0, keepdims=True)
    ds_prev = bwd_chunk(
        q_ref,
        k_ref,
        v_ref,
        cum_ref,
        do_ref,
        dq_ref,
        dk_ref,
        dv_ref,
        dl_ref,
        0,
        gam_ref[...],
        s_prev,
        ds_t,
        st,
        _docs(seg),
    )
    ds_scratch[...] = ds_prev
    s_next_scratch[...] = s_prev

    @pl.when(m == st.num_chunks - 1)
    def _():
        ds0_ref[...] = ds_prev
