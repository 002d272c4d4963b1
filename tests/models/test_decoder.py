"""The composed decoder: shapes, dtypes, causality, KV-cache decoding, gradients, config errors."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxformers.config import ConfigError, model_config_from
from jaxformers.models.decoder import Decoder
from jaxformers.models.sampling import generate
from jaxformers.testing import tiny_model_config


def _init(cfg, tokens):
    model = Decoder(cfg)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), tokens)


def test_logits_shape_dtype_and_layer_axis():
    cfg = tiny_model_config()
    tokens = jnp.ones((2, 8), jnp.int32)
    model, variables = _init(cfg, tokens)
    logits = model.apply(variables, tokens)
    chex.assert_shape(logits, (2, 8, cfg.vocab_size))
    assert logits.dtype == jnp.float32
    kernel = variables["params"]["layers"]["mixer"]["query"]["kernel"]
    assert kernel.value.shape[0] == cfg.num_layers and kernel.names[0] == "layers"


def test_bfloat16_activations_keep_float32_params_and_logits():
    cfg = tiny_model_config(dtype="bfloat16")
    tokens = jnp.ones((2, 8), jnp.int32)
    model, variables = _init(cfg, tokens)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    assert model.apply(variables, tokens).dtype == jnp.float32


def test_jit_equals_no_jit():
    cfg = tiny_model_config()
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, cfg.vocab_size)
    model, variables = _init(cfg, tokens)
    np.testing.assert_allclose(jax.jit(model.apply)(variables, tokens),
                               model.apply(variables, tokens), atol=1e-5)


def test_changing_a_token_never_changes_earlier_outputs():
    cfg = tiny_model_config()
    tokens = jax.random.randint(jax.random.PRNGKey(2), (1, 8), 0, cfg.vocab_size)
    model, variables = _init(cfg, tokens)
    apply = jax.jit(model.apply)
    base = apply(variables, tokens)
    for s in (3, 6):
        changed = tokens.at[0, s].set((tokens[0, s] + 1) % cfg.vocab_size)
        out = apply(variables, changed)
        np.testing.assert_array_equal(out[:, :s], base[:, :s])
        assert not np.allclose(out[:, s:], base[:, s:])


def test_gradient_causality_through_inputs():
    """d logits[t] / d input_embedding[s] == 0 for s > t (gradient form of causality)."""
    cfg = tiny_model_config()
    tokens = jax.random.randint(jax.random.PRNGKey(3), (1, 6), 0, cfg.vocab_size)
    model, variables = _init(cfg, tokens)
    onehot = jax.nn.one_hot(tokens, cfg.vocab_size)

    def outputs(onehot_in):  # [T]: the summed logits of each position
        x = onehot_in @ variables["params"]["embed"]["embedding"].value
        logits = model.apply(variables, tokens, method=_apply_from_embeddings, x=x)
        return logits[0].sum(-1)

    jacobian = np.asarray(jax.jit(jax.jacrev(outputs))(onehot))  # [T, 1, T, V], one compile
    for t in range(5):
        g = jacobian[t]
        assert np.abs(g[0, t + 1 :]).max() == 0.0
        assert np.abs(g[0, : t + 1]).max() > 0.0


def _apply_from_embeddings(module, tokens, *, x):
    from jaxformers.nn.context import Context

    ctx = Context(positions=jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape))
    h, _ = module.layers(x, ctx)
    return module.head(module.final_norm(h, ctx))


def test_decoding_with_kv_cache_matches_full_forward():
    cfg = tiny_model_config()
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]], jnp.int32)
    model, variables = _init(cfg, prompt)
    out = generate(model, variables, prompt, jax.random.PRNGKey(0), max_new_tokens=6,
                   temperature=0.0)
    chex.assert_shape(out, (2, 9))
    # Causal: one forward pass over the generated sequence gives every step's greedy token.
    greedy = model.apply(variables, out[:, :-1])[:, 2:].argmax(-1)
    np.testing.assert_array_equal(greedy, out[:, 3:])


def test_top_k_one_is_greedy():
    cfg = tiny_model_config()
    prompt = jnp.array([[1, 2, 3]], jnp.int32)
    model, variables = _init(cfg, prompt)
    greedy = generate(model, variables, prompt, jax.random.PRNGKey(0), max_new_tokens=4,
                      temperature=0.0)
    top1 = generate(model, variables, prompt, jax.random.PRNGKey(5), max_new_tokens=4,
                    temperature=1.0, top_k=1)
    np.testing.assert_array_equal(greedy, top1)


def test_parameter_gradients_match_finite_differences_in_float64():
    with jax.enable_x64(True):
        cfg = tiny_model_config(embed_dim=8, num_heads=2, num_kv_heads=1, num_layers=1,
                                param_dtype="float64", dtype="float64", vocab_size=8)
        tokens = jnp.array([[1, 2, 3, 4]])
        model, variables = _init(cfg, tokens)
        params = nn.meta.unbox(variables["params"])
        loss = jax.jit(lambda p: jnp.sum(model.apply({"params": p}, tokens) ** 2) / 100)
        check_grads(loss, (params,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"embed_dim": 30, "num_heads": 4}, "num_heads=4 does not divide model.embed_dim=30"),
        ({"num_kv_heads": 3}, "num_kv_heads=3"),
        ({"token_mixer": "nope"}, "model.token_mixer='nope'"),
        ({"embed_dims": 32}, "unknown config key model.embed_dims"),
        ({"num_layers": "4"}, "model.num_layers='4' has type str"),
        ({"moe": {"num_expert": 4}}, "unknown config key model.moe.num_expert"),
    ],
)
def test_bad_model_config_names_the_field(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        model_config_from(values)
