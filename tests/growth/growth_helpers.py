"""Tiny decoders for the growth tests."""

import flax.linen as nn
import jax

import jaxformers.nn  # noqa: F401  (registers every block kind)
from jaxformers.config import model_config_from
from jaxformers.growth import depth
from jaxformers.models.registry import build_model

TINY = dict(vocab_size=64, embed_dim=32, num_layers=2, num_heads=2, max_len=16, mlp_dim=48,
            layer_loop="scan", weight_grad_matmul="xla")


def build(layers=2, **overrides):
    cfg = model_config_from({**TINY, **overrides, "num_layers": layers})
    return cfg, build_model("decoder", cfg)


def init(model, cfg, seed=0, with_output=False):
    """(variables {params, constants}, tokens, modality_ids[, logits]) from one jitted init."""
    tokens = jax.random.randint(jax.random.PRNGKey(seed + 1), (2, 8), 0, cfg.vocab_size)
    modality_ids = jax.random.randint(jax.random.PRNGKey(seed + 2), (2, 8), 0, cfg.num_modalities)
    rngs = {n: jax.random.PRNGKey(seed + i) for i, n in enumerate(("params", "routing", "dropout"))}
    logits, variables = jax.jit(model.init_with_output)(rngs, tokens, modality_ids=modality_ids)
    variables = nn.meta.unbox(variables)
    variables = {k: v for k, v in variables.items() if k in depth.LAYER_COLLECTIONS}
    if with_output:
        return variables, tokens, modality_ids, logits
    return variables, tokens, modality_ids


def init_shapes(model, cfg):
    """The {params, constants} tree of `init` as ShapeDtypeStructs (jax.eval_shape: no compile),
    for transforms that read only the target's tree, shapes and dtypes."""
    tokens = jax.ShapeDtypeStruct((2, 8), jax.numpy.int32)
    rngs = {n: jax.random.PRNGKey(i) for i, n in enumerate(("params", "routing", "dropout"))}
    variables = nn.meta.unbox(jax.eval_shape(model.init, rngs, tokens, modality_ids=tokens))
    return {k: v for k, v in variables.items() if k in depth.LAYER_COLLECTIONS}
