"""Future token prediction (Walker 2024, model.mtp.kind="ftp"): prediction i at position t reads
x_{<=t+i-1} and nothing later, the plain call is prediction 1, the loss weights decay as
gamma^(i-1), and bad options fail in one line."""

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
def ftp():
    cfg = tiny_model_config(
        num_layers=1, mtp={"num_future_tokens": N, "kind": "ftp", "pseudo_sequence_length": 2}
    )
    model = MTPDecoder(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, T), 0, cfg.vocab_size)
    variables = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), tokens))
    apply = jax.jit(lambda x: model.apply(variables, x, heads="all"))
    return model, variables, tokens, apply


def _changed_from(tokens, p):
    return tokens.at[:, p:].set((tokens[:, p:] + 7) % 32)


def test_prediction_i_at_t_reads_tokens_up_to_t_plus_i_minus_1_and_no_further(ftp):
    _, _, tokens, apply = ftp
    base = apply(tokens)
    assert base.shape == (N, 2, T, 32)
    for j in range(N):  # prediction j + 1 = x_{t+j+1}, decoder input j is x_{t+j}
        after = apply(_changed_from(tokens, POS + j + 1))
        np.testing.assert_array_equal(after[j, :, : POS + 1], base[j, :, : POS + 1])
        at = apply(_changed_from(tokens, POS + j))  # the window is exactly x_{<=t+j}
        assert not np.allclose(at[j, :, POS], base[j, :, POS])


def test_plain_call_is_prediction_one_and_the_pseudo_sequence_has_L_vectors(ftp):
    model, variables, tokens, apply = ftp
    first = jax.jit(lambda x: model.apply(variables, x))(tokens)
    np.testing.assert_allclose(first, apply(tokens)[0], rtol=1e-5, atol=1e-6)
    decoder = variables["params"]["ftp_decoder"]
    assert decoder["expand"]["kernel"].shape == (32, 2 * 32)  # W in R^{Ld x d}, L = 2
    assert {"self_block", "cross_block", "trunk_norm"} <= set(decoder)
    assert not any(k.startswith("mtp_heads") for k in variables["params"])


def test_loss_weights_decay_exponentially_with_distance(ftp):
    model, variables, _, _ = ftp
    seq = jax.random.randint(jax.random.PRNGKey(3), (2, T + 1), 0, 32)
    batch = {"inputs": seq[:, :-1], "targets": seq[:, 1:]}
    loss, m = jax.jit(
        lambda b: mtp_loss(model, variables, b, rng=jax.random.PRNGKey(2), step=jnp.int32(0), train=False)
    )(batch)
    expected = m["loss_head1"] + 0.5 * m["loss_head2"] + 0.25 * m["loss_head3"]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert m["loss_head2"] > 0 and m["loss_head3"] > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pseudo_sequence_length": 0}, "model.mtp.pseudo_sequence_length=0 must be >= 1"),
        ({"backward": "one_head_at_a_time"}, "model.mtp.backward='one_head_at_a_time' needs"),
    ],
)
def test_bad_ftp_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError) as err:
        tiny_model_config(mtp={"num_future_tokens": 2, "kind": "ftp", **options})
    assert message in str(err.value) and "\n" not in str(err.value)
