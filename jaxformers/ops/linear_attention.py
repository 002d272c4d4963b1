"""Causal linear attention and Gated Linear Attention (GLA) as pure functions.

Layout (fla's convention): q, k, log_alpha [B, T, H, Dk]; v [B, T, H, Dv]; state [B, H, Dk, Dv]
(key-major). Per head, with row vectors q_t, k_t in R^Dk and v_t in R^Dv:

    S_t = Diag(exp(g_t)) S_{t-1} + k_t^T v_t,      o_t = scale * q_t S_t          (GLA eq. 2)

`g_t = log alpha_t <= 0` is the per-channel log forget gate (Yang et al. 2024, §4.1); `g = 0` is
plain causal linear attention (Katharopoulos et al. 2020, eq. 4-6); a gate shared by all channels
of a head is "simple GLA"; a constant per-head gate `gamma_h = 1 - 2^(-5-h)` is RetNet retention
(Sun et al. 2023, eq. 5). Token t is included in o_t undecayed.

Forms: `*_recurrent` (lax.scan over tokens, the ground truth), `*_parallel` (quadratic, for tests
and short sequences) and `*_chunked` (GLA §4.2: inter-chunk states + intra-chunk blocks). Every
function returns `(out, final_state)`; the state accumulates in float32 (float64 if the inputs
are), the output has q's dtype. The chunked GLA never exponentiates a positive number, so it is
safe for any gate strength (`_intra_chunk_scores`).

Packed documents: `segment_ids` [B, T] (any ints, constant within a document). The state is reset
to zero where the id changes, so no token sees another document; `initial_state` belongs to the
first document. Every form equals running the documents one by one.
"""

import jax
import jax.numpy as jnp
import numpy as np

SUB_CHUNK = 16  # secondary-level chunk (fla: BC = 16 inside BT = 64)


# ------------------------------------------------------------------------------------------------
# validation helpers
# ------------------------------------------------------------------------------------------------
def _compute_dtype(*xs):
    dt = jnp.result_type(*[x.dtype for x in xs if x is not None])
    return jnp.promote_types(dt, jnp.float32)


def _check(q, k, v, log_alpha=None, initial_state=None, *, gate_shape="full"):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(f"{name} must be [batch, time, heads, dim]; got shape {x.shape}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape [B,T,H,Dk]; got {q.shape} vs {k.shape}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v must be [B,T,H,Dv] with the batch/time/heads of q {q.shape[:3]}; got {v.shape}"
        )
    if log_alpha is not None:
        want = q.shape if gate_shape == "full" else q.shape[:3]
        if log_alpha.shape != want:
            raise ValueError(f"log_alpha must have shape {want}; got {log_alpha.shape}")
        if not isinstance(log_alpha, jax.core.Tracer) and bool(np.any(np.asarray(log_alpha) > 0)):
            raise ValueError("log_alpha must be <= 0 everywhere (a log forget gate); got entries > 0")
    if initial_state is not None:
        b, _, h, dk = q.shape
        want = (b, h, dk, v.shape[-1])
        if initial_state.shape != want:
            raise ValueError(f"initial_state must be [B,H,Dk,Dv]={want}; got {initial_state.shape}")


def _scale(q, scale):
    return q.shape[-1] ** -0.5 if scale is None else scale


def _zeros_state(q, v, dtype):
    b, _, h, dk = q.shape
    return jnp.zeros((b, h, dk, v.shape[-1]), dtype)


def document_index(segment_ids, q):
    """[B, T] int32: 0 for the first document, +1 at every change of segment id (a state reset).

    None when segment_ids is None (one document)."""
    if segment_ids is None:
        return None
    if segment_ids.shape != q.shape[:2]:
        raise ValueError(f"segment_ids must be [B, T]={q.shape[:2]}; got {segment_ids.shape}")
    change = segment_ids[:, 1:] != segment_ids[:, :-1]
    change = jnp.concatenate([jnp.zeros_like(change[:, :1]), change], axis=1)
    return jnp.cumsum(change.astype(jnp.int32), axis=1)


# ------------------------------------------------------------------------------------------------
# GLA: recurrent, parallel, chunked
# ------------------------------------------------------------------------------------------------
def gla_recurrent(q, k, v, log_alpha, *, scale=None, initial_state=None, segment_ids=None):
    """GLA recurrence (Yang et al. 2024, eq. 2 / §4.1): one lax.scan step per token.

    q, k, log_alpha: [B,T,H,Dk]; v: [B,T,H,Dv]; initial_state: [B,H,Dk,Dv] or None;
    segment_ids: [B,T] or None (the state restarts at zero where the id changes).
    Returns (out [B,T,H,Dv] in q.dtype, final_state [B,H,Dk,Dv] in the compute dtype).
    """
    _check(q, k, v, log_alpha, initial_state)
    dt = _compute_dtype(q, k, v, log_alpha, initial_state)
    s0 = _zeros_state(q, v, dt) if initial_state is None else initial_state.astype(dt)
    qs = q.astype(dt) * _scale(q, scale)
    doc = document_index(segment_ids, q)
    reset = jnp.zeros(q.shape[:2], bool) if doc is None else jnp.diff(doc, axis=1, prepend=0) > 0

    def step(state_BHKV, inputs):
        q_t, k_t, v_t, g_t, reset_t = inputs  # [B,H,K], [B,H,K], [B,H,V], [B,H,K], [B]
        keep = jnp.where(reset_t[:, None, None], 0.0, jnp.exp(g_t)).astype(dt)
        state_BHKV = keep[..., None] * state_BHKV + k_t[..., None] * v_t[..., None, :]
        return state_BHKV, jnp.einsum("bhk,bhkv->bhv", q_t, state_BHKV)

    xs = [jnp.swapaxes(x.astype(dt), 0, 1) for x in (qs, k, v, log_alpha)]
    final, out_TBHV = jax.lax.scan(step, s0, xs + [jnp.swapaxes(reset, 0, 1)])
    return jnp.swapaxes(out_TBHV, 0, 1).astype(q.dtype), final


def gla_parallel(q, k, v, log_alpha, *, scale=None, initial_state=None, segment_ids=None):
    """Quadratic GLA with exact pairwise decays (GLA §4.2's "generalized matmul").

    o_t = scale * sum_{j<=t} sum_d q_td k_jd exp(G_td - G_jd) v_j + scale * (q_t * exp(G_t)) S_0
    with G the cumulative log gate; with segment_ids only j in t's document (and S_0 only in the
    first). Materialises [B,H,T,T,Dk]: a test oracle, not for long T.
    """
    _check(q, k, v, log_alpha, initial_state)
    dt = _compute_dtype(q, k, v, log_alpha, initial_state)
    q, k, v, g = (x.astype(dt) for x in (q, k, v, log_alpha))
    cum_BTHK = jnp.cumsum(g, axis=1)
    visible, first_doc, last_doc = _document_masks(segment_ids, q)
    diff = cum_BTHK[:, :, None] - cum_BTHK[:, None, :]  # [B, Tq, Tk, H, K]
    diff = jnp.where(visible[:, :, :, None, None], diff, 0.0)
    scores = jnp.einsum("bthk,bshk,btshk->bhts", q, k, jnp.exp(diff))
    scores = jnp.where(visible[:, None], scores, 0.0) * _scale(q, scale)
    out = jnp.einsum("bhts,bshv->bthv", scores, v)
    s0 = _zeros_state(q, v, dt) if initial_state is None else initial_state.astype(dt)
    from_s0 = q * jnp.exp(cum_BTHK) * first_doc[:, :, None, None]
    out = out + _scale(q, scale) * jnp.einsum("bthk,bhkv->bthv", from_s0, s0)
    decay_T = jnp.exp(cum_BTHK[:, -1:] - cum_BTHK) * last_doc[:, :, None, None]  # exponent <= 0
    s0_decay = jnp.exp(cum_BTHK[:, -1]) * first_doc[:, -1, None, None]
    final = s0_decay[..., None] * s0 + jnp.einsum("bthk,bthv->bhkv", k * decay_T, v)
    return out.astype(q.dtype), final


def _document_masks(segment_ids, q):
    """(visible [B,Tq,Tk]: causal and same document, first_doc [B,T]: token is in the initial
    state's document, last_doc [B,T]: token is in the final state's document), float masks."""
    b, t = q.shape[:2]
    causal = jnp.tril(jnp.ones((t, t), bool))[None]
    doc = document_index(segment_ids, q)
    if doc is None:
        ones = jnp.ones((b, t), q.dtype)
        return jnp.broadcast_to(causal, (b, t, t)), ones, ones
    visible = causal & (doc[:, :, None] == doc[:, None, :])
    return visible, (doc == 0).astype(q.dtype), (doc == doc[:, -1:]).astype(q.dtype)


def _pad_time(x, t_pad):
    if t_pad == 0:
        return x
    return jnp.pad(x, [(0, 0), (0, t_pad)] + [(0, 0)] * (x.ndim - 2))


def _check_chunk(chunk_size):
    if not isinstance(chunk_size, int) or chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a positive power of two; got {chunk_size!r}")


def _intra_chunk_scores(q, k, cum):
    """P_rj = sum_d q_rd k_jd exp(L_rd - L_jd) for j <= r inside each chunk (GLA §4.2, two-level).

    q, k, cum: [B, N, C, H, K] with `cum` the within-chunk cumulative log gate. Returns
    [B, N, H, C, C] (zero above the diagonal). Off-diagonal sub-blocks (query sub-chunk a > key
    sub-chunk b) are one matmul after factoring through the anchor n_a = L at the first row of a:
    q~ = q exp(L - n_a) and k~ = k exp(n_a - L_key), both exponents <= 0. Diagonal sub-blocks use
    the exact pairwise differences (anchoring them would need a positive exponent: tokamax
    compute_kda.py). No exponent is ever positive, so nothing overflows for any gate strength.
    """
    b, n, c, h, dk = q.shape
    bc = min(SUB_CHUNK, c)
    nc = c // bc
    qs, ks, cs = (x.reshape(b, n, nc, bc, h, dk) for x in (q, k, cum))
    anchor = cs[:, :, :, :1]  # [B,N,NC,1,H,K] first row of each sub-chunk
    q_tilde = qs * jnp.exp(cs - anchor)  # exponent <= 0 (cum falls within the chunk)
    below = jnp.tril(jnp.ones((nc, nc), bool), -1)  # [a, b]: key sub-chunk b strictly before a
    # exponent n_a - L_key for every (a, b); zeroed where b >= a so that exp never sees > 0.
    expo = anchor[:, :, :, None] - cs[:, :, None, :]  # [B,N,a,b,BC,H,K]
    expo = jnp.where(below[None, None, :, :, None, None, None], expo, 0.0)
    k_tilde = ks[:, :, None] * jnp.exp(expo)
    off = jnp.einsum("bnarhk,bnasjhk->bnhasrj", q_tilde, k_tilde)  # [B,N,H,a,b,BCq,BCk]
    off = jnp.where(below[None, None, None, :, :, None, None], off, 0.0)
    # exact diagonal sub-blocks
    tri = jnp.tril(jnp.ones((bc, bc), bool))
    diff = cs[:, :, :, :, None] - cs[:, :, :, None, :]  # [B,N,NC,BCq,BCk,H,K]
    diff = jnp.where(tri[None, None, None, :, :, None, None], diff, 0.0)
    diag = jnp.einsum("bnarhk,bnajhk,bnarjhk->bnharj", qs, ks, jnp.exp(diff))
    diag = jnp.where(tri, diag, 0.0)
    eye = jnp.eye(nc, dtype=diag.dtype)
    blocks = off + eye[None, None, None, :, :, None, None] * diag[:, :, :, :, None]
    return blocks.transpose(0, 1, 2, 3, 5, 4, 6).reshape(b, n, h, c, c)


def _chunk_states(k_decayed, v, chunk_decay, s0):
    """Inter-chunk recurrence S_[i] = exp(gamma_i) S_[i-1] + (K exp(gamma - L))^T V (GLA §4.2).

    k_decayed: [B,N,C,H,K]; v: [B,N,C,H,V]; chunk_decay: [B,N,H,K] = exp(gamma).
    Returns (states before each chunk [B,N,H,K,V], final state [B,H,K,V]).
    """
    updates = jnp.einsum("bnchk,bnchv->nbhkv", k_decayed, v)

    def step(state, inputs):
        upd, decay = inputs
        return decay[..., None] * state + upd, state

    final, before = jax.lax.scan(step, s0, (updates, jnp.moveaxis(chunk_decay, 1, 0)))
    return jnp.moveaxis(before, 0, 1), final


def _chunk_document_masks(segment_ids, q, n, c, t_pad, dtype):
    """Per-chunk document masks for the chunked forms, or None for one document.

    carry [B,N,C,1,1]: the token continues the document of the state entering its chunk;
    to_state [B,N,C,1,1]: the token is in the chunk's last document (reaches the next state);
    keep [B,N,1,1]: no reset inside the chunk (the entering state survives it);
    same [B,N,1,C,C]: query and key tokens are in the same document.
    """
    doc = document_index(segment_ids, q)
    if doc is None:
        return None
    b = q.shape[0]
    doc = jnp.pad(doc, ((0, 0), (0, t_pad)), mode="edge").reshape(b, n, c)
    last = doc[:, :, -1]
    entering = jnp.concatenate([jnp.zeros_like(last[:, :1]), last[:, :-1]], axis=1)
    as_float = lambda m: m.astype(dtype)  # noqa: E731
    return dict(
        carry=as_float(doc == entering[:, :, None])[..., None, None],
        to_state=as_float(doc == last[:, :, None])[..., None, None],
        keep=as_float(last == entering)[..., None, None],
        same=as_float(doc[:, :, :, None] == doc[:, :, None, :])[:, :, None],
    )


def gla_chunked(q, k, v, log_alpha, *, chunk_size=64, scale=None, initial_state=None,
                segment_ids=None):
    """Chunkwise-parallel GLA (Yang et al. 2024, §4.2 with secondary-level chunking).

    Per chunk [i] with within-chunk cumulative log gate L (restarted each chunk, <= 0):
        O_[i] = (scale Q ⊙ exp(L)) S_[i-1] + (P ⊙ M) V,    P from `_intra_chunk_scores`
        S_[i] = Diag(exp(L_C)) S_[i-1] + (K ⊙ exp(L_C - L))^T V
    Any T (zero-padded to a multiple of chunk_size: zero keys and zero log gates change nothing).
    With segment_ids, M also requires the same document and S_[i-1] reaches only the tokens that
    continue its document (`_chunk_document_masks`).
    chunk_size: a power of two; sub-chunks of min(16, chunk_size). Returns (out, final_state).
    """
    _check(q, k, v, log_alpha, initial_state)
    _check_chunk(chunk_size)
    dt = _compute_dtype(q, k, v, log_alpha, initial_state)
    b, t, h, dk = q.shape
    dv = v.shape[-1]
    c = chunk_size
    t_pad = -t % c
    n = (t + t_pad) // c
    qs = q.astype(dt) * _scale(q, scale)
    qs, ks, vs, g = (_pad_time(x.astype(dt), t_pad) for x in (qs, k, v, log_alpha))
    qs, ks, g = (x.reshape(b, n, c, h, dk) for x in (qs, ks, g))
    vs = vs.reshape(b, n, c, h, dv)
    cum = jnp.cumsum(g, axis=2)  # [B,N,C,H,K]
    total = cum[:, :, -1]  # [B,N,H,K]
    s0 = _zeros_state(q, v, dt) if initial_state is None else initial_state.astype(dt)
    docs = _chunk_document_masks(segment_ids, q, n, c, t_pad, dt)
    k_dec, chunk_decay = ks * jnp.exp(total[:, :, None] - cum), jnp.exp(total)
    if docs is not None:
        k_dec, chunk_decay = k_dec * docs["to_state"], chunk_decay * docs["keep"]
    before, final = _chunk_states(k_dec, vs, chunk_decay, s0)
    inter = jnp.einsum("bnchk,bnhkv->bnchv", qs * jnp.exp(cum), before)
    scores = _intra_chunk_scores(qs, ks, cum)
    if docs is not None:
        inter, scores = inter * docs["carry"], scores * docs["same"]
    intra = jnp.einsum("bnhrj,bnjhv->bnrhv", scores, vs)
    out = (inter + intra).reshape(b, n * c, h, dv)[:, :t]
    return out.astype(q.dtype), final


# ------------------------------------------------------------------------------------------------
# Scalar-gated special cases: simple GLA and RetNet retention
# ------------------------------------------------------------------------------------------------
def simple_gla_chunked(q, k, v, log_gamma, *, chunk_size=64, scale=None, initial_state=None,
                       segment_ids=None):
    """GLA with one gate per head and token, log_gamma: [B,T,H] (<= 0). A scalar gate lets the
    intra-chunk decay be a [C,C] matrix exp(L_r - L_j) (masked), so no sub-chunking is needed
    (fla `simple_gla`; Mamba-2 SSD). log_gamma = 0 is plain linear attention. segment_ids: as
    `gla_chunked`."""
    _check(q, k, v, log_gamma, initial_state, gate_shape="head")
    _check_chunk(chunk_size)
    dt = _compute_dtype(q, k, v, log_gamma, initial_state)
    b, t, h, dk = q.shape
    dv = v.shape[-1]
    c = chunk_size
    t_pad = -t % c
    n = (t + t_pad) // c
    qs = q.astype(dt) * _scale(q, scale)
    qs, ks, vs, g = (_pad_time(x.astype(dt), t_pad) for x in (qs, k, v, log_gamma))
    qs, ks = (x.reshape(b, n, c, h, dk) for x in (qs, ks))
    vs = vs.reshape(b, n, c, h, dv)
    cum = jnp.cumsum(g.reshape(b, n, c, h), axis=2)  # [B,N,C,H]
    total = cum[:, :, -1]
    s0 = _zeros_state(q, v, dt) if initial_state is None else initial_state.astype(dt)
    k_dec = ks * jnp.exp(total[:, :, None] - cum)[..., None]
    chunk_decay = jnp.broadcast_to(jnp.exp(total)[..., None], (b, n, h, dk))
    docs = _chunk_document_masks(segment_ids, q, n, c, t_pad, dt)
    if docs is not None:
        k_dec, chunk_decay = k_dec * docs["to_state"], chunk_decay * docs["keep"]
    before, final = _chunk_states(k_dec, vs, chunk_decay, s0)
    inter = jnp.einsum("bnchk,bnhkv->bnchv", qs * jnp.exp(cum)[..., None], before)
    causal = jnp.tril(jnp.ones((c, c), bool))
    diff = cum[:, :, :, None] - cum[:, :, None, :]  # [B,N,Cq,Ck,H]
    decay = jnp.exp(jnp.where(causal[None, None, :, :, None], diff, -jnp.inf))
    scores = jnp.einsum("bnrhk,bnjhk,bnrjh->bnhrj", qs, ks, decay)
    if docs is not None:
        inter, scores = inter * docs["carry"], scores * docs["same"]
    intra = jnp.einsum("bnhrj,bnjhv->bnrhv", scores, vs)
    out = (inter + intra).reshape(b, n * c, h, dv)[:, :t]
    return out.astype(q.dtype), final


def _broadcast_head_gate(q, log_gamma):
    _check(q, q, q, log_gamma, gate_shape="head")
    return jnp.broadcast_to(log_gamma[..., None], q.shape)


def simple_gla_recurrent(q, k, v, log_gamma, *, scale=None, initial_state=None,
                         segment_ids=None):
    """Scalar-gated GLA by the recurrence: `gla_recurrent` with the gate broadcast over Dk."""
    return gla_recurrent(q, k, v, _broadcast_head_gate(q, log_gamma), scale=scale,
                         initial_state=initial_state, segment_ids=segment_ids)


def simple_gla_parallel(q, k, v, log_gamma, *, scale=None, initial_state=None, segment_ids=None):
    """O = (scale Q K^T ⊙ D) V with D_tj = exp(G_t - G_j) for j <= t (fla naive_parallel), and j in
    t's document when segment_ids are given."""
    _check(q, k, v, log_gamma, initial_state, gate_shape="head")
    dt = _compute_dtype(q, k, v, log_gamma, initial_state)
    q, k, v, g = (x.astype(dt) for x in (q, k, v, log_gamma))
    sc = _scale(q, scale)
    cum = jnp.cumsum(g, axis=1)  # [B,T,H]
    visible, first_doc, last_doc = _document_masks(segment_ids, q)
    diff = cum[:, :, None] - cum[:, None, :]  # [B,Tq,Tk,H]
    decay = jnp.exp(jnp.where(visible[..., None], diff, -jnp.inf))
    scores = jnp.einsum("bthk,bshk,btsh->bhts", q, k, decay) * sc
    out = jnp.einsum("bhts,bshv->bthv", scores, v)
    s0 = _zeros_state(q, v, dt) if initial_state is None else initial_state.astype(dt)
    from_s0 = q * (jnp.exp(cum) * first_doc[..., None])[..., None]
    out = out + sc * jnp.einsum("bthk,bhkv->bthv", from_s0, s0)
    decay_T = (jnp.exp(cum[:, -1:] - cum) * last_doc[..., None])[..., None]
    s0_decay = jnp.exp(cum[:, -1]) * first_doc[:, -1:]
    final = s0_decay[..., None, None] * s0 + jnp.einsum("bthk,bthv->bhkv", k * decay_T, v)
    return out.astype(q.dtype), final


def retention_log_gamma(num_heads: int) -> jax.Array:
    """RetNet's per-head decays gamma_h = 1 - 2^(-5-h), h = 0..H-1 (Sun et al. 2023, §3.1), logged."""
    return jnp.log1p(-(2.0 ** (-5.0 - np.arange(num_heads))))


def retention(q, k, v, *, form="chunked", chunk_size=64, scale=None, initial_state=None):
    """RetNet retention (eq. 5): simple GLA with a constant gate gamma_h per head (no xPos here).

    form: "recurrent" | "parallel" | "chunked". Returns (out, final_state).
    """
    b, t, h, _ = q.shape
    log_gamma = jnp.broadcast_to(retention_log_gamma(h).astype(_compute_dtype(q)), (b, t, h))
    kw = dict(scale=scale, initial_state=initial_state)
    if form == "recurrent":
        return simple_gla_recurrent(q, k, v, log_gamma, **kw)
    if form == "parallel":
        return simple_gla_parallel(q, k, v, log_gamma, **kw)
    if form == "chunked":
        return simple_gla_chunked(q, k, v, log_gamma, chunk_size=chunk_size, **kw)
    raise ValueError(f"form={form!r}; expected 'recurrent', 'parallel' or 'chunked'")
