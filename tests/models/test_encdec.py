"""Claims about the MLM-U encoder-decoder (Nolte et al. 2024, arXiv 2412.05117)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxformers.config import model_config_from
from jaxformers.models.registry import build_model


def _model(**kw):
    cfg = model_config_from(dict(vocab_size=40, embed_dim=32, num_layers=2, num_heads=4,
                                 max_len=64) | kw)
    return build_model("encdec", cfg)


@functools.cache
def _init(model, batch=2, length=16):
    """(tokens, variables); cached: the tests of one model share its initialisation."""
    tokens = jax.random.randint(jax.random.PRNGKey(0), (batch, length), 0, 40)
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), tokens, jnp.ones_like(tokens, bool))
    return tokens, variables


def test_decoder_queries_carry_no_token_content():
    """Logits depend on the tokens only through visible keys: rewriting every masked token
    changes nothing (exactly), rewriting a visible one changes the logits."""
    model = _model()
    tokens, variables = _init(model)
    visible = jnp.arange(16)[None].repeat(2, 0) % 3 != 0
    apply = jax.jit(model.apply)  # one compilation for the three calls
    logits = apply(variables, tokens, visible)
    scrambled = jnp.where(visible, tokens, (tokens + 7) % 40)
    np.testing.assert_array_equal(apply(variables, scrambled, visible), logits)
    changed = tokens.at[:, 1].set((tokens[:, 1] + 1) % 40)
    assert not np.allclose(apply(variables, changed, visible), logits)


def test_querying_a_subset_of_positions_equals_the_full_decode():
    model = _model()
    tokens, variables = _init(model)
    visible = jnp.arange(16)[None].repeat(2, 0) < 9
    full = jax.jit(model.apply)(variables, tokens, visible)
    query = jnp.array([[9, 12, 15], [10, 11, 3]])
    part = jax.jit(model.apply)(variables, tokens, visible, query_positions=query)
    np.testing.assert_allclose(part, jnp.take_along_axis(full, query[..., None], 1), atol=1e-5)


def test_rope_is_float32_under_bfloat16_activations():
    """Two adjacent positions that bfloat16 cannot tell apart still get different queries."""
    positions = np.arange(256, 1024)
    as_bf16 = np.asarray(jnp.asarray(positions, jnp.bfloat16).astype(jnp.float32))
    p = int(positions[np.flatnonzero(as_bf16[1:] == as_bf16[:-1])[0]])  # bf16(p) == bf16(p+1)
    model = _model(dtype="bfloat16")
    tokens, variables = _init(model)
    visible = jnp.ones_like(tokens, bool)
    # eager: the p / p+1 difference is below bfloat16 resolution once XLA fuses the whole decode
    logits = model.apply(variables, tokens, visible, query_positions=jnp.array([[p, p + 1]] * 2))
    assert logits.dtype == jnp.float32
    assert not np.array_equal(logits[:, 0], logits[:, 1])


def test_parameter_count_matches_a_decoder_with_twice_the_layers():
    enc = _model(num_layers=2)
    dec = build_model("decoder", model_config_from(dict(vocab_size=40, embed_dim=32, num_layers=4,
                                                        num_heads=4, max_len=64)))
    tokens = jnp.zeros((2, 16), jnp.int32)
    v_enc = jax.eval_shape(enc.init, jax.random.PRNGKey(1), tokens, jnp.ones_like(tokens, bool))
    v_dec = jax.eval_shape(dec.init, jax.random.PRNGKey(1), tokens)
    count = lambda v: sum(x.size for x in jax.tree.leaves(v["params"]))  # noqa: E731
    # Extra: the query vector, the encoder's final norm and q/k/v biases (4 attention layers).
    assert count(v_enc) - count(v_dec) == 32 + 32 + 4 * 3 * 32
    layers = jax.tree.leaves(v_enc["params"]["decoder"])
    assert all(x.shape[0] == 2 for x in layers)  # scanned: a leading "layers" axis
