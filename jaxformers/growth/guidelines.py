"""G_stack guidelines (paper §4.2, App. F) and the paper's speed-up measure.

How to use them for a run (see configs/gstack.py):
  1. Pick the target size N (parameters) and training tokens D; C = 6 N D (`training_flops`).
  2. Base model = target depth / g with g = `RECOMMENDED_GROWTH_FACTOR` (4).
  3. Train the base for d = `growth_tokens(N, C)` tokens, then grow with `g_stack` and train the
     target for the remaining compute: (C - base FLOPs) / (6 N) tokens.
The fit was made at N in 410M..3B and C ~ 1e20..1e22 FLOPs; far below that range (our CPU
models have C ~ 1e13) the 163.27 / log10(C) term explodes and the formula asks for more tokens
than the whole budget, so `growth_tokens` warns outside the fitted range and small experiments
pick d by hand (a fraction of the budget) instead.
"""

import math
import warnings

import numpy as np

RECOMMENDED_GROWTH_FACTOR = 4  # §4.2: the optimum lies between 2 and 4; the paper uses g = 4
FITTED_N_RANGE = (4.1e8, 3e9)  # IsoFLOP sweeps at 410M, 1.1B, 3B target parameters
FITTED_C_RANGE = (1e19, 1e23)  # the compute of those sweeps, with margin


def training_flops(num_params: float, tokens: float) -> float:
    """C = 6 N D (reproduces the paper's Table 4 with D = the target's training tokens)."""
    return 6.0 * num_params * tokens


def growth_tokens(num_params: float, compute: float, *, warn: bool = True) -> float:
    """Tokens d to train the base before growing (eq. 2):
    log10(d) = 0.88 log10(N) + 163.27 / log10(C) - 5.74."""
    if num_params <= 0 or compute <= 1:
        raise ValueError(f"num_params={num_params} and compute={compute} must be positive (C > 1)")
    if warn and not (
        FITTED_N_RANGE[0] / 10 <= num_params <= FITTED_N_RANGE[1] * 10
        and FITTED_C_RANGE[0] <= compute <= FITTED_C_RANGE[1]
    ):
        warnings.warn(
            f"growth_tokens: N={num_params:.3g}, C={compute:.3g} lie outside the range the "
            f"formula was fitted on (N ~ {FITTED_N_RANGE}, C ~ {FITTED_C_RANGE}); the result is "
            "an extrapolation",
            stacklevel=2,
        )
    log_d = 0.88 * math.log10(num_params) + 163.27 / math.log10(compute) - 5.74
    return 10.0**log_d


def speedup(flops_scratch: float, flops_grown: float) -> float:
    """App. B.2: sp = FLOPs_scratch / FLOPs_G - 1 at equal loss (FLOPs_G includes the base)."""
    return flops_scratch / flops_grown - 1.0


def flops_to_reach(flops, losses, target: float) -> float:
    """First compute at which a (noisy, decreasing) loss curve reaches `target`, linearly
    interpolated between the two evaluations around the crossing; inf if it never does."""
    flops, losses = np.asarray(flops, float), np.asarray(losses, float)
    below = np.nonzero(losses <= target)[0]
    if below.size == 0:
        return math.inf
    i = int(below[0])
    if i == 0:
        return float(flops[0])
    f0, f1, l0, l1 = flops[i - 1], flops[i], losses[i - 1], losses[i]
    return float(f0 + (f1 - f0) * (l0 - target) / (l0 - l1))


def decoder_train_flops_per_token(params: dict, num_layers: int, seq_len: int,
                                  attn_dim: int) -> float:
    """Training FLOPs per token of a decoder, counted like Kaplan et al. (2020) Table 1:
    6 N + 6 L T d_attn, with N the parameters of every matmul (all except the embedding table,
    whose lookup is free; a tied head is counted through `params["embed"]` being the head).

    The loop's "flops" metric (train/flops.py, matmul FLOPs counted on the jaxpr) agrees with this
    to within the attention term's convention; this closed form needs no tracing.
    """
    import jax

    n = sum(int(np.prod(x.shape)) for k, v in params.items() if k != "embed"
            for x in jax.tree.leaves(v))
    if "head" not in params and "embed" in params:  # tied embeddings: the head is embed^T
        n += sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params["embed"]))
    return 6.0 * n + 6.0 * num_layers * seq_len * attn_dim
