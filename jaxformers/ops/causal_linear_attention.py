"""Causal linear attention (Katharopoulos et al. 2020, arXiv 2006.16236, eqs. 4-7) as pure functions.

    S_t = S_{t-1} + phi(k_t)^T v_t,      o_t = phi(q_t) S_t  [/ (phi(q_t) z_t + eps), z_t = sum phi(k_j)]

It is gated linear attention with a zero log-gate, so every form here is the matching scalar-gated
form of `ops/linear_attention.py` (recurrent, parallel, chunked) after the feature map; packed
documents (`segment_ids`) reset the state the same way.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxformers.ops.linear_attention import (
    _compute_dtype,
    simple_gla_chunked,
    simple_gla_parallel,
    simple_gla_recurrent,
)

FEATURE_MAPS: dict[str, Callable] = {
    "identity": lambda x: x,
    "elu_plus_one": lambda x: jax.nn.elu(x) + 1.0,  # Katharopoulos et al. 2020, eq. 7
    "relu": jax.nn.relu,
}


def apply_feature_map(x, feature_map):
    if feature_map is None:
        return x
    if callable(feature_map):
        return feature_map(x)
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"feature_map={feature_map!r}; expected one of {sorted(FEATURE_MAPS)}")
    return FEATURE_MAPS[feature_map](x)


def _linear_attention(form_fn, q, k, v, *, scale, initial_state, normalize, feature_map, eps,
                      segment_ids=None):
    """Shared wrapper: feature map, then (optionally) normalisation by a ones column in v.

    With normalize=True, o_t = q_t S_t / (q_t z_t + eps) with z_t = sum_{j<=t} phi(k_j) (eq. 6);
    z is carried as an extra value column, so the state is [B,H,Dk,Dv+1] (last column = z).
    """
    q, k = apply_feature_map(q, feature_map), apply_feature_map(k, feature_map)
    if normalize:
        v = jnp.concatenate([v, jnp.ones(v.shape[:-1] + (1,), v.dtype)], axis=-1)
    out, state = form_fn(q, k, v, scale=scale, initial_state=initial_state,
                         segment_ids=segment_ids)
    if normalize:
        out = (out[..., :-1] / (out[..., -1:] + eps)).astype(out.dtype)
    return out, state


def _zero_gate(form):
    def fn(q, k, v, **kw):
        return form(q, k, v, jnp.zeros(q.shape[:3], _compute_dtype(q)), **kw)

    return fn


def linear_attention_recurrent(q, k, v, *, scale=None, initial_state=None, normalize=False,
                               feature_map=None, eps=1e-6, segment_ids=None):
    """Causal linear attention by the recurrence S_t = S_{t-1} + phi(k_t)^T v_t (eq. 4-6)."""
    return _linear_attention(_zero_gate(simple_gla_recurrent), q, k, v, scale=scale,
                             initial_state=initial_state, normalize=normalize,
                             feature_map=feature_map, eps=eps, segment_ids=segment_ids)


def linear_attention_parallel(q, k, v, *, scale=None, initial_state=None, normalize=False,
                              feature_map=None, eps=1e-6, segment_ids=None):
    """Causal linear attention as (phi(Q) phi(K)^T ⊙ M) V (quadratic in T)."""
    return _linear_attention(_zero_gate(simple_gla_parallel), q, k, v, scale=scale,
                             initial_state=initial_state, normalize=normalize,
                             feature_map=feature_map, eps=eps, segment_ids=segment_ids)


def linear_attention_chunked(q, k, v, *, chunk_size=64, scale=None, initial_state=None,
                             normalize=False, feature_map=None, eps=1e-6, segment_ids=None):
    """Causal linear attention chunkwise: inter-chunk state + masked intra-chunk matmul."""
    def form(q, k, v, log_gamma, **kw):
        return simple_gla_chunked(q, k, v, log_gamma, chunk_size=chunk_size, **kw)

    return _linear_attention(_zero_gate(form), q, k, v, scale=scale,
                             initial_state=initial_state, normalize=normalize,
                             feature_map=feature_map, eps=eps, segment_ids=segment_ids)
