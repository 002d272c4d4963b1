"""Mixture-of-experts feed-forward ("moe") and its dense twin ("dense_mlp"); math in `ops.moe`.

SMoE-Dropout (Chen et al. 2023, arXiv 2303.01610): `moe.router="random_frozen"`, `moe.k_schedule="linear"`,
`k_min=N/2`, `k_max=N`; the learned-router baseline: `router="learned"`, `k=2`, optionally
`load_balance_weight>0`. Parameters (one einsum over the "expert" axis for all experts):

  params/w1 [N, d, h], b1 [N, h], w2 [N, h, d], b2 [N, d]   axes ("expert", "embed"/"expert_mlp")
  params/router_kernel [d, N], router_bias [N]               learned router
  constants/router_kernel, constants/router_bias             frozen random router: the optimizer
                                                             (and its weight decay) never sees it

Active experts k: `ctx.active_experts` if given (evaluation at any k, "self-slimmable"), else the
schedule at `ctx.step` (k_max when the step is unknown, e.g. sampling), else `moe.k` ("fixed").
`moe.dispatch="masked"` runs every expert (any k, even traced); "dispatch" gathers each
sequence's tokens into per-expert buffers of ceil(capacity_factor·k·T/N) rows so FLOPs scale
with k; a traced k (the schedule) selects among static-k branches with `lax.switch`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxformers.config import ModelConfig
from jaxformers.nn.context import Context
from jaxformers.nn.projection import Projection
from jaxformers.ops import moe as ops


def _static_int(k):
    """k as a Python int when it is concrete, else None (a traced k)."""
    if isinstance(k, int):
        return k
    if isinstance(k, jax.core.Tracer):
        return None
    return int(k)


class MoEFeedForward(nn.Module):
    """y = Σ_{e ∈ topk} softmax(r(x)_topk)_e · Expert_e(x)  (Chen et al. 2023, arXiv 2303.01610)."""

    cfg: ModelConfig

    def _router(self, d: int, n: int):
        opt, bound = self.cfg.moe, 1.0 / d**0.5
        uniform = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)  # noqa: E731
        box = nn.LogicallyPartitioned
        if opt.router == "random_frozen":  # PyTorch nn.Linear default init, then frozen
            init = None
            if not self.has_variable("constants", "router_kernel"):
                init = ops.random_router_init(self.make_rng("params"), d, n)
            kernel = self.variable("constants", "router_kernel",
                                   lambda: box(init[0], ("embed", "expert"))).value
            bias = self.variable("constants", "router_bias",
                                 lambda: box(init[1], ("expert",))).value
            return kernel, bias
        kernel = self.param("router_kernel", nn.with_logical_partitioning(
            lambda key, shape: uniform(key, shape), ("embed", "expert")), (d, n))
        bias = self.param("router_bias", nn.with_logical_partitioning(
            lambda key, shape: uniform(key, shape), ("expert",)), (n,))
        return kernel, bias

    def _k(self, ctx: Context):
        opt = self.cfg.moe
        lo, hi = self.cfg.moe.k_bounds()
        if ctx.active_experts is not None:
            return ctx.active_experts, (1, opt.num_experts)
        if opt.k_schedule == "fixed":
            return opt.k, (opt.k, opt.k)
        if ctx.step is None:
            return hi, (hi, hi)
        return ops.k_schedule(ctx.step, opt.total_steps, lo, hi, opt.k_schedule), (lo, hi)

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg, opt = self.cfg, self.cfg.moe
        n, h, d = opt.num_experts, cfg.moe.width(cfg), x.shape[-1]
        pdt, adt = cfg.parameter_dtype, cfg.activation_dtype
        normal = nn.initializers.normal
        w1 = self.param("w1", nn.with_logical_partitioning(
            normal(cfg.init_std), ("expert", "embed", "expert_mlp")), (n, d, h), pdt)
        w2 = self.param("w2", nn.with_logical_partitioning(
            normal(cfg.init_std / (2 * cfg.num_layers) ** 0.5), ("expert", "expert_mlp", "embed")),
            (n, h, d), pdt)
        b1 = b2 = None
        if opt.use_bias:
            b1 = self.param("b1", nn.with_logical_partitioning(
                nn.initializers.zeros, ("expert", "expert_mlp")), (n, h), pdt).astype(adt)
            b2 = self.param("b2", nn.with_logical_partitioning(
                nn.initializers.zeros, ("expert", "embed")), (n, d), pdt).astype(adt)
        w1, w2 = w1.astype(adt), w2.astype(adt)
        kernel, bias = self._router(d, n)
        x = x.astype(adt)
        logits = ops.router_logits(x, kernel, bias)  # [B, T, N] float32
        k, (lo, hi) = self._k(ctx)
        k_static = _static_int(k)

        if opt.load_balance_weight > 0 and opt.router == "learned" and not self.is_initializing():
            self.sow("aux_loss", "load_balance",
                     opt.load_balance_weight * ops.load_balancing_loss(logits, k))

        if opt.dispatch == "masked":
            weights = ops.combine_weights(logits, k, opt.gate)
            return ops.moe_masked(x, weights, w1, b1, w2, b2, activation=opt.activation)

        seq = x.shape[-2]
        x3, l3 = x.reshape((-1, seq, d)), logits.reshape((-1, seq, n))

        def run(k_value: int):
            cap = ops.expert_capacity(seq, n, k_value, opt.capacity_factor)
            return ops.moe_dispatch(x3, l3, w1, b1, w2, b2, k=k_value, capacity=cap,
                                    activation=opt.activation, gate=opt.gate)

        if k_static is not None:
            y = run(k_static)
        else:  # one static-k branch per reachable k; only the taken branch runs
            index = jnp.clip(jnp.asarray(k, jnp.int32), lo, hi) - lo
            y = jax.lax.switch(index, [lambda kv=kv: run(kv) for kv in range(lo, hi + 1)])
        return y.reshape(x.shape)


class DenseMLP(nn.Module):
    """act(x W1 + b1) W2 + b2 of width cfg.hidden_dim: the dense FFN the MoE is split from
    (`ops.moe.split_ffn_into_experts`), with the same activation (`moe.activation`) and init."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x: jax.Array, ctx: Context) -> jax.Array:
        cfg = self.cfg
        up = Projection(cfg, cfg.hidden_dim, axes=("embed", "mlp"), name="up", role="ffn_up")
        down = Projection(cfg, cfg.embed_dim, axes=("mlp", "embed"), name="down", role="ffn_down",
                          init_scale=1.0 / (2 * cfg.num_layers) ** 0.5)
        hid = up(x, ctx)
        if cfg.moe.use_bias:
            hid = hid + self.param("b1", nn.with_logical_partitioning(
                nn.initializers.zeros, ("mlp",)), (cfg.hidden_dim,), cfg.parameter_dtype)
        y = down(ops.ACTIVATIONS[cfg.moe.activation](hid), ctx)
        if cfg.moe.use_bias:
            y = y + self.param("b2", nn.with_logical_partitioning(
                nn.initializers.zeros, ("embed",)), (cfg.embed_dim,), cfg.parameter_dtype)
        return y.astype(cfg.activation_dtype)
