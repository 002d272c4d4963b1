"""TokenFormer growth (Wang et al. 2025): zero keys + frozen τ preserve the model exactly."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import jaxformers.nn  # noqa: F401  (registers every block kind)
from jaxformers.config import model_config_from
from jaxformers.growth import tokens
from jaxformers.growth.registry import GrowthError, get_transform
from jaxformers.models.compiled import jitted_apply
from jaxformers.models.registry import build_model
from jaxformers.ops.pattention import value_init_std
from jaxformers.testing import tiny_train_config
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import load_variables

BASE = dict(vocab_size=64, embed_dim=32, num_layers=2, num_heads=2, max_len=16,
            projections="pattention", feed_forward="pattention")
SMALL, BIG = dict(attn_tokens=8, ffn_tokens=32), dict(attn_tokens=32, ffn_tokens=128)  # 4x


def build(size, **overrides):
    cfg = model_config_from({**BASE, **overrides, "pattention": {**size, **overrides.get(
        "pattention", {})}})
    model = build_model("decoder", cfg)
    tokens_ = jax.random.randint(jax.random.PRNGKey(7), (2, 12), 0, cfg.vocab_size)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(size["attn_tokens"]),
                                                  tokens_))
    return cfg, model, variables, tokens_


@pytest.fixture(scope="module")
def pair():
    return build(SMALL), build(BIG)


def grow(pair, **options):
    (cfg, _, variables, _), (big_cfg, _, big_init, _) = pair
    return get_transform("tokenformer_grow")(variables, source_cfg=cfg, target_cfg=big_cfg,
                                             target_init=big_init, rng=jax.random.PRNGKey(3),
                                             **options)


def test_grown_tokenformer_preserves_logits(pair):
    """Zero new keys + frozen τ: grown(x) == small(x) through the whole decoder. float32, 1e-6:
    the new scores are exact zeros; only reassociation of longer sums can differ."""
    (_, model, variables, x), (_, big_model, _, _) = pair
    grown = grow(pair)
    np.testing.assert_allclose(jitted_apply(big_model)(grown, x), jitted_apply(model)(variables, x),
                               atol=1e-6, rtol=0)


def test_gelu_l2_norm_growth_also_preserves_logits():
    small, big = build(SMALL, pattention=dict(norm="gelu_l2_norm")), build(
        BIG, pattention=dict(norm="gelu_l2_norm"))
    grown = grow((small, big))
    want = jitted_apply(small[1])(small[2], small[3])
    np.testing.assert_allclose(jitted_apply(big[1])(grown, small[3]), want, atol=1e-6, rtol=0)


def test_recomputed_tau_changes_the_function(pair):
    """The caveat: τ = sqrt(n + m) rescales the old scores, so the logits move."""
    (_, model, variables, x), (_, big_model, _, _) = pair
    grown = grow(pair, tau="recompute")
    np.testing.assert_allclose(grown["constants"]["layers"]["mixer"]["query"]["tau"], [32**0.5] * 2)
    diff = np.abs(jitted_apply(big_model)(grown, x) - jitted_apply(model)(variables, x)).max()
    assert diff > 1e-3


def test_released_code_growth_random_keys_changes_the_function(pair):
    (_, model, variables, x), (_, big_model, _, _) = pair
    grown = grow(pair, key_init="normal", tau="recompute")
    assert np.abs(jitted_apply(big_model)(grown, x) - jitted_apply(model)(variables, x)).max() > 1e-3


def test_growth_appends_tokens_and_keeps_old_ones(pair):
    (_, _, variables, _), (big_cfg, _, _, _) = pair
    grown = grow(pair)
    for path in tokens.find_pattention_layers(variables["params"]):
        old = tokens._get(variables["params"], path)
        new = tokens._get(grown["params"], path)
        n = old["key_tokens"].shape[-2]
        assert new["key_tokens"].shape[-2] == 4 * n
        np.testing.assert_array_equal(new["key_tokens"][..., :n, :], old["key_tokens"])
        np.testing.assert_array_equal(new["value_tokens"][..., :n, :], old["value_tokens"])
        np.testing.assert_array_equal(new["key_tokens"][..., n:, :], 0.0)
        assert np.all(new["value_tokens"][..., n:, :] != 0)
        np.testing.assert_array_equal(tokens._get(grown["constants"], path)["tau"],
                                      tokens._get(variables["constants"], path)["tau"])
    ffn_values = grown["params"]["layers"]["ffn"]["pattention"]["value_tokens"][..., 32:, :]
    # 2*96*32 = 6144 samples: sample std within 5% of the target std.
    assert np.std(ffn_values) == pytest.approx(value_init_std(2, 32), rel=0.05)
    np.testing.assert_array_equal(grown["params"]["embed"]["embedding"],
                                  variables["params"]["embed"]["embedding"])


def test_grow_tokens_by_a_count():
    (_, _, variables, _) = build(SMALL)
    grown = tokens.grow_tokens(variables, 3, rng=jax.random.PRNGKey(0), key_init="normal",
                               value_init="zeros")
    k = grown["params"]["layers"]["mixer"]["out"]["key_tokens"]
    assert k.shape[-2] == 11 and np.all(k[..., 8:, :] != 0)
    np.testing.assert_array_equal(grown["params"]["layers"]["mixer"]["out"]["value_tokens"]
                                  [..., 8:, :], 0.0)


def test_growth_errors_are_clear(pair):
    (cfg, _, variables, _), (big_cfg, _, big_init, _) = pair
    transform = get_transform("tokenformer_grow")
    kwargs = dict(rng=jax.random.PRNGKey(0))
    dense_cfg = model_config_from({k: v for k, v in BASE.items()
                                   if k not in ("projections", "feed_forward")})
    # The error paths read trees and shapes only: jax.eval_shape, no init compile.
    dense = nn.meta.unbox(jax.eval_shape(build_model("decoder", dense_cfg).init,
                                         jax.random.PRNGKey(0), np.zeros((1, 4), np.int32)))
    with pytest.raises(GrowthError, match="not a TokenFormer"):
        transform(dense, source_cfg=dense_cfg, target_cfg=big_cfg, target_init=big_init, **kwargs)
    with pytest.raises(GrowthError, match="cannot shrink"):
        transform(big_init, source_cfg=big_cfg, target_cfg=cfg, target_init=variables, **kwargs)
    with pytest.raises(ValueError, match="never receive a gradient"):
        grow(pair, value_init="zeros")
    with pytest.raises(ValueError, match="unknown options"):
        grow(pair, zoom=4)
    wide_cfg = model_config_from({**BASE, "embed_dim": 64, "pattention": BIG})
    wide_init = nn.meta.unbox(jax.eval_shape(build_model("decoder", wide_cfg).init,
                                             jax.random.PRNGKey(0), np.zeros((1, 4), np.int32)))
    with pytest.raises(GrowthError, match="embed"):
        transform(variables, source_cfg=cfg, target_cfg=wide_cfg, target_init=wide_init, **kwargs)
    with pytest.raises(GrowthError, match="no Pattention layer"):
        tokens.grow_tokens({"params": {"w": np.ones(3)}}, 2, rng=jax.random.PRNGKey(0))


def _train_config(size, **overrides):
    return tiny_train_config(**{
        "model.projections": "pattention", "model.feed_forward": "pattention",
        "model.pattention": dict(size), "num_steps": 4, "eval_every": 4, "checkpoint_every": 4,
        **overrides})


def test_init_from_checkpoint_round_trip_preserves_the_loss(tmp_path):
    """Train a small TokenFormer (checkpointed), grow it through `config.init_from` in the
    training loop: the validation loss before any step equals the small model's final one;
    training on keeps τ frozen at the old sqrt(n) in the new checkpoints."""
    one = jax.devices()[:1]  # the claim is about growth, not the mesh: one device compiles less
    small_metrics = train_and_evaluate(_train_config(SMALL), tmp_path / "small", devices=one)
    grow_cfg = _train_config(BIG, num_steps=2, eval_every=2, checkpoint_every=2)
    grow_cfg.init_from.workdir = str(tmp_path / "small")
    grow_cfg.init_from.transform = "tokenformer_grow"
    at_growth = train_and_evaluate(grow_cfg, tmp_path / "grown", devices=one, stop_at_step=0)
    np.testing.assert_allclose(at_growth["loss"], small_metrics["loss"], atol=1e-6, rtol=0)
    train_and_evaluate(grow_cfg, tmp_path / "grown", devices=one)
    _, grown_vars, step = load_variables(str(tmp_path / "grown"))
    assert step == 2
    np.testing.assert_allclose(grown_vars["constants"]["layers"]["ffn"]["pattention"]["tau"],
                               [32**0.5] * 2)
    assert grown_vars["params"]["layers"]["ffn"]["pattention"]["key_tokens"].shape[-2] == 128
