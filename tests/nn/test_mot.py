"""Mixture-of-Transformers layers (Liang et al. 2025, §2.2): untied-per-modality blocks, global attention.

Tolerances: float32 paths that compute the same products in a different order (einsum over all
modalities then select, vs a sorted/tiled matmul) agree to ~1e-6 on O(1) logits; 1e-5 leaves room.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.models.decoder import Decoder
from jaxformers.models.sampling import ConstantModality, ModalityByVocabRange, generate
from jaxformers.testing import tiny_model_config, tiny_train_config

ATOL = 1e-5
MOT = dict(attention=dict(qk_norm=True), norm_placement="after_branch")


class _Jitted:
    """A Decoder whose apply is jitted once (keeps this file's compile time to seconds): call
    `model.apply` directly; wrapping it in another jax.jit would compile the model again."""

    def __init__(self, cfg):
        self.cfg, self.module = cfg, Decoder(cfg)
        self._apply = jax.jit(self.module.apply)

    def apply(self, params, tokens, **kwargs):
        return self._apply(params, tokens, **kwargs)


@functools.cache
def _cached_setup(num_modalities, batch, length, overrides):
    overrides = {k: dict(v) if isinstance(v, tuple) else v for k, v in overrides}
    cfg = tiny_model_config(num_modalities=num_modalities, embed_dim=16, num_heads=2,
                            num_kv_heads=1, **(MOT | overrides))
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    tokens = jax.random.randint(k1, (batch, length), 0, cfg.vocab_size)
    ids = jax.random.randint(k2, (batch, length), 0, num_modalities)
    model = _Jitted(cfg)
    boxed = jax.jit(model.module.init)(jax.random.PRNGKey(1), tokens, modality_ids=ids)
    return cfg, model, boxed, tokens, ids


def _setup(num_modalities, batch=4, length=16, **overrides):
    frozen = tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                          for k, v in overrides.items()))
    return _cached_setup(num_modalities, batch, length, frozen)


def _map_modality_axis(boxed, fn):
    """Apply fn(numpy array, axis) to every parameter that has a "modality" logical axis (in numpy:
    eager jnp would compile each op at each parameter shape)."""

    def visit(leaf):
        if isinstance(leaf, nn.LogicallyPartitioned) and "modality" in leaf.names:
            return fn(np.asarray(leaf.value), leaf.names.index("modality"))
        return nn.meta.unbox(leaf)

    return jax.tree.map(visit, boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def test_every_block_parameter_is_untied_and_embeddings_head_are_not():
    cfg, _, boxed, *_ = _setup(3)
    flat = jax.tree_util.tree_flatten_with_path(
        boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))[0]
    for path, leaf in flat:
        name = jax.tree_util.keystr(path)
        untied = "modality" in leaf.names
        assert untied == ("layers" in name or "final_norm" in name), name
        if untied:
            assert leaf.value.shape[leaf.names.index("modality")] == 3, name
    names = " ".join(jax.tree_util.keystr(p) for p, _ in flat)
    assert "query_norm" in names and "key_norm" in names  # QK-norm is untied too (§4.1)


GROUPED = dict(modality_dispatch="grouped", mot=dict(tile_size=8, groups=2))  # 2+ tiles/group
SETUPS = {"select": {}, "grouped": GROUPED}


@pytest.mark.parametrize("dispatch", ["select", "grouped"])
def test_k1_equals_dense_when_every_modality_holds_the_same_weights(dispatch):
    _, model1, boxed1, tokens, _ = _setup(1)
    _, model3, _, _, ids = _setup(3, **SETUPS[dispatch])
    tied = _map_modality_axis(boxed1, lambda v, ax: np.repeat(v, 3, axis=ax))
    np.testing.assert_allclose(
        model3.apply(tied, tokens, modality_ids=ids),
        model1.apply(nn.meta.unbox(boxed1), tokens),
        atol=ATOL,
    )


@pytest.mark.parametrize("m", [0, 2])
def test_all_tokens_of_modality_m_equal_a_dense_block_with_m_weights(m):
    _, model3, boxed3, tokens, _ = _setup(3)
    _, model1, *_ = _setup(1)
    sliced = _map_modality_axis(boxed3, lambda v, ax: np.take(v, [m], axis=ax))
    ids = jnp.full(tokens.shape, m)
    np.testing.assert_allclose(
        model3.apply(nn.meta.unbox(boxed3), tokens, modality_ids=ids),
        model1.apply(sliced, tokens), atol=ATOL,
    )


@pytest.mark.parametrize("dispatch", ["select", "grouped"])
def test_relabelling_modalities_with_their_parameters_leaves_outputs_unchanged(dispatch):
    _, model, boxed, tokens, ids = _setup(3, **SETUPS[dispatch])
    perm = np.array([2, 0, 1])  # modality m becomes perm[m]
    inverse = np.argsort(perm)
    permuted = _map_modality_axis(boxed, lambda v, ax: np.take(v, inverse, axis=ax))
    np.testing.assert_allclose(
        model.apply(permuted, tokens, modality_ids=perm[np.asarray(ids)]),
        model.apply(nn.meta.unbox(boxed), tokens, modality_ids=ids), atol=ATOL,
    )


def test_modality_b_token_changes_later_modality_a_outputs_never_earlier_ones():
    _, model, boxed, tokens, _ = _setup(3)
    params = nn.meta.unbox(boxed)
    row = np.array([0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0])
    ids = np.broadcast_to(row, tokens.shape)
    s = 4  # a modality-1 ("B") token
    perturbed = np.array(tokens)
    perturbed[0, s] = (perturbed[0, s] + 7) % 32
    base = np.asarray(model.apply(params, tokens, modality_ids=ids)[0])
    new = np.asarray(model.apply(params, perturbed, modality_ids=ids)[0])
    diff = np.abs(new - base).max(-1)
    np.testing.assert_array_equal(diff[:s], 0.0)  # causality across modalities: exact
    later_a = np.array([t for t in range(s + 1, 16) if row[t] == 0])
    assert bool(np.all(diff[later_a] > 1e-4))  # one global attention over all modalities


@functools.cache
def _grad_fn(dispatch):
    _, model, _, tokens, _ = _setup(3, **SETUPS[dispatch])

    def loss(params, ids):
        return jnp.mean(jax.nn.log_softmax(model.apply(params, tokens, modality_ids=ids)) ** 2)

    return jax.jit(jax.grad(loss))


def _untied_slices(grads, boxed, index):
    """[len(index), ...] slices along the modality axis of every untied gradient."""
    out = []
    regrouped = jax.tree.map(
        lambda b, g: b.replace_boxed(g) if isinstance(b, nn.LogicallyPartitioned) else g,
        boxed, grads, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    _map_modality_axis(regrouped, lambda v, ax: out.append(np.moveaxis(v, ax, 0)[index]))
    return out


@pytest.mark.parametrize("dispatch", ["select", "grouped"])
def test_absent_modality_receives_exactly_zero_gradient(dispatch):
    _, _, boxed, tokens, _ = _setup(3)
    ids = np.broadcast_to(np.arange(16) % 2, tokens.shape)  # modality 2 absent
    grads = _grad_fn(dispatch)(nn.meta.unbox(boxed), ids)
    untied = _untied_slices(grads, boxed, np.array([2, 0]))  # [absent, present]
    for g in untied:
        assert float(np.abs(g[0]).max()) == 0.0
        assert float(np.abs(g[1]).max()) > 0.0
    assert len(untied) == 12  # per layer: 2 norms, Q/K/V/O, 2 QK-norms, 3 FFN; + final norm


def test_grouped_path_equals_select_path_values_and_gradients():
    _, model_s, boxed, tokens, ids = _setup(3)
    _, model_g, *_ = _setup(3, **GROUPED)
    params = nn.meta.unbox(boxed)
    np.testing.assert_allclose(model_g.apply(params, tokens, modality_ids=ids),
                               model_s.apply(params, tokens, modality_ids=ids), atol=ATOL)
    gs, gg = _grad_fn("select")(params, ids), _grad_fn("grouped")(params, ids)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), gg, gs)


def test_mot_options_are_validated():
    with pytest.raises(ConfigError, match="model.mot.grouped_impl"):
        tiny_model_config(mot=dict(grouped_impl="sorted"))
    with pytest.raises(ConfigError, match="model.mot.tile_size"):
        tiny_model_config(mot=dict(tile_size=0))


def test_mot_with_gla_trains_from_a_config_alone(tmp_path):
    from jaxformers.train import train_and_evaluate

    config = tiny_train_config(**{
        "model.token_mixer": "gla", "model.num_modalities": 2,
        "model.modality_dispatch": "grouped", "model.norm_placement": "after_branch",
        "model.num_layers": 1, "num_steps": 2, "eval_every": 2, "eval_batches": 1,
        "checkpoint_every": 0,
    })
    config.data = dict(name="two_modality", seq_len=16, num_validation=16)
    config.model.vocab_size = 264
    metrics = train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
    assert np.isfinite(metrics["loss"]) and "loss_m0" in metrics and "loss_m1" in metrics


@pytest.mark.parametrize("dispatch", ["select", "grouped"])
def test_kv_cache_generation_routes_each_token_through_its_modality(dispatch):
    """Greedy decoding with the cache == argmax of a full forward pass with the true modalities."""
    extra = {} if dispatch == "select" else GROUPED
    cfg, model, boxed, _, _ = _setup(2, **extra)
    params = nn.meta.unbox(boxed)
    rule = ModalityByVocabRange((cfg.vocab_size // 2,))
    prompt = jnp.array([[1, 2, 20, 3], [25, 4, 5, 30]], jnp.int32)  # both modalities present
    out = generate(model.module, params, prompt, jax.random.PRNGKey(0), max_new_tokens=8,
                   temperature=0.0, modality_of_token=rule)
    logits = model.apply(params, out[:, :-1], modality_ids=rule(out[:, :-1]))  # causal: one pass
    np.testing.assert_array_equal(logits[:, 3:].argmax(-1), out[:, 4:])
    # The routing matters: every token read as modality 0 gives a different continuation.
    only_text = generate(model.module, params, prompt, jax.random.PRNGKey(0), max_new_tokens=8,
                         temperature=0.0, prompt_modality_ids=jnp.zeros_like(prompt),
                         modality_of_token=ConstantModality(0))
    assert not np.array_equal(only_text, out)
    with pytest.raises(ValueError, match="modality_of_token"):
        generate(model.module, params, prompt, jax.random.PRNGKey(0), max_new_tokens=2)
