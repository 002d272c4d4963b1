"""Claims about the GLA and causal linear-attention token mixers inside the decoder."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.models import sampling
from jaxformers.models.compiled import jitted_apply
from jaxformers.models.decoder import Decoder


@functools.cache
def _model(mixer, gla_feature_map="identity"):
    """(model, variables, tokens), initialised once per mixer for the tests of this file."""
    cfg = model_config_from(
        dict(vocab_size=32, embed_dim=32, num_layers=2, num_heads=2, max_len=24,
             token_mixer=mixer, gla=dict(chunk_size=8, feature_map=gla_feature_map),
             linear_attention=dict(chunk_size=8))
    )
    model = Decoder(cfg)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 20), 0, 32)
    return model, jax.jit(model.init)(jax.random.PRNGKey(1), tokens), tokens


def _apply(mixer, gla_feature_map="identity"):
    """The mixer's model.apply, jitted once (an eager apply compiles its layer scan every call)."""
    return jitted_apply(_model(mixer, gla_feature_map)[0])


@pytest.mark.parametrize("mixer,gla_feature_map", [("gla", "identity"), ("gla", "elu_plus_one"),
                                                   ("linear_attention", "identity")])
def test_decoding_with_recurrent_state_equals_chunked_forward(mixer, gla_feature_map):
    model, variables, tokens = _model(mixer, gla_feature_map)
    full = _apply(mixer, gla_feature_map)(variables, tokens)
    decode = jax.jit(lambda v, tok, pos: model.apply(v, tok, positions=pos, decode=True,
                                                     mutable=["cache"]))
    cache = sampling.init_cache(model, 2)
    prefill = 7  # prompt not a multiple of the chunk: chunked prefill with padding
    pos = jnp.broadcast_to(jnp.arange(prefill), (2, prefill))
    logits, state = decode(variables | {"cache": cache}, tokens[:, :prefill], pos)
    outs = [logits]
    for i in range(prefill, tokens.shape[1]):  # one compile for all single-token steps
        logits, state = decode(variables | state, tokens[:, i : i + 1], jnp.full((2, 1), i))
        outs.append(logits)
    # float32, two layers, logits O(0.3): agreement to ~1e-6 means identical math
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("mixer", ["gla", "linear_attention"])
def test_mixer_is_causal(mixer):
    _, variables, tokens = _model(mixer)
    apply = _apply(mixer)
    changed = tokens.at[:, 6:].set((tokens[:, 6:] + 1) % 32)
    np.testing.assert_array_equal(apply(variables, tokens)[:, :6], apply(variables, changed)[:, :6])


def test_gla_feature_map_changes_the_scores_not_the_parameters():
    _, plain, tokens = _model("gla")
    _, mapped, _ = _model("gla", "elu_plus_one")
    same_shapes = jax.tree.map(lambda a, b: a.shape == b.shape, plain, mapped)
    assert all(jax.tree.leaves(same_shapes))
    # the same weights (same init key), positive scores: a different function
    out_plain = _apply("gla")(plain, tokens)
    out_mapped = _apply("gla", "elu_plus_one")(plain, tokens)
    assert float(jnp.abs(out_plain - out_mapped).max()) > 1e-3


def test_gla_layer_parameter_budget_is_about_4d2():
    model, variables, _ = _model("gla")
    mixer = jax.tree.leaves(variables["params"]["layers"]["mixer"])
    count = sum(np.prod(x.shape) for x in mixer) // 2  # two layers
    d = 32
    # q,k d*d/2 each; v, out_gate, out d*d each; gate d*16 + 16*d/2 + d/2; norm d/H
    assert count == 4 * d * d + d * 16 + 16 * d // 2 + d // 2 + d // 2


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match="model.gla.key_dim_ratio"):
        model_config_from(dict(embed_dim=32, num_heads=3, head_dim=8, token_mixer="gla"))
    with pytest.raises(ConfigError, match="model.gla.chunk_size"):
        model_config_from(dict(token_mixer="gla", gla=dict(chunk_size=48)))
    with pytest.raises(ConfigError, match="model.gla.feature_map"):
        model_config_from(dict(token_mixer="gla", gla=dict(feature_map="tanh")))
    with pytest.raises(ConfigError, match="model.linear_attention.feature_map"):
        model_config_from(dict(token_mixer="linear_attention",
                               linear_attention=dict(feature_map="tanh")))


@pytest.mark.parametrize("mixer", ["gla", "linear_attention"])
def test_packed_documents_equal_each_document_run_alone(mixer):
    """segment_ids reset the recurrent state at each document start (the boundary at 11 falls
    inside a chunk of 8), so a packed row equals its documents run separately."""
    _, variables, tokens = _model(mixer)
    apply = _apply(mixer)
    segment_ids = jnp.broadcast_to((jnp.arange(20) >= 11).astype(jnp.int32), tokens.shape)
    packed = apply(variables, tokens, segment_ids=segment_ids)
    alone = jnp.concatenate([apply(variables, tokens[:, :11]), apply(variables, tokens[:, 11:])], axis=1)
    np.testing.assert_allclose(packed, alone, atol=2e-6, rtol=1e-5)
    assert not np.allclose(packed[:, 11:], apply(variables, tokens)[:, 11:], atol=1e-4)


@pytest.mark.parametrize("mixer", ["gla", "linear_attention", "attention"])
def test_decoding_with_segment_ids_is_a_one_line_error_naming_the_mixer(mixer):
    """A KV cache or a recurrent state holds one document per row: packed rows cannot decode."""
    model, variables, tokens = _model(mixer)
    cache = sampling.init_cache(model, 2)
    with pytest.raises(ValueError, match=f"model.token_mixer='{mixer}': decoding takes no segment_ids"):
        model.apply(variables | {"cache": cache}, tokens[:, :3], decode=True, mutable=["cache"],
                    segment_ids=jnp.zeros_like(tokens[:, :3]))


def test_gla_kernel_dispatch_matches_the_xla_path():
    """impl="auto" goes through kernels.gla (XLA on CPU, Pallas on GPU/TPU); same parameters."""
    model, variables, tokens = _model("gla")
    cfg = model_config_from(
        dict(vocab_size=32, embed_dim=32, num_layers=2, num_heads=2, max_len=24,
             token_mixer="gla", gla=dict(chunk_size=16, impl="auto"))
    )
    auto = jax.jit(Decoder(cfg).apply)(variables, tokens)
    np.testing.assert_allclose(auto, _apply("gla")(variables, tokens), atol=1e-6, rtol=1e-6)
