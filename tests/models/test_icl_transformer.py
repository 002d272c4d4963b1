"""The continuous-input ICL transformer: causal structure for every token mixer, bad input."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.data import icl_functions
from jaxformers.models.icl_transformer import ICLTransformer, interleave
from jaxformers.objectives.icl_functions import icl_functions_loss


def _model(mixer, max_len=16):
    cfg = model_config_from(dict(embed_dim=16, num_layers=2, num_heads=2, max_len=max_len,
                                 token_mixer=mixer, mlp_dim=32, gla=dict(chunk_size=4),
                                 linear_attention=dict(chunk_size=4)))
    return ICLTransformer(cfg)


def test_interleave_puts_y_in_the_first_slot_after_its_x():
    xs, ys = jnp.arange(12.0).reshape(1, 3, 4), jnp.array([[10.0, 20.0, 30.0]])
    t = interleave(xs, ys)
    np.testing.assert_array_equal(t[0, ::2], xs[0])
    np.testing.assert_array_equal(t[0, 1::2], jnp.zeros((3, 4)).at[:, 0].set(ys[0]))


@pytest.mark.parametrize("mixer", ["attention", "gla", "linear_attention"])
def test_prediction_at_example_i_never_depends_on_y_i_or_later(mixer):
    model = _model(mixer)
    xs, ys = jax.random.normal(jax.random.key(0), (2, 8, 3)), jax.random.normal(jax.random.key(1), (2, 8))
    params = jax.jit(model.init)(jax.random.key(2), xs, ys)
    # d ŷ_i / d y_j must vanish for j >= i, d ŷ_i / d x_j for j > i; earlier examples must matter
    jy = jax.jit(jax.jacrev(lambda y: model.apply(params, xs, y)[0]))(ys)[:, 0]  # [i, j]
    jx = jnp.abs(jax.jit(jax.jacrev(lambda x: model.apply(params, x, ys)[0]))(xs)[:, 0]).sum(-1)
    n = xs.shape[1]
    future_y = np.triu(np.ones((n, n), bool))
    future_x = np.triu(np.ones((n, n), bool), k=1)
    assert np.all(np.asarray(jy)[future_y] == 0) and np.all(np.asarray(jx)[future_x] == 0)
    assert np.all(np.abs(np.asarray(jy)[~future_y]) > 0)


def test_prompt_longer_than_max_len_is_a_one_line_config_error():
    model = _model("attention", max_len=10)
    xs, ys = jnp.zeros((1, 6, 3)), jnp.zeros((1, 6))
    with pytest.raises(ConfigError, match=r"data.num_points=6 .* 12 tokens > model.max_len=10"):
        model.init(jax.random.key(0), xs, ys)


def _data(**kw):
    return ml_collections.ConfigDict(dict(name="icl_functions") | kw)


@pytest.mark.parametrize("kw, message", [
    (dict(task="sparse_linear", dim=5, sparsity=6), "config.data.sparsity=6 must satisfy 1 <= k"),
    (dict(task="linear", dim=2, covariance=((1.0, 2.0), (2.0, 1.0))),
     "config.data.covariance must be symmetric positive definite"),
    (dict(task="trees"), "config.data.task='trees'; expected one of"),
])
def test_bad_data_config_is_a_one_line_config_error(kw, message):
    with pytest.raises(ConfigError, match=message):
        icl_functions.build(_data(**kw), split="train", seed=0, batch_size=2, process_index=0,
                            process_count=1)


def test_dataset_resumes_exactly_and_loss_trains_down():
    cfg = _data(task="linear", dim=3, num_points=6)
    it = icl_functions.build(cfg, split="train", seed=0, batch_size=8, process_index=0, process_count=1)
    next(it)
    state, b1 = it.get_state(), next(it)
    it.set_state(state)
    np.testing.assert_array_equal(next(it)["inputs"], b1["inputs"])
    assert b1["inputs"].shape == (8, 6, 3) and b1["targets"].shape == (8, 6)
    model = _model("attention")
    params = model.init(jax.random.key(0), b1["inputs"], b1["targets"])
    loss = jax.jit(lambda p: icl_functions_loss(model, p, b1, rng=None, step=0, train=True)[0])
    grad = jax.grad(loss)(params)
    stepped = jax.tree.map(lambda p, g: p - 1e-2 * g, params, grad)
    assert float(loss(stepped)) < float(loss(params))
