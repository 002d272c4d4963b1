"""Weight decay follows what a parameter is (matrix vs scale / bias / vector), not its rank.

Every shipped config (so every model family: decoder with each mixer, projection and feed-forward,
MoT, the MLM-U encoder-decoder, the ICL LSA model) is built abstractly; then one real AdamW step with
zero gradients is taken, in which only weight decay moves a parameter: every matrix must shrink by
exactly (1 - lr * wd) and every norm scale, bias and learned vector must stay bit-identical.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.configs_loader import load_config
from jaxformers.data.registry import get_dataset_builder
from jaxformers.models.registry import build_model
from jaxformers.train.experiment import init_variables
from jaxformers.train.state import decay_mask, decays, make_optimizer

try:
    from jaxformers.config import model_config_from
except ImportError:  # before the issue-18 move of the model config
    from jaxformers.models.config import model_config_from

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
# One config per kind of parameter tree: dense decoder, TokenFormer, learned MoE (biases, router),
# SMoE-Dropout (frozen router), MoT with QK norms, GLA, MLM-U encoder-decoder, ICL LSA.
FAMILIES = (
    "default",
    "tokenformer",
    "smoe_dropout:variant=learned",
    "smoe_dropout",
    "mot",
    "gla_lm",
    "maze_mlmu",
    "icl_lsa",
    "icl_lsa:von_oswald",
)


def _boxed_variables(name):
    name, _, preset = name.partition(":")
    path = os.path.join(CONFIG_DIR, f"{name}.py")
    config = load_config(path, preset or None)
    if "num_train" in config.data:  # mazes: a few are enough to build the model
        config.data.update(num_train=16, num_validation=16)
    model = build_model(config.model_family, model_config_from(config.model))
    batch = next(
        get_dataset_builder(config.data.name)(
            config.data, split="train", seed=0, batch_size=1, process_index=0, process_count=1
        )
    )
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    rngs = {
        "params": jax.random.PRNGKey(0),
        "routing": jax.random.PRNGKey(1),
        "dropout": jax.random.PRNGKey(2),
    }
    return config, jax.eval_shape(lambda: init_variables(model, batch, rngs))


def _leaves(tree):
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))
    return [("/".join(str(k.key) for k in kp), leaf) for kp, leaf in flat[0]]


def _is_vector_kind(path, boxed) -> bool:
    """The oracle, from the parameter's logical axes and its layer: norm scales (a 'norm' axis),
    biases, and the encoder-decoder's learned query vector (one 'embed' axis and nothing else)."""
    name = path.rsplit("/", 1)[-1]
    names = tuple(getattr(boxed, "names", ()) or ())
    return "norm" in names or "bias" in name or name in ("b1", "b2") or names == ("embed",)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_mask_decays_every_matrix_and_no_scale_bias_or_vector(name):
    _, boxed = _boxed_variables(name)
    mask = jax.tree.leaves(decay_mask(nn.meta.unbox(boxed["params"])))
    for (path, leaf), decayed in zip(_leaves(boxed["params"]), mask, strict=True):
        assert decayed is not _is_vector_kind(path, leaf), path


@pytest.mark.parametrize("name", ["smoe_dropout:variant=learned", "mot"])
def test_one_adamw_step_with_zero_gradients_moves_only_the_matrices(name):
    """With zero gradients only weight decay moves a parameter: matrices shrink by exactly
    (1 - lr * wd); norm scales (rank 3 under nn.scan), biases and vectors stay bit-identical."""
    config, boxed = _boxed_variables(name)
    # Normal parameters drawn in numpy, the optimizer's init and step in one jit: drawn with
    # jax.random or initialised eagerly, every parameter shape would compile its own programs.
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: rng.standard_normal(s.shape).astype(s.dtype), nn.meta.unbox(boxed["params"])
    )
    config.weight_decay, config.warmup_steps, config.learning_rate = 0.1, 0, 0.01
    tx = make_optimizer(config)
    step = jax.jit(lambda p: tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)[0])
    updates = step(params)
    shrink = np.float32(1 - 0.01 * 0.1)
    checked = {True: 0, False: 0}
    for (path, leaf), old, update in zip(
        _leaves(boxed["params"]), jax.tree.leaves(params), jax.tree.leaves(updates), strict=True
    ):
        vector = _is_vector_kind(path, leaf)
        checked[vector] += 1
        if vector:
            np.testing.assert_array_equal(update, 0, err_msg=f"{path} was decayed")
        else:
            np.testing.assert_allclose(old + update, old * shrink, rtol=1e-6, err_msg=path)
    assert checked[True] >= 3 and checked[False] >= 6, checked


def test_scanned_norm_scales_are_not_decayed_although_they_have_rank_3():
    _, boxed = _boxed_variables("mot")
    mask = dict(
        zip(
            [p for p, _ in _leaves(boxed["params"])],
            jax.tree.leaves(decay_mask(nn.meta.unbox(boxed["params"]))),
        )
    )
    scale = mask["layers/mixer_norm/scale"]
    assert jax.tree.leaves(nn.meta.unbox(boxed["params"])["layers"]["mixer_norm"])[0].ndim == 3
    assert scale is False and mask["layers/mixer/query_norm/scale"] is False
    assert mask["layers/mixer/query/kernel"] is True and mask["embed/embedding"] is True


def test_an_unknown_parameter_name_is_a_one_line_error_naming_it():
    with pytest.raises(ValueError, match=r"'layers/mixer/alpha'.*DECAYED or NOT_DECAYED") as e:
        decays("layers/mixer/alpha")
    assert "\n" not in str(e.value)
