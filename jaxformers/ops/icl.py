"""In-context linear regression: task sampler and closed-form / fitted baselines.

Task (von Oswald et al. 2023 §2; Zhang, Frei & Bartlett 2024 §2): w ~ N(0, w_scale^2 I_d),
x_i ~ N(0, Λ) or U(-r, r)^d, y_i = w·x_i + ε_i (ε ~ N(0, σ²)), N context points and one query.
Tokens e_i = (x_i, y_i), e_q = (x_q, 0): [B, N+1, d+1]. All losses here are ½·mean (ŷ - y_q)²
(the vO and ZFB convention; Ahn et al. report mean without ½).

Baselines are computed, never typed in: the zero predictor; k-step GD from w = 0 with a tuned
rate; one step of GD preconditioned by Γ^{-1} (the 1-layer LSA optimum, ZFB Thm. 4.1 / Ahn et
al. Thm. 1); OLS and ridge; plus the closed-form optimum of one-layer LSA for Gaussian x.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def sample_tasks(
    rng,
    batch: int,
    d: int,
    n: int,
    *,
    x_dist: str = "gaussian",
    x_range: float = 1.0,
    covariance=None,
    noise_std: float = 0.0,
    w_scale: float = 1.0,
    dtype=jnp.float32,
) -> dict:
    """Draw `batch` regression tasks. covariance: None (I), a [d] diagonal or a [d, d] matrix
    (gaussian only); x_range r: x ~ U(-r, r) for x_dist="uniform" (vO's code uses r = 0.5).

    Returns x [B,N+1,d] (query last), y [B,N+1] (noisy labels), w [B,d].
    """
    if x_dist not in ("gaussian", "uniform"):
        raise ValueError(f"x_dist={x_dist!r}; expected 'gaussian' or 'uniform'")
    kx, kw, ke = jax.random.split(rng, 3)
    if x_dist == "uniform":
        if covariance is not None:
            raise ValueError("covariance is only supported with x_dist='gaussian'")
        x = jax.random.uniform(kx, (batch, n + 1, d), dtype, -x_range, x_range)
    else:
        x = jax.random.normal(kx, (batch, n + 1, d), dtype)
        if covariance is not None:
            x = x @ covariance_sqrt(covariance, d).T.astype(dtype)
    w = w_scale * jax.random.normal(kw, (batch, d), dtype)
    y = jnp.einsum("bnd,bd->bn", x, w) + noise_std * jax.random.normal(ke, (batch, n + 1), dtype)
    return {"x": x, "y": y, "w": w}


def covariance_matrix(covariance, d: int) -> np.ndarray:
    if covariance is None:
        return np.eye(d)
    c = np.asarray(covariance, np.float64)
    if c.shape == (d,):
        return np.diag(c)
    if c.shape != (d, d):
        raise ValueError(f"covariance must be [d]={d} diagonal or [d, d]; got shape {c.shape}")
    return c


def covariance_sqrt(covariance, d: int) -> jnp.ndarray:
    return jnp.asarray(np.linalg.cholesky(covariance_matrix(covariance, d)))


def to_tokens(x, y):
    """x [B,N+1,d], y [B,N+1] -> tokens [B,N+1,d+1] with the query label zeroed."""
    y_in = y.at[:, -1].set(0.0)
    return jnp.concatenate([x, y_in[..., None]], axis=-1)


def half_mse(pred, target):
    return 0.5 * jnp.mean((pred - target) ** 2)


# --- closed forms (Gaussian x, w ~ N(0, I), no noise) --------------------------------------------
def lsa_gamma(covariance, d: int, n: int) -> np.ndarray:
    """Γ = (1 + 1/N) Λ + tr(Λ)/N · I  (ZFB 2024, Thm. 4.1); the optimum is u W^KQ_11 = Γ^{-1}."""
    lam = covariance_matrix(covariance, d)
    return (1 + 1 / n) * lam + np.trace(lam) / n * np.eye(d)


def lsa_optimal_loss(covariance, d: int, n: int, noise_std: float = 0.0) -> float:
    """½ E(ŷ - y_q)² of the best 1-layer LSA, ŷ = x_q^T Γ^{-1} (1/N) Σ y_i x_i:
    ½ [tr Λ - tr(Γ^{-1} Λ²)]  (+ noise terms for σ > 0: Γ gains σ²/N·I, target gains σ²)."""
    lam = covariance_matrix(covariance, d)
    gamma = lsa_gamma(covariance, d, n) + noise_std**2 / n * np.eye(d)
    return 0.5 * float(np.trace(lam) - np.trace(np.linalg.solve(gamma, lam @ lam)) + noise_std**2)


def gd_optimal_rate_independent(d: int, n: int, sigma2: float, mu4: float):
    """Best 1-step GD rate and its ½-loss for x with i.i.d. symmetric coordinates, w ~ N(0, I):
    c = (1 - 1/N) σ⁴ + (μ4 + (d-1) σ⁴)/N, η* = σ²/c, loss = ½ σ² d (1 - σ⁴/c)."""
    c = (1 - 1 / n) * sigma2**2 + (mu4 + (d - 1) * sigma2**2) / n
    return sigma2 / c, 0.5 * sigma2 * d * (1 - sigma2**2 / c)


def uniform_moments(r: float):
    """σ² = E x², μ4 = E x⁴ of U(-r, r)."""
    return r * r / 3, r**4 / 5


# --- predictors ---------------------------------------------------------------------------------
def gd_predict(x, y, lr, steps: int = 1, preconditioner=None):
    """k steps of (preconditioned) GD from w = 0 on L(w) = 1/(2N) Σ (w·x_i - y_i)²:
    w ← w - lr · A (1/N) X^T (X w - y); predict x_q · w. x [B,N+1,d], y [B,N+1] -> [B]."""
    xc, yc, xq = x[:, :-1], y[:, :-1], x[:, -1]
    n = xc.shape[1]
    a = jnp.eye(x.shape[-1], dtype=x.dtype) if preconditioner is None else preconditioner

    def step(w, _):
        grad = jnp.einsum("bnd,bn->bd", xc, jnp.einsum("bnd,bd->bn", xc, w) - yc) / n
        return w - lr * grad @ a.T, None

    w, _ = jax.lax.scan(step, jnp.zeros(xq.shape, x.dtype), None, length=steps)
    return jnp.einsum("bd,bd->b", xq, w)


def gd_plus_plus_predict(x, y, lrs, gammas):
    """K layers of GD++ (von Oswald et al. 2023, arXiv 2212.07677, §4), one per entry of lrs /
    gammas, the function of K stacked `lsa.gd_plus_plus_lsa_params` layers. From the same state,
    layer l moves the residuals r_j = y_j - w·x_j and the query slot q = -w·x_q one GD step,
    r <- r - lr_l X (X^T r)/N, q <- q - lr_l x_q·(X^T r)/N, and transforms every input by
    x <- (I - γ_l Σ̂) x with Σ̂ = X^T X / N (the curvature correction). Predicts -q. With γ = 0
    this is len(lrs) steps of `gd_predict`. x [B,N+1,d], y [B,N+1] -> [B]."""
    xc, r, xq = x[:, :-1], y[:, :-1], x[:, -1]
    n = xc.shape[1]
    q = jnp.zeros(xq.shape[:1], x.dtype)

    def layer(state, rates):
        xc, xq, r, q = state
        lr, gamma = rates
        h = jnp.einsum("bnd,bn->bd", xc, r) / n  # X^T r / N
        sigma = jnp.einsum("bnd,bne->bde", xc, xc) / n
        r_new = r - lr * jnp.einsum("bnd,bd->bn", xc, h)
        q_new = q - lr * jnp.einsum("bd,bd->b", xq, h)
        xc_new = xc - gamma * jnp.einsum("bnd,bde->bne", xc, sigma)
        xq_new = xq - gamma * jnp.einsum("bd,bde->be", xq, sigma)
        return (xc_new, xq_new, r_new, q_new), None

    rates = (jnp.asarray(lrs, x.dtype), jnp.asarray(gammas, x.dtype))
    (_, _, _, q), _ = jax.lax.scan(layer, (xc, xq, r, q), rates)
    return -q


def fit_gd_plus_plus(x, y, layers: int, iters: int = 1000, lr0=None):
    """Per-layer rates (lr_l, γ_l) of `gd_plus_plus_predict` that minimise the ½-MSE on the tasks
    (x, y), by Adam from (lr0, 0): von Oswald et al. 2023 train exactly these two scalars per
    layer (the diagonal, mean-tied GD++ update). lr0 defaults to the tuned `layers`-step GD rate.
    Returns (lrs [K], gammas [K], loss)."""
    lr0 = tune_gd_rate(x, y, layers)[0] if lr0 is None else lr0
    opt = optax.adam(0.01)

    def loss(theta, x, y):  # rates in units of lr0, so one Adam step size suits every preset
        return half_mse(gd_plus_plus_predict(x, y, lr0 * theta[0], lr0 * theta[1]), y[:, -1])

    @jax.jit  # the tasks are arguments, not constants folded into the program
    def fit(theta, x, y):
        def step(carry, _):
            theta, state = carry
            updates, state = opt.update(jax.grad(loss)(theta, x, y), state)
            return (optax.apply_updates(theta, updates), state), None

        (theta, _), _ = jax.lax.scan(step, (theta, opt.init(theta)), None, length=iters)
        return theta, loss(theta, x, y)

    theta, final = fit(jnp.stack([jnp.ones(layers, x.dtype), jnp.zeros(layers, x.dtype)]), x, y)
    return lr0 * theta[0], lr0 * theta[1], float(final)


def ols_predict(x, y):
    """Least squares (minimum-norm when N < d): w = pinv(X) y."""
    w = jnp.einsum("bdn,bn->bd", jnp.linalg.pinv(x[:, :-1]), y[:, :-1])
    return jnp.einsum("bd,bd->b", x[:, -1], w)


def ridge_predict(x, y, lam: float):
    """w = (X^T X + λ I)^{-1} X^T y; λ = σ²/τ² is the Bayes posterior mean for w ~ N(0, τ² I)."""
    xc, yc = x[:, :-1], y[:, :-1]
    gram = jnp.einsum("bnd,bne->bde", xc, xc) + lam * jnp.eye(x.shape[-1], dtype=x.dtype)
    w = jnp.linalg.solve(gram, jnp.einsum("bnd,bn->bd", xc, yc)[..., None])[..., 0]
    return jnp.einsum("bd,bd->b", x[:, -1], w)


def tune_gd_rate(x, y, steps: int = 1, grid=None):
    """Best GD rate on the given tasks. One step: ŷ = η a is linear in η, so η* = <a,y>/<a,a>
    exactly; k steps: the best point of `grid` (default 64 points up to 2× the 1-step η*)."""
    a = gd_predict(x, y, 1.0, 1)
    eta1 = float(jnp.sum(a * y[:, -1]) / jnp.sum(a * a))
    if steps == 1:
        return eta1, float(half_mse(eta1 * a, y[:, -1]))
    grid = np.linspace(0.02, 2.0, 64) * eta1 if grid is None else np.asarray(grid)
    losses = jax.vmap(lambda lr: half_mse(gd_predict(x, y, lr, steps), y[:, -1]))(jnp.asarray(grid, x.dtype))
    i = int(jnp.nanargmin(losses))
    return float(grid[i]), float(losses[i])


def fit_preconditioner(x, y):
    """Least-squares fit of A in ŷ = x_q^T A (1/N) X^T y over the tasks: the empirical best
    1-layer LSA predictor (its function class, ZFB §3), without training."""
    h = jnp.einsum("bnd,bn->bd", x[:, :-1], y[:, :-1]) / (x.shape[1] - 1)
    feats = jnp.einsum("bi,bj->bij", x[:, -1], h).reshape(x.shape[0], -1)
    sol = jnp.linalg.lstsq(feats, y[:, -1])[0]
    return sol.reshape(x.shape[-1], x.shape[-1])


def baselines(x, y, *, covariance=None, noise_std: float = 0.0, gd_steps=(1, 2, 4)) -> dict:
    """½-MSE of every baseline on the tasks (x, y) [noisy y_q is the target]."""
    d, n = x.shape[-1], x.shape[1] - 1
    target = y[:, -1]
    out = {"zero": float(half_mse(jnp.zeros_like(target), target))}
    for k in gd_steps:
        lr, loss = tune_gd_rate(x, y, k)
        out[f"gd{k}_lr"], out[f"gd{k}"] = lr, loss
    gamma_inv = jnp.asarray(np.linalg.inv(lsa_gamma(covariance, d, n)), x.dtype)
    out["preconditioned_gd"] = float(half_mse(gd_predict(x, y, 1.0, 1, gamma_inv), target))
    out["ols"] = float(half_mse(ols_predict(x, y), target))
    out["ridge"] = float(half_mse(ridge_predict(x, y, max(noise_std**2, 1e-6)), target))
    return out
