"""Sequential MTP modules (DeepSeek-V3 §2.2): depth k at position t sees no token beyond t+k, the
loss weight lambda, and the parallel heads' memory-efficient backward (Gloeckle et al. Fig. 2)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.models.mtp import MTPDecoder
from jaxformers.objectives.multi_token import mtp_loss
from jaxformers.testing import tiny_model_config

N, T, POS = 3, 12, 4


@pytest.fixture(scope="module")
def sequential():
    cfg = tiny_model_config(mtp={"num_future_tokens": N, "kind": "sequential"})
    model = MTPDecoder(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, T), 0, cfg.vocab_size)
    variables = nn.unbox(model.init(jax.random.PRNGKey(0), tokens))
    apply = jax.jit(lambda x: model.apply(variables, x, heads="all"))
    return model, variables, tokens, apply


def _changed_from(tokens, p):
    return tokens.at[:, p:].set((tokens[:, p:] + 7) % 32)


def test_depth_k_at_position_t_sees_tokens_up_to_t_plus_k_and_no_further(sequential):
    _, _, tokens, apply = sequential
    base = apply(tokens)
    assert base.shape == (N, 2, T, 32)
    for k in range(N):  # depth k (k = 0 is head 1) predicts x_{t+k+1} from x_{<=t+k}
        after = apply(_changed_from(tokens, POS + k + 1))
        np.testing.assert_array_equal(after[k, :, : POS + 1], base[k, :, : POS + 1])
        # ...and it does read x_{t+k}: the window is exactly t+k, not shorter
        at = apply(_changed_from(tokens, POS + k))
        assert not np.allclose(at[k, :, POS], base[k, :, POS])


def test_head_one_is_the_next_token_path_and_modules_share_embedding_and_head(sequential):
    model, variables, tokens, apply = sequential
    # eager vs jitted float32: equal up to rounding
    np.testing.assert_allclose(model.apply(variables, tokens), apply(tokens)[0], rtol=1e-5, atol=1e-6)
    params = variables["params"]
    assert {"mtp_heads_0", "mtp_modules_0", "mtp_modules_1", "embed", "head"} <= set(params)
    assert "mtp_heads_1" not in params
    assert params["mtp_modules_0"]["proj"]["kernel"].shape == (64, 32)  # M_k in R^{d x 2d}


def _batch(seed=1):
    seq = jax.random.randint(jax.random.PRNGKey(seed), (2, T + 1), 0, 32)
    return {"inputs": seq[:, :-1], "targets": seq[:, 1:], "weights": jnp.ones((2, T)).at[1, -2:].set(0)}


def _loss_and_grads(cfg, batch, variables=None):
    model = MTPDecoder(cfg)
    variables = variables or nn.unbox(model.init(jax.random.PRNGKey(0), batch["inputs"]))

    def loss(params):
        return mtp_loss(
            model,
            variables | {"params": params},
            batch,
            rng=jax.random.PRNGKey(2),
            step=jnp.int32(0),
            train=True,
        )

    return variables, jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])


def test_lambda_weights_the_mean_of_the_depth_losses(sequential):
    model, variables, _, _ = sequential
    batch = _batch()
    loss, m = mtp_loss(model, variables, batch, rng=jax.random.PRNGKey(2), step=jnp.int32(0), train=False)
    np.testing.assert_allclose(
        loss, m["loss_head1"] + 0.3 / 2 * (m["loss_head2"] + m["loss_head3"]), rtol=1e-6
    )  # fmt: skip  (the paper's lambda = 0.3, D = 2)
    zero = tiny_model_config(mtp={"num_future_tokens": N, "kind": "sequential", "loss_weight": 0.0})
    _, ((loss0, m0), grads0) = _loss_and_grads(zero, batch, variables)
    # lambda = 0: the main loss alone, and the modules get no gradient
    np.testing.assert_allclose(loss0, m0["loss_head1"], rtol=1e-6)
    np.testing.assert_allclose(m0["loss_head1"], m["loss_head1"], rtol=1e-5)
    assert all(not np.any(g) for g in jax.tree.leaves(grads0["mtp_modules_0"]))
    assert np.any(grads0["mtp_heads_0"]["ffn_norm"]["scale"])


def test_one_head_at_a_time_backward_gives_the_plain_gradients():
    batch = _batch(3)
    plain = tiny_model_config(mtp={"num_future_tokens": 4}, tie_embeddings=True)
    saving = tiny_model_config(
        mtp={"num_future_tokens": 4, "backward": "one_head_at_a_time"}, tie_embeddings=True
    )
    variables, ((loss, metrics), grads) = _loss_and_grads(plain, batch)
    _, ((loss_s, metrics_s), grads_s) = _loss_and_grads(saving, batch, variables)
    np.testing.assert_allclose(loss_s, loss, rtol=1e-6)
    for key in metrics:
        np.testing.assert_allclose(metrics_s[key], metrics[key], rtol=1e-6, atol=1e-7, err_msg=key)
    # the tied embedding gets gradient from the trunk and from every head: both paths must add up
    assert np.any(grads["embed"]["embedding"]) and np.any(grads["mtp_heads_3"]["ffn_norm"]["scale"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6), grads, grads_s)


def test_sequential_with_the_one_head_backward_is_a_one_line_error():
    with pytest.raises(
        ConfigError, match=r"model\.mtp\.backward='one_head_at_a_time' needs model\.mtp\.kind"
    ):
        tiny_model_config(
            mtp={"num_future_tokens": 2, "kind": "sequential", "backward": "one_head_at_a_time"}
        )
    with pytest.raises(ConfigError, match=r"model\.mtp\.loss_weight=-1\.0 must be >= 0"):
        tiny_model_config(mtp={"num_future_tokens": 2, "loss_weight": -1.0})
