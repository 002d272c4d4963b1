"""The "mtp" objective and model: head i is a next-token loss shifted by i, n = 1 is next token,
causality of every head, bad input in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.models.mtp import MTPDecoder
from jaxformers.objectives.multi_token import mtp_loss
from jaxformers.objectives.next_token import cross_entropy, next_token_loss
from jaxformers.testing import tiny_model_config


def _setup(n, seq_len=12, **overrides):
    cfg = tiny_model_config(mtp={"num_future_tokens": n}, **overrides)
    model = MTPDecoder(cfg)
    seq = jax.random.randint(jax.random.PRNGKey(1), (2, seq_len + 1), 0, cfg.vocab_size)
    batch = {"inputs": seq[:, :-1], "targets": seq[:, 1:],
             "weights": jnp.ones((2, seq_len)).at[0, -3:].set(0.0)}
    variables = model.init(jax.random.PRNGKey(0), batch["inputs"])
    return model, variables, batch, seq


def _loss(model, variables, batch):
    return mtp_loss(model, variables, batch, rng=jax.random.PRNGKey(2), step=jnp.int32(0),
                    train=False)


def test_head_i_loss_is_the_next_token_loss_of_the_sequence_shifted_by_i():
    model, variables, batch, seq = _setup(4)
    _, metrics = _loss(model, variables, batch)
    logits = model.apply(variables, batch["inputs"], heads="all")
    t = batch["inputs"].shape[1]
    for i in range(1, 5):
        # head i at position p predicts seq[p + i]: a next-token loss whose targets are shifted.
        targets = seq[:, i: i + t - i + 1]
        weights = batch["weights"][:, i - 1:]
        expected, _ = cross_entropy(logits[i - 1][:, : t - i + 1], targets, weights)
        np.testing.assert_allclose(metrics[f"loss_head{i}"], expected, rtol=1e-6)
    total = sum(metrics[f"loss_head{i}"] for i in range(1, 5))
    np.testing.assert_allclose(metrics["loss"], total, rtol=1e-6)


def test_one_head_equals_next_token_exactly():
    model, variables, batch, _ = _setup(1)
    kw = dict(rng=jax.random.PRNGKey(2), step=jnp.int32(0), train=False)
    loss, metrics = mtp_loss(model, variables, batch, **kw)
    ref_loss, ref_metrics = next_token_loss(model, variables, batch, **kw)
    assert loss == ref_loss and metrics["accuracy"] == ref_metrics["accuracy"]
    assert metrics["loss_head1"] == ref_metrics["loss"]


def test_plain_call_is_head_one_and_heads_share_the_unembedding():
    model, variables, batch, _ = _setup(3)
    first = model.apply(variables, batch["inputs"])
    every = model.apply(variables, batch["inputs"], heads="all")
    assert every.shape == (3, *first.shape)
    np.testing.assert_array_equal(first, every[0])
    params = variables["params"]
    assert {"mtp_heads_0", "mtp_heads_1", "mtp_heads_2", "head", "final_norm"} <= set(params)
    assert not np.allclose(every[0], every[1])


@pytest.mark.parametrize("mixer", ["attention", "gla"])
def test_no_head_sees_a_future_input_token(mixer):
    model, variables, batch, _ = _setup(3, token_mixer=mixer, gla={"chunk_size": 4})
    p = 5
    # Changing the tokens after p changes nothing at p, for every head.
    base = model.apply(variables, batch["inputs"], heads="all")
    changed = batch["inputs"].at[:, p + 1:].set((batch["inputs"][:, p + 1:] + 7) % 32)
    moved = model.apply(variables, changed, heads="all")
    np.testing.assert_array_equal(base[:, :, : p + 1], moved[:, :, : p + 1])
    assert not np.allclose(base[:, :, p + 1:], moved[:, :, p + 1:])


def test_bad_head_counts_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"model\.mtp\.num_future_tokens=0 must be >= 1"):
        tiny_model_config(mtp={"num_future_tokens": 0})
    with pytest.raises(ConfigError, match=r"model\.mtp\.num_future_tokens=17 must be <= model\.max_len"):
        tiny_model_config(mtp={"num_future_tokens": 17})
    model, variables, batch, _ = _setup(6, seq_len=12)
    short = {k: v[:, :4] for k, v in batch.items()}
    with pytest.raises(ConfigError, match=r"num_future_tokens=6 exceeds the sequence length 4"):
        _loss(model, variables, short)
