"""Sparse mixture-of-experts feed-forward math: routers, top-k combination, k schedule, dispatch.

SMoE-Dropout: Chen et al., "Sparse MoE as the New Dropout: Scaling Dense and Self-Slimmable
Transformers" (ICLR 2023, arXiv 2303.01610).
Learned-router baseline and its balancing loss: Fedus et al., "Switch Transformers" (JMLR 2022,
§2.1-2.2 eq. 4) and Lepikhin et al., "GShard" (ICLR 2021, §2.2 capacity and dispatch order).

A dense FFN of width H becomes N experts of width H/N (Chen et al. 2023, arXiv 2303.01610 "Modularisation"):

    Expert_e(x) = act(x W1_e + b1_e) W2_e + b2_e
    y = Σ_{e ∈ topk(r(x))} softmax(r(x)_topk)_e · Expert_e(x)                (§3.1 "Combination")

with router logits r(x) = x W_r + b_r (`gate="topk_softmax"`). The Switch gate
(`gate="softmax"`, Switch Transformers §2.1) weights each chosen expert by its full-softmax
probability p_e(x) = softmax(r(x))_e instead, unnormalised over the top k: at k = 1 the
renormalised gate is the constant 1 and the router gets no gradient, the Switch gate is p_e(x).
SMoE-Dropout keeps W_r, b_r frozen at their random init
(`random_router_init`) and raises k linearly from k_min to k_max during training (`k_schedule`,
§3.2); at evaluation any k may be chosen ("self-slimmable").

Two numerically equivalent implementations of the combination:
- `moe_masked`: every expert runs on every token and the top-k weights zero the rest. Any k,
  including a traced one; dense FLOPs whatever k is.
- `moe_dispatch`: per group of S tokens, each (token, choice) pair gets a slot in its expert's
  buffer of `capacity` rows (GShard order: all first choices, then all second choices, ...,
  token order within a choice); assignments past the capacity are dropped (contribute 0). Expert
  FLOPs are N·C·(2·d·h·2) with C ≈ capacity_factor·k·S/N, so they scale with k. k must be static.
  With `capacity=S` nothing is dropped and it equals `moe_masked` exactly; otherwise it equals
  `moe_masked` with the weights multiplied by `dispatch_keep_mask`.

Shapes: x [..., d]; router logits [..., N]; expert weights w1 [N, d, h], b1 [N, h], w2 [N, h, d],
b2 [N, d]. Router logits and softmaxes are computed in float32.
"""

import math

import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "silu": jax.nn.silu}
K_SCHEDULES = ("fixed", "linear", "linear_decrease")
GATES = ("topk_softmax", "softmax")


# Routers ---------------------------------------------------------------------------------------
def random_router_init(key: jax.Array, embed_dim: int, num_experts: int, dtype=jnp.float32):
    """PyTorch `nn.Linear(d, N)` default init, U(-1/sqrt(d), 1/sqrt(d)) for kernel and bias: the
    released code's router (Chen et al. 2023, arXiv 2303.01610 "Router"), frozen in SMoE-Dropout.

    -> (kernel [d, N], bias [N])
    """
    bound = 1.0 / math.sqrt(embed_dim)
    k1, k2 = jax.random.split(key)
    kernel = jax.random.uniform(k1, (embed_dim, num_experts), dtype, -bound, bound)
    bias = jax.random.uniform(k2, (num_experts,), dtype, -bound, bound)
    return kernel, bias


def router_logits(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """r(x) = x W_r + b_r in float32. x [..., d], kernel [d, N], bias [N] -> [..., N]."""
    logits = jnp.einsum("...d,dn->...n", x.astype(jnp.float32), kernel.astype(jnp.float32))
    return logits if bias is None else logits + bias.astype(jnp.float32)


# Top-k combination ---------------------------------------------------------------------------
def _check_static_k(k, num_experts: int, name: str = "k") -> None:
    if isinstance(k, int) and not 1 <= k <= num_experts:
        raise ValueError(f"{name}={k} must be in [1, num_experts={num_experts}]")


def expert_order(logits: jax.Array) -> jax.Array:
    """Experts sorted by decreasing logit, ties broken by the lower index. [..., N] int32."""
    return jnp.argsort(-logits, axis=-1, stable=True).astype(jnp.int32)


def topk_mask(logits: jax.Array, k) -> jax.Array:
    """Boolean [..., N]: True for the k largest logits (ties: lower index). k may be traced."""
    _check_static_k(k, logits.shape[-1])
    rank = jnp.argsort(expert_order(logits), axis=-1)  # rank[e] = position of expert e
    return rank < k


def topk_softmax_combine(logits: jax.Array, k) -> jax.Array:
    """Combination weights [..., N]: softmax over the k largest logits only, 0 elsewhere
    (Chen et al. 2023 "Combination"). They sum to 1 for every token. k may be a traced scalar."""
    logits = logits.astype(jnp.float32)
    masked = jnp.where(topk_mask(logits, k), logits, -jnp.inf)
    return jax.nn.softmax(masked, axis=-1)


def combine_weights(logits: jax.Array, k, gate: str = "topk_softmax") -> jax.Array:
    """Combination weights [..., N] for `gate` in GATES (module docstring): the softmax over the k
    largest logits, or the full softmax restricted to them (Switch §2.1, eq. 2)."""
    if gate == "topk_softmax":
        return topk_softmax_combine(logits, k)
    if gate != "softmax":
        raise ValueError(f"gate={gate!r}; expected one of {GATES}")
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.where(topk_mask(logits, k), probs, 0.0)


def k_schedule(step, total_steps: int, k_min: int, k_max: int, mode: str = "linear") -> jax.Array:
    """Number of active experts at training step t (Chen et al. 2023, `calculate_gate_number`).

    linear:          k(t) = clip(round((k_max - k_min) · t / T) + k_min, k_min, k_max)
    linear_decrease: k(t) = clip(k_max - round((k_max - k_min) · t / T), k_min, k_max)
    fixed:           k(t) = k_max
    round() is round-half-to-even, as Python's. step may be traced; returns int32.
    """
    if mode not in K_SCHEDULES:
        raise ValueError(f"k_schedule mode={mode!r}; expected one of {K_SCHEDULES}")
    if not 1 <= k_min <= k_max:
        raise ValueError(f"k_min={k_min}, k_max={k_max}: need 1 <= k_min <= k_max")
    if mode == "fixed":
        return jnp.asarray(k_max, jnp.int32)
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be positive for mode={mode!r}")
    frac = jnp.asarray(step, jnp.float32) / total_steps
    delta = jnp.round((k_max - k_min) * frac).astype(jnp.int32)
    k = k_min + delta if mode == "linear" else k_max - delta
    return jnp.clip(k, k_min, k_max).astype(jnp.int32)


# Experts ---------------------------------------------------------------------------------------
def split_ffn_into_experts(w1, b1, w2, b2, num_experts: int, *, preserve_function: bool = True):
    """Split a dense FFN act(x W1 + b1) W2 + b2 of width H into N experts of width H/N.

    w1 [d, H], b1 [H], w2 [H, d], b2 [d] -> (w1 [N, d, H/N], b1 [N, H/N], w2 [N, H/N, d], b2 [N, d]).
    With preserve_function, W2_e = N · W2[chunk e] and b2_e = b2, so the uniform average over all
    experts (k = N with equal router logits) is exactly the dense FFN; otherwise W2_e = W2[chunk e]
    and b2_e = b2 / N (the average is then the dense FFN / N plus b2 / N... i.e. the raw chunks).
    """
    d, hidden = w1.shape
    if hidden % num_experts:
        raise ValueError(f"hidden width {hidden} is not divisible by num_experts={num_experts}")
    h = hidden // num_experts
    scale = num_experts if preserve_function else 1
    w1_e = w1.reshape(d, num_experts, h).transpose(1, 0, 2)
    b1_e = b1.reshape(num_experts, h)
    w2_e = w2.reshape(num_experts, h, -1) * scale
    b2_e = jnp.broadcast_to(b2 if preserve_function else b2 / num_experts, (num_experts,) + b2.shape)
    return w1_e, b1_e, w2_e, b2_e


def _hidden(x, w1, b1, activation):
    h = jnp.einsum("...d,ndh->...nh", x, w1)
    return ACTIVATIONS[activation](h if b1 is None else h + b1)


def moe_masked(x, weights, w1, b1, w2, b2, *, activation: str = "relu") -> jax.Array:
    """All experts on all tokens, combined with `weights` [..., N] (zeros switch experts off).

    x [..., d] -> [..., d]: Σ_e weights_e · Expert_e(x). Dense FLOPs for any k.
    """
    h = _hidden(x, w1, b1, activation) * weights[..., None].astype(x.dtype)
    y = jnp.einsum("...nh,nhd->...d", h, w2)
    return y if b2 is None else y + weights.astype(x.dtype) @ b2


def expert_capacity(group_size: int, num_experts: int, k: int, capacity_factor: float) -> int:
    """Rows per expert buffer: ceil(capacity_factor · k · S / N), at most S, at least 1."""
    return int(min(group_size, max(1, math.ceil(capacity_factor * k * group_size / num_experts))))


def dispatch_slots(logits: jax.Array, k: int, capacity: int):
    """Buffer slots of one group's assignments (GShard §2.2 order: choice-major, then tokens).

    logits [S, N] -> (experts [S, k] chosen expert per choice, position [S, k] row in that expert's
    buffer, keep [S, k] bool position < capacity).
    """
    num_tokens, num_experts = logits.shape
    experts = expert_order(logits)[:, :k]  # [S, k]
    onehot = jax.nn.one_hot(experts.T.reshape(-1), num_experts, dtype=jnp.int32)  # [k*S, N]
    position = (jnp.cumsum(onehot, axis=0) - 1) * onehot
    position = position.sum(-1).reshape(k, num_tokens).T  # [S, k]
    return experts, position, position < capacity


def dispatch_keep_mask(logits: jax.Array, k: int, capacity: int) -> jax.Array:
    """[..., S, N] bool: which top-k assignments survive a per-group capacity (groups = leading
    axes). `moe_masked(x, weights * keep)` then equals `moe_dispatch(x, logits, ...)`."""
    num_experts = logits.shape[-1]
    flat = logits.reshape((-1,) + logits.shape[-2:])

    def one(group_logits):
        experts, _, keep = dispatch_slots(group_logits, k, capacity)
        onehot = jax.nn.one_hot(experts, num_experts, dtype=jnp.bool_)
        return (onehot & keep[..., None]).any(axis=1)

    return jax.vmap(one)(flat).reshape(logits.shape)


def _dispatch_group(x, logits, w1, b1, w2, b2, *, k, capacity, activation, gate):
    """One group: x [S, d], logits [S, N] -> [S, d]."""
    num_tokens, d = x.shape
    num_experts = w1.shape[0]
    weights = combine_weights(logits, k, gate)
    experts, position, keep = dispatch_slots(logits, k, capacity)
    slot = jnp.where(keep, experts * capacity + position, num_experts * capacity)  # OOB = drop
    token_ids = jnp.broadcast_to(jnp.arange(num_tokens, dtype=jnp.int32)[:, None], slot.shape)
    # Inverse map slot -> token (int scatter, no gradient), then a gather of the activations.
    source = jnp.zeros(num_experts * capacity, jnp.int32).at[slot.reshape(-1)].set(
        token_ids.reshape(-1), mode="drop")
    filled = jnp.zeros(num_experts * capacity, jnp.bool_).at[slot.reshape(-1)].set(
        True, mode="drop")
    buffer = jnp.where(filled[:, None], x[source], 0).reshape(num_experts, capacity, d)
    h = ACTIVATIONS[activation](jnp.einsum("ncd,ndh->nch", buffer, w1)
                                + (0 if b1 is None else b1[:, None]))
    out = jnp.einsum("nch,nhd->ncd", h, w2) + (0 if b2 is None else b2[:, None])
    out = out.reshape(num_experts * capacity, d)
    gate = jnp.take_along_axis(weights, experts, axis=-1) * keep  # [S, k]
    picked = out[jnp.minimum(slot, num_experts * capacity - 1)]  # [S, k, d]
    return jnp.einsum("skd,sk->sd", picked, gate.astype(x.dtype))


def moe_dispatch(x, logits, w1, b1, w2, b2, *, k: int, capacity: int,
                 activation: str = "relu", gate: str = "topk_softmax") -> jax.Array:
    """Capacity-based token dispatch. x [G, S, d] (G groups of S tokens), logits [G, S, N] ->
    [G, S, d]. k and capacity are static; expert FLOPs ∝ N · capacity."""
    if not isinstance(k, int):
        raise ValueError(f"moe_dispatch needs a static int k; got {type(k).__name__}")
    _check_static_k(k, w1.shape[0])
    if x.ndim != 3 or logits.shape != x.shape[:2] + (w1.shape[0],):
        raise ValueError(f"x {x.shape} must be [G, S, d] and logits {logits.shape} [G, S, N]")
    fn = lambda xg, lg: _dispatch_group(  # noqa: E731
        xg, lg, w1, b1, w2, b2, k=k, capacity=capacity, activation=activation, gate=gate)
    return jax.vmap(fn)(x, logits)


# Load balancing --------------------------------------------------------------------------------
def load_balancing_loss(logits: jax.Array, k: int | jax.Array) -> jax.Array:
    """Switch Transformer eq. 4 generalised to top-k: N · Σ_e f_e · P_e, where f_e is the fraction
    of top-k assignments routed to expert e and P_e the mean full-softmax router probability.
    Equals 1 under perfectly uniform routing. logits [..., N] -> scalar float32."""
    num_experts = logits.shape[-1]
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).reshape(-1, num_experts)
    assigned = topk_mask(logits, k).astype(jnp.float32).reshape(-1, num_experts)
    f = assigned.mean(0) / jnp.maximum(assigned.sum(-1).mean(), 1.0)
    return num_experts * jnp.sum(f * probs.mean(0))
