"""Depth growth (Du et al. 2024, arXiv 2405.15319): G_stack copies, G_zero preserves the function."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from growth_helpers import build, init, init_shapes

from jaxformers.growth import depth
from jaxformers.growth.registry import GrowthError, get_transform


@pytest.fixture(scope="module")
def base():
    cfg, model = build()
    variables, _, _ = init(model, cfg)
    return variables


def test_stack_factor_one_is_identity(base):
    chex.assert_trees_all_equal(depth.stack(base, 1), base)


@pytest.mark.parametrize("factor", [2, 4])
def test_stack_layer_i_is_base_layer_i_mod_l(base, factor):
    grown = depth.stack(base, factor)
    for path, g in jax.tree_util.tree_flatten_with_path(grown["params"]["layers"])[0]:
        b = dict(jax.tree_util.tree_flatten_with_path(base["params"]["layers"])[0])[path]
        assert g.shape[0] == 2 * factor
        for i in range(2 * factor):
            np.testing.assert_array_equal(g[i], b[i % 2], err_msg=jax.tree_util.keystr(path))
    for key in ("embed", "final_norm", "head"):  # outside the layer axis: unchanged
        chex.assert_trees_all_equal(grown["params"][key], base["params"][key])


def test_interleave_and_partial_orders():
    assert depth.stack_indices(3, 2) == [0, 1, 2, 0, 1, 2]
    assert depth.interleave_indices(3, 2) == [0, 0, 1, 1, 2, 2]
    assert depth.partial_stack_indices(6, 2, 4, 10) == [0, 1, 2, 3, 2, 3, 2, 3, 4, 5]
    assert depth.connection_rate(depth.stack_indices(6, 4)) == pytest.approx(20 / 23)
    assert depth.connection_rate(depth.interleave_indices(6, 4)) == pytest.approx(5 / 23)
    with pytest.raises(ValueError, match="target_layers=9"):
        depth.partial_stack_indices(6, 2, 4, 9)


def test_copies_are_independent_after_an_update(base):
    """A donated, jitted update of the grown tree changes copy 0 and copy L differently and
    leaves the base model's arrays alive and unchanged."""
    base_before = jax.tree.map(np.array, base)
    grown = depth.stack(base, 2)
    cfg, model = build(layers=4)
    tokens = jnp.arange(16).reshape(2, 8) % cfg.vocab_size

    @jax.jit
    def loss(params):
        return jnp.mean(model.apply({"params": params}, tokens) ** 2)

    @jax.jit
    def update(params):
        grads = jax.grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 1.0 * g, params, grads)

    new = jax.jit(update, donate_argnums=0)(grown["params"])
    kernel = new["layers"]["mixer"]["query"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[2])  # layer 0 and its copy 2 diverged
    chex.assert_trees_all_equal(jax.tree.map(np.array, base), base_before)


def test_zeroing_rule_names_residual_outputs_only(base):
    grown = depth.zero_init_depth(base, 2)
    for path, x in jax.tree_util.tree_flatten_with_path(grown["params"]["layers"])[0]:
        new_copies_zero = not np.any(x[2:])
        assert new_copies_zero == depth.is_residual_output(path), jax.tree_util.keystr(path)


def test_noise_blend_moves_matrices_not_norms(base):
    grown = depth.stack(base, 2)
    noisy = depth.blend_noise(grown, 0.2, jax.random.PRNGKey(0), embed_dim=32)
    layers, noisy_layers = grown["params"]["layers"], noisy["params"]["layers"]
    chex.assert_trees_all_equal(noisy_layers["mixer_norm"], layers["mixer_norm"])
    q, nq = layers["mixer"]["query"]["kernel"], noisy_layers["mixer"]["query"]["kernel"]
    assert not np.allclose(q, nq)
    # W' - 0.8 W = 0.2 eps with eps ~ N(0, 2 / (5 d)): its std is 0.2 * sqrt(2/160) ~ 0.022.
    assert np.std(nq - 0.8 * q) == pytest.approx(0.2 * (2 / 160) ** 0.5, rel=0.15)
    chex.assert_trees_all_equal(noisy["params"]["embed"], grown["params"]["embed"])


@pytest.mark.parametrize("name", ["g_stack", "g_zero", "interleave"])
def test_transforms_check_what_they_grow(base, name):
    cfg, _ = build()
    target_cfg, target_model = build(layers=8)
    target_init = init_shapes(target_model, target_cfg)  # the transforms read shapes and dtypes
    fn = get_transform(name)
    out = fn(base, source_cfg=cfg, target_cfg=target_cfg, target_init=target_init,
             rng=jax.random.PRNGKey(0))
    chex.assert_trees_all_equal_shapes_and_dtypes(out, target_init)
    bad_cfg, _ = build(layers=7)
    with pytest.raises(GrowthError, match="not a multiple"):
        fn(base, source_cfg=cfg, target_cfg=bad_cfg, target_init=target_init,
           rng=jax.random.PRNGKey(0))
    wide_cfg, _ = build(layers=8, embed_dim=64)
    with pytest.raises(GrowthError, match="embed_dim"):
        fn(base, source_cfg=cfg, target_cfg=wide_cfg, target_init=target_init,
           rng=jax.random.PRNGKey(0))


def test_partial_g_stack_option(base):
    cfg, _ = build()
    target_cfg, target_model = build(layers=5)
    target_init = init_shapes(target_model, target_cfg)
    out = get_transform("g_stack")(base, source_cfg=cfg, target_cfg=target_cfg,
                                   target_init=target_init, rng=jax.random.PRNGKey(0),
                                   start=1, stop=2)
    k = out["params"]["layers"]["mixer"]["query"]["kernel"]
    b = base["params"]["layers"]["mixer"]["query"]["kernel"]
    for i, j in enumerate([0, 1, 1, 1, 1]):
        np.testing.assert_array_equal(k[i], b[j])
