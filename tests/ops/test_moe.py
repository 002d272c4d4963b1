"""ops.moe: the SMoE-Dropout identities (Chen et al. 2023, arXiv 2303.01610) and dispatch == masked.

Algebraic identities run in float64 (agreement to ~1e-15, checked at 1e-10). The dispatch and
masked paths compute the same products in a different order; in float64 they agree to ~1e-15.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.ops import moe

N, D, H = 4, 6, 16  # experts, model width, dense hidden width


def _dense_ffn(rng, d=D, hidden=H, dtype=jnp.float64):
    k = jax.random.split(rng, 4)
    return (
        jax.random.normal(k[0], (d, hidden), dtype),
        jax.random.normal(k[1], (hidden,), dtype),
        jax.random.normal(k[2], (hidden, d), dtype),
        jax.random.normal(k[3], (d,), dtype),
    )


def _experts(rng, n=N, d=D, h=H // N, dtype=jnp.float64):
    k = jax.random.split(rng, 4)
    return (
        jax.random.normal(k[0], (n, d, h), dtype),
        jax.random.normal(k[1], (n, h), dtype),
        jax.random.normal(k[2], (n, h, d), dtype),
        jax.random.normal(k[3], (n, d), dtype),
    )


def test_k_equals_n_with_equal_logits_equals_the_dense_ffn_it_was_split_from():
    with jax.enable_x64(True):
        w1, b1, w2, b2 = _dense_ffn(jax.random.PRNGKey(0))
        x = jax.random.normal(jax.random.PRNGKey(1), (3, 5, D), jnp.float64)
        dense = jax.nn.relu(x @ w1 + b1) @ w2 + b2
        experts = moe.split_ffn_into_experts(w1, b1, w2, b2, N)
        weights = moe.topk_softmax_combine(jnp.zeros((3, 5, N)), N)
        np.testing.assert_allclose(weights, 1.0 / N, atol=1e-15)
        y = moe.moe_masked(x, weights.astype(x.dtype), *experts)
        np.testing.assert_allclose(y, dense, atol=1e-10)
        # Raw chunks (Chen et al. 2023): the uniform average is the dense FFN / N.
        raw = moe.split_ffn_into_experts(w1, b1, w2, b2, N, preserve_function=False)
        np.testing.assert_allclose(moe.moe_masked(x, weights, *raw), dense / N, atol=1e-10)


def test_k1_picks_the_argmax_expert():
    with jax.enable_x64(True):
        params = _experts(jax.random.PRNGKey(0))
        x = jax.random.normal(jax.random.PRNGKey(1), (7, D), jnp.float64)
        logits = jax.random.normal(jax.random.PRNGKey(2), (7, N), jnp.float64)
        weights = moe.topk_softmax_combine(logits, 1)
        np.testing.assert_array_equal(weights, jax.nn.one_hot(logits.argmax(-1), N))
        w1, b1, w2, b2 = params
        e = logits.argmax(-1)
        expected = (
            jnp.einsum("th,thd->td", jax.nn.relu(jnp.einsum("td,tdh->th", x, w1[e]) + b1[e]), w2[e]) + b2[e]
        )
        np.testing.assert_allclose(moe.moe_masked(x, weights, *params), expected, atol=1e-10)


@pytest.mark.parametrize("k", [1, 3])
def test_topk_weights_sum_to_one_and_vanish_outside_the_top_k(k):
    logits = jax.random.normal(jax.random.PRNGKey(k), (2, 9, N)) * 3
    weights = moe.topk_softmax_combine(logits, k)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal((weights > 0).sum(-1), k)
    top = jax.lax.top_k(logits, k)[1]
    np.testing.assert_array_equal(jnp.sort(top, -1), jnp.sort(jnp.argsort(-weights, -1)[..., :k], -1))
    # Softmax over the selected logits only.
    expected = jax.nn.softmax(jnp.take_along_axis(logits, top, -1), -1)
    np.testing.assert_allclose(jnp.take_along_axis(weights, top, -1), expected, atol=1e-6)
    # A traced k (the schedule inside jit) gives the same weights.
    traced = jax.jit(moe.topk_softmax_combine)(logits, jnp.asarray(k))
    np.testing.assert_array_equal(traced, weights)


def test_switch_gate_is_the_full_softmax_probability_and_trains_the_router_at_k1():
    logits = jax.random.normal(jax.random.PRNGKey(3), (6, N))
    probs = jax.nn.softmax(logits, axis=-1)
    switch = moe.combine_weights(logits, 1, "softmax")
    np.testing.assert_allclose(switch.sum(-1), probs.max(-1), rtol=1e-6)
    np.testing.assert_allclose(moe.combine_weights(logits, N, "softmax"), probs, rtol=1e-6)
    # At k=1 the renormalised gate is the constant 1, so only the Switch gate moves the router.
    gate_sum = lambda gate: lambda lg: jnp.sum(moe.combine_weights(lg, 1, gate) * jnp.arange(N))  # noqa: E731
    assert float(jnp.abs(jax.grad(gate_sum("topk_softmax"))(logits)).max()) == 0.0
    assert float(jnp.abs(jax.grad(gate_sum("softmax"))(logits)).max()) > 1e-3
    with pytest.raises(ValueError, match="gate='noisy'"):
        moe.combine_weights(logits, 1, "noisy")


def test_ties_go_to_the_lower_expert_index():
    weights = moe.topk_softmax_combine(jnp.zeros((1, N)), 2)
    np.testing.assert_allclose(weights, [[0.5, 0.5, 0, 0]])


def test_bad_static_k_is_rejected():
    with pytest.raises(ValueError, match="k=5"):
        moe.topk_softmax_combine(jnp.zeros((1, N)), 5)


@pytest.mark.parametrize("k_min,k_max,total", [(4, 8, 100), (8, 16, 400), (1, 8, 7), (3, 3, 10)])
def test_linear_schedule_hits_k_min_at_start_k_max_at_end_monotonically(k_min, k_max, total):
    steps = np.arange(total + 5)
    ks = np.asarray(jax.jit(lambda s: moe.k_schedule(s, total, k_min, k_max, "linear"))(steps))
    assert ks[0] == k_min and ks[total] == k_max and ks[-1] == k_max
    assert np.all(np.diff(ks) >= 0)
    # The released code's formula, with Python's round (half to even).
    expected = [min(max(round((k_max - k_min) * t / total) + k_min, k_min), k_max) for t in steps]
    np.testing.assert_array_equal(ks, expected)
    dec = np.asarray(moe.k_schedule(steps, total, k_min, k_max, "linear_decrease"))
    assert dec[0] == k_max and dec[total] == k_min and np.all(np.diff(dec) <= 0)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode="):
        moe.k_schedule(0, 10, 1, 2, "cosine_wobble")
    with pytest.raises(ValueError, match="k_min=3, k_max=2"):
        moe.k_schedule(0, 10, 3, 2)
    with pytest.raises(ValueError, match="total_steps=0"):
        moe.k_schedule(0, 0, 1, 2)


def _reference_keep(logits, k, capacity):
    """GShard order by hand: all first choices in token order, then all second choices, ..."""
    groups, tokens, n = logits.shape
    keep = np.zeros(logits.shape, bool)
    for g in range(groups):
        order = np.argsort(-logits[g], axis=-1, kind="stable")
        fill = np.zeros(n, int)
        for choice in range(k):
            for t in range(tokens):
                e = order[t, choice]
                if fill[e] < capacity:
                    keep[g, t, e] = True
                fill[e] += 1
    return keep


@pytest.mark.parametrize("k,capacity_factor", [(1, 1.0), (2, 0.5), (3, 1.0)])
def test_dispatch_keep_mask_follows_gshard_order(k, capacity_factor):
    logits = jax.random.normal(jax.random.PRNGKey(k), (3, 12, N))
    cap = moe.expert_capacity(12, N, k, capacity_factor)
    np.testing.assert_array_equal(
        moe.dispatch_keep_mask(logits, k, cap), _reference_keep(np.asarray(logits), k, cap)
    )


@pytest.mark.parametrize(
    "k,capacity_factor,gate",
    [(2, 100.0, "topk_softmax"), (1, 0.5, "topk_softmax"), (3, 1.0, "topk_softmax"), (1, 1.0, "softmax")],
)
def test_dispatch_equals_masked_values_and_gradients(k, capacity_factor, gate):
    """With capacity = S nothing is dropped; below it, dispatch == masked with dropped (token,
    expert) weights zeroed (dropped tokens get 0 from that expert, as in Switch/GShard)."""
    with jax.enable_x64(True):
        params = _experts(jax.random.PRNGKey(0))
        x = jax.random.normal(jax.random.PRNGKey(1), (2, 10, D), jnp.float64)
        router = jax.random.normal(jax.random.PRNGKey(2), (D, N), jnp.float64)
        cap = moe.expert_capacity(10, N, k, capacity_factor)

        def via_dispatch(x, router, params):
            logits = moe.router_logits(x, router).astype(x.dtype)
            return moe.moe_dispatch(x, logits, *params, k=k, capacity=cap, gate=gate)

        def via_masked(x, router, params):
            logits = moe.router_logits(x, router).astype(x.dtype)
            keep = jax.lax.stop_gradient(moe.dispatch_keep_mask(logits, k, cap))
            weights = moe.combine_weights(logits, k, gate).astype(x.dtype) * keep
            return moe.moe_masked(x, weights, *params)

        loss = lambda f: lambda *args: jnp.sum(jnp.sin(f(*args)))  # noqa: E731

        @jax.jit  # one compile for both paths, the keep mask and both gradients
        def values_and_gradients(x, router, params):
            keep = moe.dispatch_keep_mask(moe.router_logits(x, router), k, cap)
            ga = jax.grad(loss(via_dispatch), argnums=(0, 1, 2))(x, router, params)
            gb = jax.grad(loss(via_masked), argnums=(0, 1, 2))(x, router, params)
            return via_dispatch(x, router, params), via_masked(x, router, params), keep, ga, gb

        a, b, keep, ga, gb = values_and_gradients(x, router, params)
        np.testing.assert_allclose(a, b, atol=1e-10)
        assert bool(keep.sum(-1).min() < k) == (cap < 10)  # drops exactly when capacity < S
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=1e-9), ga, gb)


def test_dispatch_flops_scale_with_k():
    """Expert matmuls dominate at d = h = 128: halving k about halves the counted FLOPs."""
    x, logits = jnp.ones((4, 256, 128)), jnp.zeros((4, 256, 8))
    params = _experts(jax.random.PRNGKey(0), n=8, d=128, h=128, dtype=jnp.float32)

    def flops(k):
        cap = moe.expert_capacity(256, 8, k, 1.0)
        fn = jax.jit(lambda x, lg: moe.moe_dispatch(x, lg, *params, k=k, capacity=cap))
        return fn.lower(x, logits).compile().cost_analysis()["flops"]

    assert flops(1) < 0.55 * flops(2) and flops(2) < 0.55 * flops(4)


def test_router_init_matches_pytorch_linear_default():
    kernel, bias = moe.random_router_init(jax.random.PRNGKey(0), 64, 8)
    assert kernel.shape == (64, 8) and bias.shape == (8,)
    assert float(jnp.abs(kernel).max()) <= 1 / 8 and float(jnp.abs(bias).max()) <= 1 / 8
    assert float(jnp.abs(kernel).max()) > 0.1  # spread over the whole U(-1/sqrt(d), 1/sqrt(d))


def test_load_balancing_loss_is_one_when_balanced_and_n_when_collapsed():
    tokens = jnp.arange(64) % N
    balanced = 30.0 * jax.nn.one_hot(tokens, N)
    collapsed = 30.0 * jax.nn.one_hot(jnp.zeros(64, jnp.int32), N)
    np.testing.assert_allclose(moe.load_balancing_loss(balanced, 1), 1.0, atol=1e-5)
    np.testing.assert_allclose(moe.load_balancing_loss(collapsed, 1), float(N), atol=1e-5)
    np.testing.assert_allclose(moe.load_balancing_loss(jnp.zeros((64, N)), N), 1.0, atol=1e-6)
