"""G_zero depth growth is function preserving for every block kind the decoder can build."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from growth_helpers import TINY, build, init

from jaxformers.config import model_config_from
from jaxformers.growth import depth
from jaxformers.models.registry import build_model
from jaxformers.nn import registry
from jaxformers.nn.projection import PROJECTIONS

# Extra fields a block kind needs to be tiny (or valid) in a 32-wide model.
KIND_OVERRIDES = {
    ("projections", "pattention"): dict(pattention=dict(attn_tokens=8, ffn_tokens=16)),
    ("feed_forward", "pattention"): dict(pattention=dict(attn_tokens=8, ffn_tokens=16)),
}

_DEFAULT = model_config_from(TINY)
# Every registered kind (the default attention + SwiGLU + dense block once), MoT, Chameleon norms.
BLOCK_KINDS = (
    [("token_mixer", "attention")]
    + [("token_mixer", n) for n in sorted(registry.TOKEN_MIXERS) if n != _DEFAULT.token_mixer]
    + [("feed_forward", n) for n in sorted(registry.FEED_FORWARDS) if n != _DEFAULT.feed_forward]
    + [("projections", n) for n in sorted(PROJECTIONS) if n != _DEFAULT.projections]
    + [("num_modalities", 2), ("norm_placement", "after_branch")]
)


@pytest.mark.parametrize("field,value", BLOCK_KINDS, ids=[f"{f}={v}" for f, v in BLOCK_KINDS])
def test_zero_init_depth_preserves_the_function(field, value):
    """G_zero: every new block adds exactly zero, so grown(x) == base(x). Tolerance 1e-6:
    only float reassociation in XLA fusions could differ (in practice the diff is 0)."""
    overrides = {field: value, **KIND_OVERRIDES.get((field, value), {})}
    try:
        cfg, model = build(**overrides)
    except ValueError as e:  # a kind that needs other fields: add it to KIND_OVERRIDES
        pytest.fail(f"cannot build a tiny model with {field}={value!r}: {e}")
    variables, tokens, modality_ids, want = init(model, cfg, with_output=True)
    grown_cfg = dataclasses.replace(cfg, num_layers=4)
    grown_model = build_model("decoder", grown_cfg)
    grown = depth.zero_init_depth(variables, 2)

    def loss(params):
        logits = grown_model.apply({**grown, "params": params}, tokens, modality_ids=modality_ids)
        return jnp.mean(jnp.sin(logits)), logits

    (_, got), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(grown["params"])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    # The first L layers are the base's; the zeroed weights of the new blocks get a gradient,
    # so the new blocks can learn (a zeroed Pattention key would leave them dead).
    first = jax.tree.map(lambda x: x[:2], grown["params"]["layers"])
    chex.assert_trees_all_equal(first, variables["params"]["layers"])
    zeroed = [
        jax.tree_util.keystr(path)
        for path, _ in jax.tree_util.tree_flatten_with_path(grown["params"]["layers"])[0]
        if depth.is_residual_output(path)
    ]
    assert zeroed, "no residual-output weight found: extend depth.RESIDUAL_OUTPUT_NAMES"
    for path, g in jax.tree_util.tree_flatten_with_path(grads["layers"])[0]:
        if depth.is_residual_output(path):
            assert np.any(g[2:] != 0), f"zeroed {jax.tree_util.keystr(path)} gets no gradient"


