"""Learning-algorithm baselines for in-context learning, at every prefix of every prompt.

Prompts are xs [B, n, d], ys [B, n]. The prediction at example i is fitted on the first i pairs
(x_j, y_j), j < i, and evaluated at x_i: out [B, n], with 0 at i = 0 (Garg, Tsipras, Liang &
Valiant 2022, arXiv 2208.01066, §3 and their `get_relevant_baselines`). All prefixes are computed
at once with a row mask m_ij = [j < i], so everything is shape-static and vectorised.
"""

import jax
import jax.numpy as jnp


def prefix_mask(n: int, dtype=jnp.float32) -> jax.Array:
    """m [n, n]: m[i, j] = 1 when example j is in the context of example i (j < i)."""
    return jnp.tril(jnp.ones((n, n), dtype), k=-1)


def _masked(xs, ys):
    """Per prefix: X_i = diag(m_i) X [B, n, n, d] and y_i = m_i * y [B, n, n]."""
    m = prefix_mask(xs.shape[1], xs.dtype)
    return m[None, :, :, None] * xs[:, None], m[None] * ys[:, None]


def _predict(xs, w):
    """w [B, n, d] (one weight vector per prefix) -> x_i · w_i [B, n]."""
    return jnp.einsum("bid,bid->bi", xs, w)


def ols_weights(xs, ys):
    """Minimum-norm least squares per prefix, w_i = pinv(X_{<i}) y_{<i} (Garg et al. 2022 §3:
    `torch.linalg.lstsq`, minimum norm for i < d). -> [B, n, d]"""
    xm, ym = _masked(xs, ys)
    return jnp.einsum("bidj,bij->bid", jnp.linalg.pinv(xm), ym)


def ols_predict(xs, ys):
    return _predict(xs, ols_weights(xs, ys))


def ridge_weights(xs, ys, lam: float):
    """w_i = (X_{<i}^T X_{<i} + λI)^{-1} X_{<i}^T y_{<i}. With y = w·x + N(0, σ²) and w ~ N(0, τ²I)
    this is the posterior mean for λ = σ²/τ² (the Bayes-optimal predictor, Akyürek et al. 2023,
    arXiv 2211.15661, §2 eq. 3)."""
    xm, ym = _masked(xs, ys)
    d = xs.shape[-1]
    gram = jnp.einsum("bijd,bije->bide", xm, xm) + lam * jnp.eye(d, dtype=xs.dtype)
    rhs = jnp.einsum("bijd,bij->bid", xm, ym)
    return jnp.linalg.solve(gram, rhs[..., None])[..., 0]


def ridge_predict(xs, ys, lam: float):
    return _predict(xs, ridge_weights(xs, ys, lam))


def bayes_ridge_lambda(noise_std: float, w_scale: float) -> float:
    """λ = σ²/τ² of the Gaussian-prior posterior mean (Akyürek et al. 2023 §2)."""
    return noise_std**2 / w_scale**2


def lasso_weights(xs, ys, lam: float, iters: int = 500):
    """Lasso per prefix, argmin_w 1/(2i) ||X_{<i} w - y_{<i}||² + λ ||w||₁ (sklearn's objective, as
    Garg et al. 2022 use with fit_intercept=False), by `iters` fixed steps of FISTA (Beck & Teboulle
    2009, §4) with step 1/L, L = ||X_{<i}||₂² / i. Prefix 0 returns w = 0."""
    xm, ym = _masked(xs, ys)
    n = xs.shape[1]
    count = jnp.maximum(jnp.arange(n, dtype=xs.dtype), 1.0)[None, :, None]  # i, for prefix i
    gram = jnp.einsum("bijd,bije->bide", xm, xm) / count[..., None]
    xty = jnp.einsum("bijd,bij->bid", xm, ym) / count
    lip = jnp.max(jnp.linalg.eigvalsh(gram), axis=-1, keepdims=True)
    step = 1.0 / jnp.maximum(lip, jnp.finfo(xs.dtype).tiny)

    def soft(v, t):
        return jnp.sign(v) * jnp.maximum(jnp.abs(v) - t, 0.0)

    def body(carry, _):
        w, z, t = carry
        grad = jnp.einsum("bide,bie->bid", gram, z) - xty
        w_new = soft(z - step * grad, step * lam)
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        z_new = w_new + ((t - 1) / t_new) * (w_new - w)
        return (w_new, z_new, t_new), None

    w0 = jnp.zeros(xs.shape, xs.dtype)
    (w, _, _), _ = jax.lax.scan(body, (w0, w0, jnp.ones((), xs.dtype)), None, length=iters)
    return w


def lasso_predict(xs, ys, lam: float, iters: int = 500):
    return _predict(xs, lasso_weights(xs, ys, lam, iters))


def averaging_predict(xs, ys):
    """w_i = mean_{j<i} y_j x_j (Garg et al. 2022 "averaging"; one GD step from 0 up to scale)."""
    xm, ym = _masked(xs, ys)
    count = jnp.maximum(jnp.arange(xs.shape[1], dtype=xs.dtype), 1.0)[None, :, None]
    return _predict(xs, jnp.einsum("bijd,bij->bid", xm, ym) / count)


def knn_predict(xs, ys, k: int = 3):
    """Uniform average of the labels of the min(k, i) nearest earlier inputs (Euclidean)
    (Garg et al. 2022's 3-NN baseline). -> [B, n]"""
    n = xs.shape[1]
    if not 1 <= k:
        raise ValueError(f"knn k={k} must be >= 1")
    d2 = jnp.sum((xs[:, :, None] - xs[:, None]) ** 2, axis=-1)  # [B, i, j]
    valid = prefix_mask(n, jnp.bool_)[None]
    neg = jnp.where(valid, -d2, -jnp.inf)
    kk = min(k, n)
    top, idx = jax.lax.top_k(neg, kk)  # [B, n, kk]
    use = jnp.isfinite(top)
    labels = jnp.take_along_axis(jnp.broadcast_to(ys[:, None], (*ys.shape, n)), idx, axis=-1)
    total = jnp.sum(jnp.where(use, labels, 0.0), axis=-1)
    return total / jnp.maximum(jnp.sum(use, axis=-1), 1).astype(xs.dtype)


def zero_predict(xs, ys):
    del xs
    return jnp.zeros_like(ys)


def squared_error_curve(pred, ys, scale: float = 1.0):
    """Mean over prompts of (ŷ_i - y_i)² / scale at every prefix i: [B, n] -> [n]. Garg et al.
    normalise by d (linear, ReLU) or k (sparse), so the zero predictor sits at 1."""
    return jnp.mean((pred - ys) ** 2, axis=0) / scale


def disagreement_curve(pred_a, pred_b, scale: float = 1.0):
    """Mean squared disagreement of two learners on the same prompts at every prefix i,
    E (A(D_<i)(x_i) - B(D_<i)(x_i))² / scale: [B, n] x2 -> [n]. Akyürek et al. 2023 (arXiv
    2211.15661, §4) call it the squared prediction difference (SPD); no label enters it."""
    return jnp.mean((pred_a - pred_b) ** 2, axis=0) / scale


def sign_accuracy_curve(pred, ys):
    """Accuracy of sign(ŷ_i) against labels y ∈ {±1} at every prefix i: [B, n] -> [n]. A zero
    prediction (no evidence yet, e.g. every baseline at i = 0) is a tie and scores 1/2, the
    expected accuracy of breaking it by a fair coin, not 0."""
    return jnp.mean((jnp.sign(pred) * ys + 1.0) / 2.0, axis=0)
