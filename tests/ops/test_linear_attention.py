"""Claims about the linear-attention family (ops/linear_attention.py).

Algebraic identities are checked in float64 at 1e-10 (the forms differ only by summation order, so
the error is a few ulps times T); implementations in float32 against that float64 oracle.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops import causal_linear_attention as cla
from jaxformers.ops import linear_attention as la

B, T, H, K, V = 2, 37, 2, 4, 3  # T = 37 is prime: no chunk size divides it except 1


class J:
    """The ops, jitted: one XLA compile per shape instead of one per primitive (3x less CPU)."""

    gla_recurrent = jax.jit(la.gla_recurrent)
    gla_parallel = jax.jit(la.gla_parallel)
    gla_chunked = jax.jit(la.gla_chunked, static_argnames="chunk_size")
    simple_gla_recurrent = jax.jit(la.simple_gla_recurrent)
    simple_gla_parallel = jax.jit(la.simple_gla_parallel)
    simple_gla_chunked = jax.jit(la.simple_gla_chunked, static_argnames="chunk_size")
    retention = jax.jit(la.retention, static_argnames=("form", "chunk_size"))
    linear_attention_recurrent = jax.jit(
        cla.linear_attention_recurrent, static_argnames=("normalize", "feature_map"))
    linear_attention_parallel = jax.jit(
        cla.linear_attention_parallel, static_argnames=("normalize", "feature_map"))
    linear_attention_chunked = jax.jit(
        cla.linear_attention_chunked, static_argnames=("normalize", "feature_map", "chunk_size"))


def _inputs(seed=0, gate_normalizer=1.0, t=T):
    """fla's test distribution: q,k,v,h0 ~ U(0,1), g = logsigmoid(U(0,1)) / normalizer."""
    rng = np.random.default_rng(seed)
    q, k = (jnp.asarray(rng.uniform(size=(B, t, H, K))) for _ in range(2))
    v = jnp.asarray(rng.uniform(size=(B, t, H, V)))
    g = jax.nn.log_sigmoid(jnp.asarray(rng.uniform(size=(B, t, H, K)))) / gate_normalizer
    s0 = jnp.asarray(rng.uniform(size=(B, H, K, V)))
    return q, k, v, g, s0


def _close(a, b, tol=1e-10):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@pytest.mark.parametrize("gate_normalizer", [0.1, 1.0, 10.0])
def test_gla_chunked_and_parallel_equal_recurrent_for_any_chunk_size(gate_normalizer):
    with jax.enable_x64(True):
        q, k, v, g, s0 = _inputs(gate_normalizer=gate_normalizer)
        ref_out, ref_state = J.gla_recurrent(q, k, v, g, initial_state=s0)
        assert ref_out.dtype == jnp.float64 and ref_state.shape == (B, H, K, V)
        for chunk in (1, 8, 16, 64):  # 16 and 64 use sub-chunks; none divides T = 37
            out, state = J.gla_chunked(q, k, v, g, chunk_size=chunk, initial_state=s0)
            _close(out, ref_out)
            _close(state, ref_state)
        out, state = J.gla_parallel(q, k, v, g, initial_state=s0)
        _close(out, ref_out)
        _close(state, ref_state)


def test_gla_chunked_divisible_length_without_initial_state():
    with jax.enable_x64(True):
        q, k, v, g, _ = _inputs(t=64)
        ref = J.gla_recurrent(q, k, v, g)
        for chunk in (16, 32):
            for a, b in zip(J.gla_chunked(q, k, v, g, chunk_size=chunk), ref):
                _close(a, b)


def test_zero_gate_is_linear_attention_and_constant_head_gate_is_retention():
    with jax.enable_x64(True):
        q, k, v, _, s0 = _inputs()
        zero = jnp.zeros_like(q)
        gla = J.gla_chunked(q, k, v, zero, chunk_size=16, initial_state=s0)
        lin = J.linear_attention_recurrent(q, k, v, initial_state=s0)
        for a, b in zip(gla, lin):
            _close(a, b)
        gamma = jnp.broadcast_to(la.retention_log_gamma(H)[None, None, :, None], q.shape)
        gla = J.gla_chunked(q, k, v, gamma, chunk_size=16)
        ret = J.retention(q, k, v, form="recurrent")
        for a, b in zip(gla, ret):
            _close(a, b)
        np.testing.assert_allclose(np.exp(la.retention_log_gamma(2)), [1 - 2**-5, 1 - 2**-6])


def test_scalar_gated_forms_agree():
    with jax.enable_x64(True):
        q, k, v, _, s0 = _inputs()
        log_gamma = jax.nn.log_sigmoid(jnp.asarray(np.random.default_rng(3).normal(size=(B, T, H))))
        ref = J.simple_gla_recurrent(q, k, v, log_gamma, initial_state=s0)
        for got in (
            J.simple_gla_parallel(q, k, v, log_gamma, initial_state=s0),
            J.simple_gla_chunked(q, k, v, log_gamma, chunk_size=8, initial_state=s0),
        ):
            for a, b in zip(got, ref):
                _close(a, b)
        for form in ("parallel", "chunked"):
            _close(J.retention(q, k, v, form=form, chunk_size=16)[0],
                   J.retention(q, k, v, form="recurrent")[0])


@pytest.mark.parametrize("normalize", [False, True])
def test_linear_attention_forms_agree(normalize):
    with jax.enable_x64(True):
        q, k, v, _, _ = _inputs()
        kw = dict(normalize=normalize, feature_map="elu_plus_one")
        ref_out, ref_state = J.linear_attention_recurrent(q, k, v, **kw)
        assert ref_state.shape == (B, H, K, V + int(normalize))  # normaliser z as a last column
        for out, state in (
            J.linear_attention_parallel(q, k, v, **kw),
            J.linear_attention_chunked(q, k, v, chunk_size=16, **kw),
        ):
            _close(out, ref_out, 1e-10 * (1 if normalize else T))  # unnormalised sums grow ~T
            _close(state, ref_state, 1e-10 * T)
        if normalize:  # eq. 6 directly: o_t = sum_j (phi(q_t).phi(k_j)) v_j / sum_j phi(q_t).phi(k_j)
            fq, fk = jax.nn.elu(q) + 1, jax.nn.elu(k) + 1
            w = jnp.einsum("bthk,bshk->bhts", fq, fk) * jnp.tril(jnp.ones((T, T)))
            direct = jnp.einsum("bhts,bshv->bthv", w / w.sum(-1, keepdims=True), v)
            _close(ref_out, direct, 1e-6)  # eps = 1e-6 in the denominator, sums are O(T)


def test_state_carry_equals_one_pass():
    with jax.enable_x64(True):
        q, k, v, g, s0 = _inputs(gate_normalizer=0.5)
        full_out, full_state = J.gla_chunked(q, k, v, g, chunk_size=8, initial_state=s0)
        t1 = 13
        out1, mid = J.gla_chunked(q[:, :t1], k[:, :t1], v[:, :t1], g[:, :t1], chunk_size=8,
                                   initial_state=s0)
        out2, end = J.gla_recurrent(q[:, t1:], k[:, t1:], v[:, t1:], g[:, t1:],
                                     initial_state=mid)
        _close(jnp.concatenate([out1, out2], axis=1), full_out)
        _close(end, full_state)


def test_gradients_of_all_inputs_agree():
    with jax.enable_x64(True):
        q, k, v, g, s0 = _inputs(gate_normalizer=0.1, t=21)
        rng = np.random.default_rng(7)
        d_out = jnp.asarray(rng.normal(size=(B, 21, H, V)))
        d_state = jnp.asarray(rng.normal(size=(B, H, K, V)))

        def loss(fn):  # fla's test: (o . do).sum() + (h_T . dh_T).sum()
            def f(*args):
                out, state = fn(*args[:4], initial_state=args[4])
                return (out * d_out).sum() + (state * d_state).sum()

            return jax.jit(jax.grad(f, argnums=(0, 1, 2, 3, 4)))

        ref = loss(J.gla_recurrent)(q, k, v, g, s0)
        for fn in (lambda *a, **kw: J.gla_chunked(*a, chunk_size=8, **kw), J.gla_parallel):
            for a, b in zip(loss(fn)(q, k, v, g, s0), ref):
                _close(a, b)


def test_float32_and_bfloat16_within_tolerance():
    with jax.enable_x64(True):
        q, k, v, g, s0 = _inputs(gate_normalizer=1.0, t=96)
        ref_out, ref_state = J.gla_recurrent(q, k, v, g, initial_state=s0)
    f32 = [x.astype(jnp.float32) for x in (q, k, v, g, s0)]
    out, state = J.gla_chunked(*f32[:4], initial_state=f32[4])
    # fp32: ~T accumulations of O(1) terms at eps 6e-8 -> relative 1e-5 is generous but tight.
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state, ref_state, rtol=1e-5, atol=1e-5)
    bf = [x.astype(jnp.bfloat16) for x in (q, k, v, g)]
    out_bf, _ = J.gla_chunked(*bf)
    assert out_bf.dtype == jnp.bfloat16
    ref_bf, _ = J.gla_recurrent(*[x.astype(jnp.float32) for x in bf])
    # fla's metric: rel-RMS; bf16 output rounding alone is ~2^-9 / sqrt(3) ~ 1e-3 rel.
    err = jnp.sqrt(jnp.mean((out_bf.astype(jnp.float32) - ref_bf) ** 2) / jnp.mean(ref_bf**2))
    assert float(err) < 5e-3, float(err)


def test_very_strong_gates_stay_finite_in_float32():
    """-50 per token: exp(+-800) over a 16-token block if anything were anchored wrongly."""
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(1, 64, 1, 8)), jnp.float32) for _ in range(2))
    v = jnp.asarray(rng.normal(size=(1, 64, 1, 8)), jnp.float32)
    g = jnp.full_like(q, -50.0)
    out, _ = J.gla_chunked(q, k, v, g, chunk_size=64)
    ref, _ = J.gla_recurrent(q, k, v, g)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    grads = jax.jit(jax.grad(lambda *a: J.gla_chunked(*a)[0].sum(), argnums=(0, 1, 2, 3)))(q, k, v, g)
    assert all(bool(jnp.isfinite(x).all()) for x in grads)


def test_bad_inputs_name_the_argument():
    q, k, v, g, _ = (x.astype(jnp.float32) for x in _inputs())
    with pytest.raises(ValueError, match="q and k"):
        la.gla_recurrent(q, k[..., :2], v, g)
    with pytest.raises(ValueError, match="v must"):
        la.gla_chunked(q, k, v[:, :, :1], g)
    with pytest.raises(ValueError, match="log_alpha must be <= 0"):
        la.gla_chunked(q, k, v, -g)
    with pytest.raises(ValueError, match="chunk_size"):
        la.gla_chunked(q, k, v, g, chunk_size=24)
    with pytest.raises(ValueError, match="initial_state"):
        la.gla_chunked(q, k, v, g, initial_state=jnp.zeros((B, H, V, K)))
    with pytest.raises(ValueError, match="feature_map"):
        cla.linear_attention_chunked(q, k, v, feature_map="tanh")


# Row 0: three documents whose boundaries fall inside chunks of 8 and 16 (and one on a chunk
# start, t=16); row 1: one document. Ids need not be sorted, only constant within a document.
SEGMENTS = np.array([[3] * 10 + [1] * 6 + [7] * 14 + [2] * 7, [4] * T], np.int32)


def _family(name, g):
    """(recurrent, parallel, chunked(chunk)) of one family, as fn(q, k, v, **kw)."""
    if name == "gla":
        return (lambda *a, **kw: J.gla_recurrent(*a, g, **kw),
                lambda *a, **kw: J.gla_parallel(*a, g, **kw),
                lambda c: lambda *a, **kw: J.gla_chunked(*a, g, chunk_size=c, **kw))
    if name == "simple_gla":
        gh = g[..., 0]
        return (lambda *a, **kw: J.simple_gla_recurrent(*a, gh, **kw),
                lambda *a, **kw: J.simple_gla_parallel(*a, gh, **kw),
                lambda c: lambda *a, **kw: J.simple_gla_chunked(*a, gh, chunk_size=c, **kw))
    kw0 = dict(normalize=True, feature_map="elu_plus_one")
    return (lambda *a, **kw: J.linear_attention_recurrent(*a, **kw0, **kw),
            lambda *a, **kw: J.linear_attention_parallel(*a, **kw0, **kw),
            lambda c: lambda *a, **kw: J.linear_attention_chunked(*a, chunk_size=c, **kw0, **kw))


@pytest.mark.parametrize("family", ["gla", "simple_gla", "linear_attention"])
def test_packed_documents_equal_running_each_document_alone(family):
    """segment_ids reset the state at every document start, in every form: the packed outputs
    and final state equal the recurrence run on each document separately (the initial state
    belongs to the first document)."""
    with jax.enable_x64(True):
        q, k, v, g, s0 = _inputs(gate_normalizer=1.0)
        if family == "linear_attention":
            s0 = jnp.concatenate([s0, jnp.ones(s0.shape[:-1] + (1,), s0.dtype)], -1)  # z column
        for row in range(B):
            seg = SEGMENTS[row]
            starts = [0] + [i for i in range(1, T) if seg[i] != seg[i - 1]] + [T]
            outs, state = [], s0[row:row + 1]
            for doc, (lo, hi) in enumerate(zip(starts[:-1], starts[1:])):
                recurrent = _family(family, g[row:row + 1, lo:hi])[0]
                init = state if doc == 0 else jnp.zeros_like(state)
                out, state = recurrent(q[row:row + 1, lo:hi], k[row:row + 1, lo:hi],
                                       v[row:row + 1, lo:hi], initial_state=init)
                outs.append(out)
            want_out, want_state = jnp.concatenate(outs, axis=1), state
            recurrent, parallel, chunked = _family(family, g[row:row + 1])
            segs = jnp.asarray(seg[None])
            for form in (recurrent, parallel, chunked(8), chunked(16)):
                out, state = form(q[row:row + 1], k[row:row + 1], v[row:row + 1],
                                  initial_state=s0[row:row + 1], segment_ids=segs)
                _close(out, want_out)
                _close(state, want_state)
            if row == 0:
                packed_row0 = want_out
        # Without segment_ids row 0 mixes documents: after the first reset the outputs differ.
        mixed = _family(family, g[:1])[0](q[:1], k[:1], v[:1], initial_state=s0[:1])[0]
        np.testing.assert_array_equal(mixed[:, :10], packed_row0[:, :10])
        assert not np.allclose(mixed[:, 10:], packed_row0[:, 10:])
