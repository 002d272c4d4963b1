"""TokenFormer layers: Pattention projection / FFN and the decoder built from them."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.models.registry import build_model
from jaxformers.nn.context import Context
from jaxformers.nn.pattention import PattentionFFN, PattentionProjection
from jaxformers.ops.pattention import theta, value_init_std

TOKENFORMER = dict(vocab_size=64, embed_dim=32, num_layers=2, num_heads=2, max_len=16,
                   projections="pattention", feed_forward="pattention",
                   pattention=dict(attn_tokens=24, ffn_tokens=96))


def _ctx(batch=2, length=8):
    positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
    return Context(positions=positions, segment_ids=None, modality_ids=None, step=None,
                   active_experts=None, decode=False, deterministic=True)


def test_ffn_equals_two_layer_mlp_with_theta():
    """FFN(x) = Θ(x W1) W2 with W1 = K_P^T and W2 = V_P (Wang et al. 2025): the same function
    as a 2-layer MLP whose nonlinearity is Θ. float32, 1e-6: the same two matmuls."""
    cfg = model_config_from(TOKENFORMER)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 32))
    ffn = PattentionFFN(cfg=cfg)
    variables = jax.jit(ffn.init)(jax.random.PRNGKey(1), x, _ctx())
    p = nn.meta.unbox(variables["params"])["pattention"]
    w1, w2 = p["key_tokens"][0].T, p["value_tokens"][0]
    assert w1.shape == (32, 96) and w2.shape == (96, 32)
    tau = variables["constants"]["pattention"]["tau"]
    assert float(tau) == pytest.approx(96**0.5)
    want = theta(x @ w1, tau=tau) @ w2
    np.testing.assert_allclose(jax.jit(ffn.apply)(variables, x, _ctx()), want, atol=1e-6, rtol=1e-6)


def test_projection_init_follows_the_paper():
    """Keys N(0, 0.02), values N(0, (2 / (L sqrt(d)))^2) (`wang_init`), τ = sqrt(n) in constants."""
    cfg = model_config_from({**TOKENFORMER, "pattention": dict(attn_tokens=512, ffn_tokens=64)})
    layer = PattentionProjection(cfg=cfg, features=64, axes=("embed", "q_heads"), role="q")
    x = jnp.ones((1, 2, 32))
    variables = jax.jit(layer.init)(jax.random.PRNGKey(0), x, _ctx(1, 2))
    p = nn.meta.unbox(variables["params"])
    assert p["key_tokens"].shape == (1, 512, 32) and p["value_tokens"].shape == (1, 512, 64)
    # 16k and 32k samples: the sample std is within 3% of its target with overwhelming odds.
    assert np.std(p["key_tokens"]) == pytest.approx(0.02, rel=0.03)
    assert np.std(p["value_tokens"]) == pytest.approx(value_init_std(2, 32), rel=0.03)
    assert float(variables["constants"]["tau"]) == pytest.approx(512**0.5)


@functools.cache
def _tokenformer():
    """(model, its jitted apply, variables, tokens): one initialisation and one compiled apply for
    the decoder tests below."""
    model = build_model("decoder", model_config_from(TOKENFORMER))
    tokens = jax.random.randint(jax.random.PRNGKey(0), (2, 8), 0, 64)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(1), tokens))
    return model, jax.jit(model.apply), variables, tokens


def test_decoder_replaces_every_projection_and_drops_norm_parameters():
    _, apply, variables, tokens = _tokenformer()
    layers = variables["params"]["layers"]
    assert set(layers) == {"mixer", "ffn"}  # non-parametric norms: no mixer_norm/ffn_norm params
    for name in ("query", "key", "value", "out"):
        assert layers["mixer"][name]["key_tokens"].shape == (2, 1, 24, 32)  # [L, K, n, d]
        tau = variables["constants"]["layers"]["mixer"][name]["tau"]
        np.testing.assert_allclose(tau, [24**0.5] * 2)
    assert layers["ffn"]["pattention"]["value_tokens"].shape == (2, 1, 96, 32)
    leaves = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
    assert not any("kernel" in jax.tree_util.keystr(p) and "layers" in jax.tree_util.keystr(p)
                   for p, _ in leaves)
    logits = apply(variables, tokens)
    assert logits.shape == (2, 8, 64) and np.all(np.isfinite(logits))


def test_tau_is_a_constant_not_a_parameter():
    """τ lives in "constants": gradients w.r.t. params never include it, and changing it
    changes the function (so a checkpoint must carry it)."""
    model, apply, variables, tokens = _tokenformer()
    grads = jax.eval_shape(
        jax.grad(lambda p: jnp.sum(model.apply({**variables, "params": p}, tokens))), variables["params"]
    )  # fmt: skip  (only the gradient's tree is checked)
    assert "tau" not in str(jax.tree_util.tree_structure(grads))
    scaled = jax.tree.map(lambda t: t * 2, variables["constants"])
    assert not np.allclose(apply({**variables, "constants": scaled}, tokens), apply(variables, tokens))


def test_modality_untied_pattention_uses_each_tokens_own_tokens():
    """MoT x TokenFormer: with K = 2 each token uses its modality's parameter tokens."""
    cfg = model_config_from({**TOKENFORMER, "num_modalities": 2})
    layer = PattentionProjection(cfg=cfg, features=16, role="q")
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 32))
    ids = jnp.broadcast_to(jnp.arange(8) % 2, (2, 8))
    ctx = _ctx().replace(modality_ids=ids)
    variables = jax.jit(layer.init)(jax.random.PRNGKey(1), x, ctx)
    p = nn.meta.unbox(variables["params"])
    out = jax.jit(layer.apply)(variables, x, ctx)
    tau = variables["constants"]["tau"]
    for k in (0, 1):
        want = theta(x @ p["key_tokens"][k].T, tau=tau) @ p["value_tokens"][k]
        np.testing.assert_allclose(out[:, k::2], want[:, k::2], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("field,value,match", [
    ("attn_tokens", 0, "attn_tokens=0"),
    ("ffn_tokens", -4, "ffn_tokens=-4"),
    ("norm", "l1", "norm='l1'"),
])
def test_bad_options_are_config_errors(field, value, match):
    with pytest.raises(ConfigError, match=match):
        model_config_from({**TOKENFORMER, "pattention": {field: value}})
