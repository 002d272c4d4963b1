"""Gated attention and clipped softmax in the attention layer and decoder (Bondarenko et al. 2023)."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.models.decoder import Decoder
from jaxformers.nn.attention import Attention
from jaxformers.nn.context import Context
from jaxformers.testing import tiny_model_config

OUTLIER_FREE = {"softmax": "clipped", "gamma": -0.05, "zeta": 1.0, "gate": "per_head"}


def _ctx(x):
    return Context(positions=np.broadcast_to(np.arange(x.shape[1]), x.shape[:2]))


def _normal(seed, shape):
    """Inputs drawn in numpy (jax.random compiles its sampler at every shape)."""
    return np.random.default_rng(seed).standard_normal(shape, np.float32)


def _init(module, *args):
    return jax.jit(module.init)(jax.random.PRNGKey(1), *args)


def _apply(module, variables, *args, **kwargs):
    """One compiled program per call (eager apply compiles every op of the layer on its own)."""
    return jax.jit(functools.partial(module.apply, **kwargs))(variables, *args)


def test_gate_fixed_open_equals_plain_attention_with_gqa_and_rope():
    x = _normal(0, (2, 7, 32))
    gated_cfg = tiny_model_config(attention={"gate": "per_head"})
    plain_cfg = tiny_model_config()
    params = nn.unbox(_init(Attention(gated_cfg), x, _ctx(x))["params"])
    chex.assert_shape(params["gate"]["proj"]["kernel"], (1, 32, 4))  # [modalities, d, H]
    np.testing.assert_allclose(jax.nn.sigmoid(params["gate"]["bias"]), 0.25, rtol=1e-6)  # pi_init
    opened = dict(params)
    opened["gate"] = {"proj": {"kernel": np.zeros_like(params["gate"]["proj"]["kernel"])},
                      "bias": np.full_like(params["gate"]["bias"], 50.0)}  # sigmoid(50) == 1.0
    plain = {k: v for k, v in params.items() if k != "gate"}
    gated_apply = jax.jit(Attention(gated_cfg).apply)
    got = gated_apply({"params": opened}, x, _ctx(x))
    want = _apply(Attention(plain_cfg), {"params": plain}, x, _ctx(x))
    np.testing.assert_array_equal(got, want)
    # At init the gate is 0.25 (up to x W_g): the output is no longer the plain one.
    assert not np.allclose(gated_apply({"params": params}, x, _ctx(x)), want, atol=1e-3)


def test_outlier_free_decoder_is_causal():
    cfg = tiny_model_config(attention=OUTLIER_FREE, num_layers=1)
    tokens = jnp.array([[1, 2, 3, 4, 5, 6]], jnp.int32)
    model = Decoder(cfg)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), tokens)
    apply = jax.jit(model.apply)  # eager, the layer scan would compile at every call
    base = apply(variables, tokens)
    changed = apply(variables, tokens.at[0, 4].set(9))
    np.testing.assert_array_equal(base[:, :4], changed[:, :4])
    assert not np.allclose(base[:, 4:], changed[:, 4:])


def test_kv_cache_decoding_matches_full_forward_with_gate_and_clipped_softmax():
    # A 3-token prompt, then 2 tokens against the cache: the same outputs as one causal pass
    # (the layer alone: models/sampling.py's generate runs this same cache path through the decoder).
    cfg = tiny_model_config(attention=OUTLIER_FREE)
    x = _normal(4, (2, 5, 32))
    attn = Attention(cfg)
    params = _init(attn, x, _ctx(x))["params"]
    full = _apply(attn, {"params": params}, x, _ctx(x))

    def decode_ctx(chunk, start):
        positions = start + np.broadcast_to(np.arange(chunk.shape[1]), chunk.shape[:2])
        return Context(positions=positions, decode=True)

    cache = _init(attn, x[:, :3], decode_ctx(x[:, :3], 0))["cache"]
    step = jax.jit(functools.partial(attn.apply, mutable=["cache"]))  # compiles per chunk length
    outs = []
    for start, stop in ((0, 3), (3, 5)):
        out, state = step({"params": params, "cache": cache}, x[:, start:stop],
                          decode_ctx(x[:, start:stop], start))
        cache = state["cache"]
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-6)


def test_gate_outside_the_pallas_kernel_matches_xla():
    x = _normal(2, (1, 8, 32))
    xla = tiny_model_config(attention={"gate": "per_head"})
    pallas = tiny_model_config(attention={"gate": "per_head", "impl": "pallas", "block_q": 8, "block_kv": 8})
    params = _init(Attention(xla), x, _ctx(x))
    np.testing.assert_allclose(_apply(Attention(pallas), params, x, _ctx(x)),
                               _apply(Attention(xla), params, x, _ctx(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options,message", [
    ({"softmax": "clipped", "gamma": 0.1}, r"model.attention.gamma=0.1 must be <= 0"),
    ({"softmax": "clipped", "zeta": 0.5}, r"model.attention.zeta=0.5 must be >= 1"),
    ({"softmax": "clipped", "gamma": -0.02, "impl": "pallas"}, r"needs model.attention.impl='xla'"),
    ({"gate": "per_head", "gate_init": 1.0}, r"gate_init=1.0 must be in \(0, 1\)"),
    ({"softmax": "sparsemax"}, r"model.attention.softmax='sparsemax'; expected one of"),
])
def test_bad_outlier_options_are_one_line_config_errors(options, message):
    with pytest.raises(ConfigError, match=message) as e:
        tiny_model_config(attention=options)
    assert "\n" not in str(e.value)
