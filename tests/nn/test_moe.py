"""nn.moe: the MoE FFN layer in a decoder (Chen et al. 2023, arXiv 2303.01610; dispatch == masked).

Float32 layers that compute the same sums in another order (split dense FFN vs batched experts,
gather/scatter vs mask) agree to ~1e-6 on O(1) activations; 1e-5 leaves room.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.nn.context import Context
from jaxformers.nn.moe import DenseMLP, MoEFeedForward
from jaxformers.objectives.next_token import next_token_loss
from jaxformers.ops import moe as ops
from jaxformers.testing import tiny_model_config, tiny_train_config
from jaxformers.train.experiment import Experiment

N, T = 4, 8
SMOE = dict(num_experts=N, router="random_frozen", k_schedule="linear", k_min=2, total_steps=10)


def _layer(**moe):
    cfg = tiny_model_config(feed_forward="moe", mlp_dim=64, moe=SMOE | moe)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, T, cfg.embed_dim))
    ctx = Context(positions=jnp.broadcast_to(jnp.arange(T), (2, T)))
    layer = MoEFeedForward(cfg)
    variables = nn.meta.unbox(jax.jit(layer.init)(jax.random.PRNGKey(1), x, ctx))
    return cfg, layer, variables, x, ctx


def test_k_equals_n_with_equal_router_logits_equals_the_dense_mlp_it_was_split_from():
    cfg, layer, variables, x, ctx = _layer(k_schedule="fixed", k=N)
    dense = DenseMLP(cfg)
    dv = nn.meta.unbox(jax.jit(dense.init)(jax.random.PRNGKey(2), x, ctx))["params"]
    dv = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(3), p.shape) * 0.3, dv)
    w1, b1, w2, b2 = ops.split_ffn_into_experts(
        dv["up"]["kernel"][0], dv["b1"], dv["down"]["kernel"][0], dv["b2"], N)
    variables["params"].update(w1=w1, b1=b1, w2=w2, b2=b2)
    variables["constants"] = jax.tree.map(jnp.zeros_like, variables["constants"])  # equal logits
    np.testing.assert_allclose(jax.jit(layer.apply)(variables, x, ctx),
                               jax.jit(dense.apply)({"params": dv}, x, ctx), atol=1e-5)


def test_dispatch_path_equals_masked_path_under_the_traced_k_schedule():
    """capacity_factor = N means capacity = T: no token is dropped, so the paths must agree in
    values and gradients at every k the schedule reaches (lax.switch over static k)."""
    _, masked, variables, x, ctx = _layer(capacity_factor=float(N))
    _, dispatch, _, _, _ = _layer(capacity_factor=float(N), dispatch="dispatch")

    def loss(layer):
        return jax.jit(jax.value_and_grad(lambda p, step: jnp.sum(jnp.sin(layer.apply(
            {"params": p, "constants": variables["constants"]}, x, ctx.replace(step=step))))))

    masked_loss, dispatch_loss = loss(masked), loss(dispatch)  # one compilation each, step traced
    for step in (0, 4, 10):
        (a, ga), (b, gb) = masked_loss(variables["params"], step), dispatch_loss(
            variables["params"], step)
        np.testing.assert_allclose(a, b, rtol=1e-5)
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-5), ga, gb)


def test_active_experts_overrides_the_step_schedule():
    _, layer, variables, x, ctx = _layer()
    at = lambda **kw: layer.apply(variables, x, ctx.replace(**kw))  # noqa: E731
    np.testing.assert_array_equal(at(step=jnp.asarray(0)), at(active_experts=2))  # k_min
    np.testing.assert_array_equal(at(step=jnp.asarray(10)), at(active_experts=N))  # k_max
    np.testing.assert_array_equal(at(), at(active_experts=N))  # no step: the dense end
    np.testing.assert_array_equal(at(step=jnp.asarray(0), active_experts=N), at(active_experts=N))
    assert not np.allclose(at(active_experts=1), at(active_experts=N))


def test_frozen_router_is_bit_identical_after_optimizer_steps_with_weight_decay():
    """Also: experts sharded over the "tensor" mesh axis, dispatch path, traced k schedule.
    The learned-router control runs on one device: that a learned router moves under this
    optimizer does not depend on the mesh, and one device compiles its step in half the time."""

    def run(router, mesh):
        config = tiny_train_config(**{
            "model.feed_forward": "moe", "model.mlp_dim": 64, "weight_decay": 0.5,
            "model.moe": SMOE | dict(router=router, dispatch="dispatch"),
            "mesh": mesh})
        exp = Experiment(config, devices=jax.devices()[:math.prod(mesh.values())])
        if mesh["tensor"] > 1:
            assert exp.state_shardings.params["layers"]["ffn"]["w1"].spec[1] == "tensor"  # experts
        state = exp.fresh_state()
        before = jax.device_get((state.params, state.constants))
        batch = exp.global_batch(exp.example_batch)
        for _ in range(3):
            state, _ = exp.train_step(state, batch)
        return before, jax.device_get((state.params, state.constants))

    (p0, c0), (p1, c1) = run("random_frozen", dict(data=4, fsdp=1, tensor=2))
    assert set(c0["layers"]["ffn"]) == {"router_kernel", "router_bias"}
    assert "router_kernel" not in p0["layers"]["ffn"]
    jax.tree.map(np.testing.assert_array_equal, c0, c1)  # bit-identical
    assert not np.array_equal(p0["layers"]["ffn"]["w1"], p1["layers"]["ffn"]["w1"])
    # Control: a learned router does move.
    (p0, _), (p1, _) = run("learned", dict(data=1, fsdp=1, tensor=1))
    assert not np.array_equal(p0["layers"]["ffn"]["router_kernel"],
                              p1["layers"]["ffn"]["router_kernel"])


@pytest.mark.parametrize("router,weight,expect_aux", [("learned", 0.1, True),
                                                      ("random_frozen", 0.1, False)])
def test_load_balancing_loss_reaches_the_objective_only_for_the_learned_router(
        router, weight, expect_aux):
    cfg = tiny_model_config(feed_forward="moe", mlp_dim=64,
                            moe=SMOE | dict(router=router, load_balance_weight=weight))
    from jaxformers.models.decoder import Decoder

    model = Decoder(cfg)
    tokens = jnp.zeros((2, T), jnp.int32)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), tokens))
    assert "aux_loss" not in variables
    batch = {"inputs": tokens, "targets": tokens}
    loss, metrics = jax.jit(lambda v: next_token_loss(model, v, batch, rng=jax.random.PRNGKey(1),
                                                      step=jnp.asarray(3), train=True))(variables)
    aux = float(metrics["aux_loss"])
    assert (aux > 0) == expect_aux
    if expect_aux:  # >= its minimum: weight x 1 per layer, reached at uniform routing
        assert aux >= weight * cfg.num_layers - 1e-6
    np.testing.assert_allclose(loss, metrics["loss"] + metrics["aux_loss"], rtol=1e-6)


@pytest.mark.parametrize("moe,message", [
    (dict(k_schedule="fixed", k=5), r"k range \[5, 5\]"),
    (dict(router="sticky"), "model.moe.router='sticky'"),
    (dict(total_steps=0), "model.moe.total_steps=0"),
    (dict(dispatch="ragged"), "model.moe.dispatch='ragged'"),
    (dict(activation="tanh"), "model.moe.activation='tanh'"),
])
def test_bad_moe_options_name_the_field(moe, message):
    with pytest.raises(ConfigError, match=message):
        tiny_model_config(feed_forward="moe", mlp_dim=64, moe=SMOE | moe)
