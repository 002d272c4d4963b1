"""GPTQ weight quantization and its round-to-nearest baseline, per output channel (symmetric).

Frantar, Ashkboos, Hoefler & Alistarh 2023, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers" (ICLR 2023, arXiv 2210.17323). For a weight W [rows, cols]
(rows = output channels, cols = inputs) and calibration inputs X [cols, n], GPTQ minimises
||W X - Q X||² one row at a time, quantizing the columns in order and spreading each column's error
over the columns not yet quantized (Optimal Brain Quantization, §3 eq. 2-3):

    H = X Xᵀ + λ I,   λ = damping · mean(diag H)            (§4 "Step 3"; damping 1%)
    U = chol(H⁻¹)ᵀ (upper)                                   (§4 "Step 3: Cholesky reformulation")
    for i = 0 .. cols-1:   q_i = quant(w_i);   e = (w_i - q_i) / U_ii;   W[:, i:] -= e U[i, i:]

Inputs that never fire (H_ii = 0) get H_ii = 1 and a zero weight column (the reference code). The
paper's lazy batch updates (blocks of 128 columns, §4 "Step 2") reorder these same updates for
memory bandwidth; here the whole row block is updated at every column under `lax.fori_loop`, which
gives the same result to float rounding and compiles once for any width. Act-order is not used.

quant() is symmetric with one scale per row: s = max_j |W_j| / (2^(b-1) - 1/2) and
q = clip(round(w / s), -2^(b-1), 2^(b-1) - 1), the grid of qwix's int<b> (the half step lets
the largest weight use the top level), computed from W before any update, as with groupsize = cols.
"""

import jax
import jax.numpy as jnp


def row_scales(w: jax.Array, bits: int) -> jax.Array:
    """w [rows, cols] -> per-row step s [rows, 1] of the symmetric b-bit grid."""
    bound = 2.0 ** (bits - 1) - 0.5
    absmax = jnp.max(jnp.abs(w), axis=1, keepdims=True)
    return jnp.where(absmax > 0, absmax / bound, 1.0)


def quantize_to_grid(w: jax.Array, scale: jax.Array, bits: int) -> jax.Array:
    """Integer levels of w on the grid `scale` (round to nearest, clipped to b bits)."""
    return jnp.clip(jnp.round(w / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def rtn(w: jax.Array, bits: int) -> tuple[jax.Array, jax.Array]:
    """Round-to-nearest: (integer levels [rows, cols], scale [rows, 1])."""
    scale = row_scales(w, bits)
    return quantize_to_grid(w, scale, bits), scale


def gptq(
    w: jax.Array, hessian: jax.Array, bits: int, *, damping: float = 0.01
) -> tuple[jax.Array, jax.Array]:
    """GPTQ (Algorithm 1, without lazy blocks): (integer levels [rows, cols], scale [rows, 1]).

    w: [rows, cols] float; hessian: [cols, cols] = X Xᵀ over the calibration inputs (any positive
    multiple: the result does not depend on the scale of H).
    """
    rows, cols = w.shape
    if hessian.shape != (cols, cols):
        raise ValueError(
            f"gptq: hessian {hessian.shape} does not match weight {w.shape} (expected [{cols}, {cols}])"
        )
    w = w.astype(jnp.float32)
    h = hessian.astype(jnp.float32)
    dead = jnp.diag(h) == 0
    h = jnp.where(jnp.diag(dead), 1.0, h)
    w = jnp.where(dead[None, :], 0.0, w)
    h = h + damping * jnp.mean(jnp.diag(hessian.astype(jnp.float32))) * jnp.eye(cols)
    lower = jnp.linalg.cholesky(h)
    h_inv = jax.scipy.linalg.cho_solve((lower, True), jnp.eye(cols))
    u = jnp.linalg.cholesky(h_inv, upper=True)  # upper: u[i, j] = 0 for j < i
    scale = row_scales(w, bits)

    def column(i, carry):
        w, q = carry
        wi = jax.lax.dynamic_slice_in_dim(w, i, 1, axis=1)  # [rows, 1]
        qi = quantize_to_grid(wi, scale, bits)
        err = (wi - qi * scale) / u[i, i]
        w = w - err * u[i][None, :]  # columns < i are untouched (u is upper triangular)
        return w, jax.lax.dynamic_update_slice_in_dim(q, qi, i, axis=1)

    _, q = jax.lax.fori_loop(0, cols, column, (w, jnp.zeros_like(w)))
    return q, scale
