"""The in-context classifier: token layout, the query's label is never read, the context's labels
are, causal structure, and the loss trains."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.data import icl_bursty
from jaxformers.models.icl_classifier import ICLClassifier, sequence_tokens
from jaxformers.objectives.icl_classification import icl_classification_loss

DATA = ml_collections.ConfigDict(
    dict(classes=64, holdout_classes=8, labels=8, dim=8, context=8, burstiness=4)
)


def _model(max_len=17):
    cfg = model_config_from(
        dict(vocab_size=8, embed_dim=16, num_layers=2, num_heads=2, max_len=max_len, mlp_dim=32)
    )
    return ICLClassifier(cfg)


def test_sequence_tokens_alternate_exemplar_and_label_then_the_query():
    items, labels = jnp.arange(6.0).reshape(1, 3, 2), -jnp.arange(4.0).reshape(1, 2, 2)
    t = sequence_tokens(items, labels)
    np.testing.assert_array_equal(
        t[0], np.stack([items[0, 0], labels[0, 0], items[0, 1], labels[0, 1], items[0, 2]])
    )


def test_logits_ignore_the_query_label_use_the_context_and_training_lowers_the_loss():
    model = _model()
    batch = next(
        icl_bursty.build(DATA, split="train", seed=0, batch_size=32, process_index=0, process_count=1)
    )
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    opt = optax.adam(3e-3)

    @jax.jit  # init, the dependence checks and 30 Adam steps in one compilation
    def run(key):
        params = model.init(key, batch["inputs"], batch["labels"])
        base = model.apply(params, batch["inputs"], batch["labels"])
        q_label = model.apply(params, batch["inputs"], batch["labels"].at[:, -1].add(1) % 8)
        ctx_label = model.apply(params, batch["inputs"], batch["labels"].at[:, 0].add(1) % 8)
        # the query's exemplar is read
        items = batch["inputs"].at[:, -1].add(1.0)
        query_item = model.apply(params, items, batch["labels"])

        def loss(p):
            return icl_classification_loss(model, p, batch, rng=None, step=0, train=True)[0]

        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (trained, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=30)
        return base, q_label, ctx_label, query_item, loss(params), loss(trained)

    base, q_label, ctx_label, query_item, before, after = run(jax.random.key(1))
    np.testing.assert_array_equal(base, q_label)
    assert np.abs(base - ctx_label).max() > 1e-4 and np.abs(base - query_item).max() > 1e-4
    assert base.shape == (32, 8) and float(after) < 0.8 * float(before)


def test_a_sequence_longer_than_max_len_is_a_one_line_config_error():
    model = _model(max_len=15)
    items, labels = jnp.zeros((1, 9, 8)), jnp.zeros((1, 9), jnp.int32)
    with pytest.raises(ConfigError, match="max_len=15"):
        model.init(jax.random.key(0), items, labels)


def test_evaluator_scores_icl_on_held_out_classes_and_iwl_without_support():
    model = _model()
    items, labels = icl_bursty.evaluation_prompts(DATA, 64)["icl"]
    assert np.all(np.isin(np.asarray(labels[:, -1]), np.asarray(labels[:, :-1])))  # answer is in context
    params = model.init(jax.random.key(0), items, labels)
    config = ml_collections.ConfigDict(dict(data=DATA))
    out = icl_bursty.icl_iwl_accuracy(model, params, config)
    compiles = []

    def listener(event, duration, **kw):
        if "backend_compile" in event:
            compiles.append(kw.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:  # the next evaluation of a run reuses the prompts and the compiled model
        again = icl_bursty.icl_iwl_accuracy(model, params, config)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert again == out and compiles == []
    assert set(out) == {"icl_accuracy", "iwl_accuracy", "icl_label_in_context"}
    assert 0 <= out["icl_accuracy"] <= out["icl_label_in_context"] <= 1 and 0 <= out["iwl_accuracy"] <= 1
