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
    cfg = model_config_from(
        dict(
            embed_dim=16,
            num_layers=2,
            num_heads=2,
            max_len=max_len,
            token_mixer=mixer,
            mlp_dim=32,
            gla=dict(chunk_size=4),
            linear_attention=dict(chunk_size=4),
        )
    )
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

    @jax.jit  # init and both jacobians in one compilation
    def jacobians(key):
        params = model.init(key, xs, ys)
        jy = jax.jacrev(lambda y: model.apply(params, xs, y)[0])(ys)[:, 0]  # [i, j]
        jx = jnp.abs(jax.jacrev(lambda x: model.apply(params, x, ys)[0])(xs)[:, 0]).sum(-1)
        return jy, jx

    # d ŷ_i / d y_j must vanish for j >= i, d ŷ_i / d x_j for j > i; earlier examples must matter
    jy, jx = (np.asarray(j) for j in jacobians(jax.random.key(2)))
    n = xs.shape[1]
    future_y = np.triu(np.ones((n, n), bool))
    future_x = np.triu(np.ones((n, n), bool), k=1)
    assert np.all(jy[future_y] == 0) and np.all(jx[future_x] == 0)
    assert np.all(np.abs(jy[~future_y]) > 0)


def test_prompt_longer_than_max_len_is_a_one_line_config_error():
    model = _model("attention", max_len=10)
    xs, ys = jnp.zeros((1, 6, 3)), jnp.zeros((1, 6))
    with pytest.raises(ConfigError, match=r"data.num_points=6 .* 12 tokens > model.max_len=10"):
        model.init(jax.random.key(0), xs, ys)


def _data(**kw):
    return ml_collections.ConfigDict(dict(name="icl_functions") | kw)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(task="sparse_linear", dim=5, sparsity=6), "config.data.sparsity=6 must satisfy 1 <= k"),
        (
            dict(task="linear", dim=2, covariance=((1.0, 2.0), (2.0, 1.0))),
            "config.data.covariance must be symmetric positive definite",
        ),
        (dict(task="trees"), "config.data.task='trees'; expected one of"),
    ],
)
def test_bad_data_config_is_a_one_line_config_error(kw, message):
    with pytest.raises(ConfigError, match=message):
        icl_functions.build(
            _data(**kw), split="train", seed=0, batch_size=2, process_index=0, process_count=1
        )


def test_one_sgd_step_lowers_the_loss_and_weights_mask_prefixes():
    b = next(
        icl_functions.build(
            _data(task="linear", dim=3, num_points=6),
            split="train",
            seed=0,
            batch_size=8,
            process_index=0,
            process_count=1,
        )
    )
    model = _model("attention")
    weights = np.broadcast_to(np.arange(6) < 4, (8, 6)).astype(np.float32)  # first 4 examples

    @jax.jit
    def losses(key):
        params = model.init(key, b["inputs"], b["targets"])
        loss = lambda p, batch: icl_functions_loss(model, p, batch, rng=None, step=0, train=True)[0]
        stepped = jax.tree.map(lambda p, g: p - 1e-2 * g, params, jax.grad(loss)(params, b))
        masked = loss(params, b | {"weights": weights})
        pred = model.apply(params, b["inputs"], b["targets"])
        return loss(params, b), loss(stepped, b), masked, jnp.mean((pred - b["targets"])[:, :4] ** 2)

    before, after, masked, first_four = (float(v) for v in losses(jax.random.key(0)))
    assert after < before
    np.testing.assert_allclose(masked, first_four, rtol=1e-6)
