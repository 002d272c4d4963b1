"""Linear self-attention (LSA), the one-layer model of the in-context-learning papers: von Oswald et
al. 2023 (arXiv 2212.07677) and Zhang, Frei & Bartlett 2024 (arXiv 2306.09927)."""

import jax.numpy as jnp


def linear_self_attention(tokens, params, *, include_query_as_key=False, normalize_by_context=False):
    """One LSA layer with residual, no softmax / norm / MLP. tokens: [B, T, D]; the last token is
    the query, keys/values come from the first T-1 (context) tokens unless include_query_as_key.

    params, row-vector convention, each [D, D]:
      {"query", "key", "value", "projection"} (von Oswald et al. 2023, eq. 6):
          e_j <- e_j + sum_i ((e_j W_Q)·(e_i W_K)) (e_i W_V) W_P
      {"kq", "pv"} (Zhang, Frei & Bartlett 2024, eq. 3.2, merged matrices, column form):
          e_j <- e_j + sum_i (e_i^T W_KQ e_j) W_PV e_i
    normalize_by_context divides the sum by the number of keys (ZFB's 1/N).
    """
    keys = tokens if include_query_as_key else tokens[:, :-1]
    if set(params) == {"kq", "pv"}:
        scores = jnp.einsum("bid,de,bje->bji", keys, params["kq"], tokens)
        update = scores @ (keys @ params["pv"].T)
    elif set(params) == {"query", "key", "value", "projection"}:
        scores = jnp.einsum("bjd,bid->bji", tokens @ params["query"], keys @ params["key"])
        update = scores @ (keys @ params["value"]) @ params["projection"]
    else:
        raise ValueError(
            f"params must have keys {{query, key, value, projection}} or {{kq, pv}}; got {sorted(params)}"
        )
    if normalize_by_context:
        update = update / keys.shape[1]
    return tokens + update


def gd_lsa_params(d: int, lr: float, num_context: int, dtype=jnp.float32) -> dict:
    """von Oswald et al. (2023, Prop. 1) weights that make one LSA layer one GD step from w = 0
    on L(w) = 1/(2N) sum (w·x_i - y_i)^2 with rate lr: W_Q = W_K = [[I, 0], [0, 0]], value of
    token i = (0, -y_i), W_P scales it by lr/N. Read the prediction as -e_q[-1] (negated)."""
    eye = jnp.zeros((d + 1, d + 1), dtype).at[:d, :d].set(jnp.eye(d, dtype=dtype))
    corner = jnp.zeros((d + 1, d + 1), dtype)
    return {
        "query": eye,
        "key": eye,
        "value": corner.at[d, d].set(-1.0),
        "projection": corner.at[d, d].set(lr / num_context),
    }


def gd_plus_plus_lsa_params(d: int, lr: float, gamma: float, num_context: int, dtype=jnp.float32) -> dict:
    """One LSA layer that is one step of GD++ (von Oswald et al. 2023, §4): the GD step of
    `gd_lsa_params` plus the input transformation x_j <- x_j - γ/N Σ_i (x_j·x_i) x_i, i.e.
    x <- (I - γ X^T X / N) x for context and query alike. W_V = -I, W_P = diag(γ/N · I_d, lr/N)."""
    params = gd_lsa_params(d, lr, num_context, dtype)
    scale = jnp.full((d + 1,), gamma / num_context, dtype).at[d].set(lr / num_context)
    return params | {"value": -jnp.eye(d + 1, dtype=dtype), "projection": jnp.diag(scale)}
