"""Matmuls whose backward pass computes the weight gradient as a row-major (canonical) dot.

For y = x W with x [n, i] and W [i, o] the chain rule gives (any linear-algebra text, e.g.
Goodfellow et al. 2016, "Deep Learning", §6.5.6 eq. 6.45 for a matrix product):

    dX = G Wᵀ                                                            (1)
    dW = Xᵀ G          (contraction over the n tokens, the major dimension of X and G)   (2)

Plain autodiff emits (2) as `dot_general(x, g, contracting=((0,), (0,)))`. XLA:CPU sends that
form to a slow dot path and makes the producers of X and G write transposed copies of them.
`matmul` computes the same product but its custom VJP materialises Xᵀ once, behind an
`optimization_barrier` so XLA cannot fold the transpose back into the dot, and then computes (2)
as the row-major product `Xᵀ @ G` (or `(Gᵀ X)ᵀ` when X is much wider than G, so that the smaller
operand is the one copied); (1) stays `G @ Wᵀ`. Values and gradients equal plain autodiff
to float rounding; only the memory layout of the backward dots changes.

Forms covered (all reduce to `_mm` or `_bmm`):
- `matmul(x, w)`: x [..., i] @ w [i, o] -> [..., o] (leading dims flattened into tokens);
- `modality_matmul(x, kernel)`: einsum "btd,kdf->btkf" (every modality's kernel on every token)
  as one [B·T, d] @ [d, K·f] product;
- `batched_matmul(x, w)`: einsum "tbd,tdf->tbf" (one kernel per tile of rows), with
  dW_t = X_tᵀ G_t as a batched row-major dot.

Each takes `canonical`: False gives the plain `jnp` product (XLA's own backward), which is the
reference the custom VJP is tested against. Inputs keep their dtype (bfloat16 in, bfloat16 dots).
"""

import jax
import jax.numpy as jnp
from jax import lax


@jax.custom_vjp
def _mm(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [n, i] @ w [i, o] -> [n, o]."""
    return x @ w


def _mm_fwd(x, w):
    return x @ w, (x, w)


# dW = Xᵀ G needs one of the two token-major operands transposed: Xᵀ [i, n], or Gᵀ [o, n] and then
# the weight-sized result, dW = (Gᵀ X)ᵀ. The cheaper copy is the narrower operand, but Xᵀ is often
# shared: XLA computes it once for every projection of the same input (q/k/v, SwiGLU gate/up). So
# Gᵀ is taken only when X is more than this many times wider, which on the decoder means the FFN
# down projection (i = 8d/3 or 4d, o = d) and not the GQA key/value projections (i = d, o = d/2).
TRANSPOSE_GRAD_WIDTH_RATIO = 2


def _weight_grad(x: jax.Array, g: jax.Array) -> jax.Array:
    """eq. (2) as a row-major dot: x [n, i], g [n, o] -> [i, o]."""
    if x.shape[1] > TRANSPOSE_GRAD_WIDTH_RATIO * g.shape[1]:
        # The outer barrier keeps XLA from rewriting transpose(Gᵀ X) back into Xᵀ G.
        return lax.optimization_barrier(lax.optimization_barrier(g.T) @ x).T
    return lax.optimization_barrier(x.T) @ g  # [i, n] @ [n, o]


def _mm_bwd(residuals, g):
    x, w = residuals
    dx = g @ w.T  # eq. (1)
    dw = _weight_grad(x, g)  # eq. (2)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_mm.defvjp(_mm_fwd, _mm_bwd)


@jax.custom_vjp
def _bmm(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [t, n, i] @ w [t, i, o] -> [t, n, o] (one matrix per leading index)."""
    return jnp.einsum("tni,tio->tno", x, w)


def _bmm_fwd(x, w):
    return jnp.einsum("tni,tio->tno", x, w), (x, w)


def _bmm_bwd(residuals, g):
    x, w = residuals
    dx = jnp.einsum("tno,tio->tni", g, w)  # eq. (1) per matrix
    # always Xᵀ per tile: the narrower-operand rule of `_weight_grad` was measured on `_mm` only
    x_t = lax.optimization_barrier(jnp.swapaxes(x, 1, 2))  # [t, i, n]
    dw = jnp.einsum("tin,tno->tio", x_t, g)  # eq. (2) per matrix, row-major
    return dx.astype(x.dtype), dw.astype(w.dtype)


_bmm.defvjp(_bmm_fwd, _bmm_bwd)


def _check(name: str, x: jax.Array, w: jax.Array, x_axis: int, w_axis: int) -> None:
    if x.shape[x_axis] != w.shape[w_axis]:
        raise ValueError(
            f"{name}: x {x.shape} and w {w.shape} disagree on the contracted dimension "
            f"({x.shape[x_axis]} vs {w.shape[w_axis]})"
        )
    if x.dtype != w.dtype:
        raise ValueError(f"{name}: x is {x.dtype} and w is {w.dtype}; cast both to one dtype")


def matmul(x: jax.Array, w: jax.Array, *, canonical: bool = True) -> jax.Array:
    """x [..., i] @ w [i, o] -> [..., o]; eq. (2) as a row-major dot when `canonical`."""
    if w.ndim != 2 or x.ndim < 1:
        raise ValueError(f"matmul: expected x [..., i] and w [i, o]; got {x.shape} and {w.shape}")
    _check("matmul", x, w, -1, 0)
    if not canonical:
        return x @ w
    lead = x.shape[:-1]
    y = _mm(x.reshape(-1, x.shape[-1]), w)
    return y.reshape(*lead, w.shape[1])


def modality_matmul(x: jax.Array, kernel: jax.Array, *, canonical: bool = True) -> jax.Array:
    """einsum("btd,kdf->btkf"): x [..., d] against every kernel [K, d, f] -> [..., K, f]."""
    if kernel.ndim != 3:
        raise ValueError(f"modality_matmul: expected kernel [K, d, f]; got {kernel.shape}")
    _check("modality_matmul", x, kernel, -1, 1)
    if not canonical:
        return jnp.einsum("...d,kdf->...kf", x, kernel)
    k, d, f = kernel.shape
    w = jnp.transpose(kernel, (1, 0, 2)).reshape(d, k * f)  # [d, K·f]: a few KB, not the tokens
    return matmul(x, w).reshape(*x.shape[:-1], k, f)


def batched_matmul(x: jax.Array, w: jax.Array, *, canonical: bool = True) -> jax.Array:
    """einsum("tbd,tdf->tbf"): x [t, n, d] @ w [t, d, f] -> [t, n, f]."""
    if x.ndim != 3 or w.ndim != 3 or x.shape[0] != w.shape[0]:
        raise ValueError(
            f"batched_matmul: expected x [t, n, d] and w [t, d, f]; got {x.shape} and {w.shape}"
        )
    _check("batched_matmul", x, w, 2, 1)
    if not canonical:
        return jnp.einsum("tbd,tdf->tbf", x, w)
    return _bmm(x, w)
