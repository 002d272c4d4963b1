"""Pure samplers of in-context function-learning prompts: xs [B, n, d], ys [B, n].

Every prompt draws its own function f and n inputs; ys = f(xs). Classes follow Garg, Tsipras,
Liang & Valiant 2022 (arXiv 2208.01066, §3 and App. A.1: linear, sparse linear, 2-layer ReLU nets;
x ~ N(0, I)), Guo et al. 2024 (arXiv 2310.10616, §3: linear functions of a fixed representation) and
Bhattamishra, Patel, Blunsom & Kanade 2024 (arXiv 2310.03016, §3: conjunctions, sparse parities;
x uniform on {±1}^d, y ∈ {±1}).
"""

import jax
import jax.numpy as jnp
import numpy as np


def check_covariance(covariance, d: int, field: str = "covariance") -> np.ndarray:
    """None, a [d] diagonal or a [d, d] matrix -> the symmetric positive-definite [d, d] matrix."""
    if covariance is None:
        return np.eye(d)
    c = np.asarray(covariance, np.float64)
    if c.shape == (d,):
        c = np.diag(c)
    if c.shape != (d, d):
        raise ValueError(f"{field} must be a [d={d}] diagonal or a [d, d] matrix; got shape {c.shape}")
    if not np.allclose(c, c.T) or np.linalg.eigvalsh(c).min() <= 0:
        raise ValueError(
            f"{field} must be symmetric positive definite; smallest eigenvalue "
            f"{np.linalg.eigvalsh((c + c.T) / 2).min():.3g}"
        )
    return c


def curriculum_value(step, start: int, end: int, increment: int, every: int):
    """min(end, start + increment * floor(step / every)): Garg et al. 2022 (arXiv 2208.01066,
    §4 "Curriculum"; their curriculum.py) grow the active dimension and the prompt length by a
    fixed increment every `every` steps. A function of the step alone, so resume is exact.
    Works on Python ints and traced scalars."""
    return jnp.minimum(end, start + increment * (step // every))


def active_mask(d: int, active_dims, dtype=jnp.float32) -> jax.Array:
    """[d]: 1 on the first `active_dims` coordinates, 0 on the rest (None: all active)."""
    if active_dims is None:
        return jnp.ones((d,), dtype)
    return (jnp.arange(d) < active_dims).astype(dtype)


def gaussian_inputs(rng, batch: int, n: int, d: int, covariance=None, dtype=jnp.float32, active_dims=None):
    """x ~ N(0, Σ) (Σ = I by default): [B, n, d]; coordinates >= active_dims are set to 0
    (Garg et al.'s dimension curriculum: the input stays d-dimensional)."""
    x = jax.random.normal(rng, (batch, n, d), dtype)
    if covariance is not None:
        x = x @ jnp.asarray(np.linalg.cholesky(check_covariance(covariance, d)).T, dtype)
    return x if active_dims is None else x * active_mask(d, active_dims, dtype)


def linear(
    rng,
    batch: int,
    n: int,
    d: int,
    *,
    covariance=None,
    noise_std: float = 0.0,
    w_scale: float = 1.0,
    dtype=jnp.float32,
    active_dims=None,
):
    """y = w·x + σε, w ~ N(0, τ² I), x ~ N(0, Σ) (Garg et al. 2022 §3; noise: Akyürek et al. 2023 §2)."""
    kx, kw, ke = jax.random.split(rng, 3)
    x = gaussian_inputs(kx, batch, n, d, covariance, dtype, active_dims)
    w = w_scale * jax.random.normal(kw, (batch, d), dtype)
    y = jnp.einsum("bnd,bd->bn", x, w) + noise_std * jax.random.normal(ke, (batch, n), dtype)
    return x, y


def sparse_linear(rng, batch: int, n: int, d: int, *, k: int = 3, dtype=jnp.float32, active_dims=None):
    """y = w·x with w ~ N(0, I) and all but k uniformly chosen coordinates zeroed (Garg et al. §3).
    Under the dimension curriculum the support is drawn among the active coordinates (their code)."""
    if not 1 <= k <= d:
        raise ValueError(f"sparsity k={k} must satisfy 1 <= k <= d={d}")
    kx, kw, ks = jax.random.split(rng, 3)
    x = gaussian_inputs(kx, batch, n, d, None, dtype, active_dims)
    u = jax.random.uniform(ks, (batch, d)) + 1.0 - active_mask(d, active_dims)  # inactive rank last
    ranks = jnp.argsort(jnp.argsort(u, axis=-1), axis=-1)
    w = jnp.where(ranks < k, jax.random.normal(kw, (batch, d), dtype), 0.0)
    return x, jnp.einsum("bnd,bd->bn", x, w)


def relu_net(rng, batch: int, n: int, d: int, *, hidden: int = 100, dtype=jnp.float32, active_dims=None):
    """y = sqrt(2/h) Σ_r v_r ReLU(w_r·x), W ~ N(0, 1) [d, h], v ~ N(0, 1) [h] (Garg et al. §3)."""
    kx, k1, k2 = jax.random.split(rng, 3)
    x = gaussian_inputs(kx, batch, n, d, None, dtype, active_dims)
    w1 = jax.random.normal(k1, (batch, d, hidden), dtype)
    w2 = jax.random.normal(k2, (batch, hidden), dtype)
    h = jax.nn.relu(jnp.einsum("bnd,bdh->bnh", x, w1))
    return x, jnp.sqrt(2.0 / hidden) * jnp.einsum("bnh,bh->bn", h, w2)


class Representation:
    """Φ: R^d -> R^d, a fixed residual ReLU MLP shared by every prompt (Guo et al. 2024, arXiv
    2310.10616, §3: y = ⟨w, Φ*(x)⟩ + noise with Φ* fixed and w fresh per prompt):

        h_0 = x,   h_l = h_{l-1} + ReLU(h_{l-1} A_l) (l = 1..depth),   Φ(x) = h_depth / c

    A_l ~ N(0, 2/d) [d, d] drawn from `seed`, and c = sqrt(E|h_depth|² / d), estimated once on 4096
    fixed Gaussian inputs, so that E|Φ(x)|² ≈ d like x itself. Hashable by (d, depth, seed), so a
    jitted sampler closes over it without retracing."""

    def __init__(self, d: int, depth: int, seed: int = 0):
        if d < 1 or depth < 1:
            raise ValueError(f"Representation needs d >= 1 and depth >= 1; got d={d}, depth={depth}")
        self.d, self.depth, self.seed = d, depth, seed
        rng = np.random.default_rng(seed)
        self.layers = [rng.normal(0.0, np.sqrt(2.0 / d), (d, d)) for _ in range(depth)]
        h = self._residual_mlp(rng.standard_normal((4096, d)), np)
        self.scale = float(np.sqrt(np.mean(np.sum(h * h, -1)) / d))

    def _residual_mlp(self, x, xp):
        for a in self.layers:
            x = x + xp.maximum(x @ xp.asarray(a, x.dtype), 0)
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [..., d] -> Φ(x) [..., d] in x.dtype."""
        return self._residual_mlp(x, jnp) / jnp.asarray(self.scale, x.dtype)

    def __hash__(self):
        return hash((self.d, self.depth, self.seed))

    def __eq__(self, other):
        return isinstance(other, Representation) and (self.d, self.depth, self.seed) == (
            other.d, other.depth, other.seed)


def representation_linear(
    rng, batch: int, n: int, d: int, *, representation: Representation, noise_std: float = 0.0,
    dtype=jnp.float32,
):
    """y = w·Φ(x) + σε, w ~ N(0, I_d), x ~ N(0, I_d), Φ the fixed `representation` (Guo et al. §3)."""
    if representation.d != d:
        raise ValueError(f"representation is {representation.d}-dimensional; the prompts have d={d}")
    kx, kw, ke = jax.random.split(rng, 3)
    x = gaussian_inputs(kx, batch, n, d, None, dtype)
    w = jax.random.normal(kw, (batch, d), dtype)
    y = jnp.einsum("bnd,bd->bn", representation(x), w)
    return x, y + noise_std * jax.random.normal(ke, (batch, n), dtype)


def _signs(rng, shape, dtype):
    return jnp.where(jax.random.bernoulli(rng, 0.5, shape), 1.0, -1.0).astype(dtype)


def conjunction(
    rng, batch: int, n: int, d: int, *, p_literal: float = 0.15, p_force: float = 0.3, dtype=jnp.float32
):
    """Boolean conjunction over x ∈ {±1}^d: each coordinate is a positive / negative literal with
    probability p_literal each (w_j ∈ {+1, -1, 0}); y = sign(x·w - (||w||₁ - 1)) = +1 iff every
    literal holds. A fraction p_force of inputs is set to satisfy it, to balance labels
    (Bhattamishra et al. 2024 §3 and App.; their code's 0.15 / 0.3)."""
    kx, kw, kf = jax.random.split(rng, 3)
    x = _signs(kx, (batch, n, d), dtype)
    u = jax.random.uniform(kw, (batch, d))
    w = jnp.where(u < p_literal, 1.0, jnp.where(u < 2 * p_literal, -1.0, 0.0)).astype(dtype)
    force = jax.random.bernoulli(kf, p_force, (batch, n))[..., None] & (w[:, None] != 0)
    x = jnp.where(force, jnp.broadcast_to(w[:, None], x.shape), x)
    score = jnp.einsum("bnd,bd->bn", x, w) - (jnp.sum(jnp.abs(w), -1, keepdims=True) - 1)
    return x, jnp.where(score > 0, 1.0, -1.0).astype(dtype)


def sparse_parity(rng, batch: int, n: int, d: int, *, k: int = 2, dtype=jnp.float32):
    """y = Π_{j∈S} x_j over a uniform k-subset S, x ∈ {±1}^d (Bhattamishra et al. 2024 §3)."""
    if not 1 <= k <= d:
        raise ValueError(f"sparsity k={k} must satisfy 1 <= k <= d={d}")
    kx, ks = jax.random.split(rng)
    x = _signs(kx, (batch, n, d), dtype)
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(ks, (batch, d)), axis=-1), axis=-1)
    y = jnp.prod(jnp.where((ranks < k)[:, None], x, 1.0), axis=-1)
    return x, y


# tasks whose samplers take `active_dims` (the dimension curriculum); boolean ones do not
CURRICULUM_DIM_TASKS = ("linear", "sparse_linear", "relu_net")

TASKS = {
    "linear": linear,
    "sparse_linear": sparse_linear,
    "relu_net": relu_net,
    "representation": representation_linear,
    "conjunction": conjunction,
    "sparse_parity": sparse_parity,
}


# E y² under each class (Garg et al.'s normaliser for the error curve): d, k, ~d, ~d, 1, 1.
def error_scale(task: str, d: int, k: int = 3, w_scale: float = 1.0) -> float:
    return {"linear": d * w_scale**2, "sparse_linear": k, "relu_net": d, "representation": d}.get(task, 1.0)
