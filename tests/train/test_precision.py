"""The mixed-precision policy (model.precision): each dtype appears where the policy puts it
(float32 master weights and optimizer state, compute-dtype activations, output-dtype logits, a
float32 loss, gradients in the gradient dtype), a bf16 step's loss is close to fp32's, and a bad
dtype name or an old `model.dtype` field is handled in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.models.registry import build_model
from jaxformers.objectives.next_token import next_token_loss
from jaxformers.precision import value_and_grad_in
from jaxformers.testing import tiny_model_config, tiny_train_config
from jaxformers.train import checkpoint
from jaxformers.train.experiment import Experiment

ONE_DEVICE = jax.devices()[:1]
BF16 = {"model.precision.compute": "bfloat16", "model.precision.gradients": "bfloat16"}
TOKENS = jnp.zeros((2, 16), jnp.int32)


@pytest.fixture(scope="module")
def runs():
    """Two steps of the tiny synthetic LM in float32 and in bf16 compute + bf16 gradients, from the
    same initial parameters on the same batches: (final state, per-step losses)."""
    out, start = {}, None
    for name, overrides in (("f32", {}), ("bf16", BF16)):
        exp = Experiment(tiny_train_config(**overrides), devices=ONE_DEVICE)
        if start is None:  # one init (the policy keeps float32 masters): bf16 starts from f32's
            start = jax.device_get(exp.fresh_state())
        state, batches = jax.device_put(start, exp.state_shardings), exp.make_iterator("train")
        losses = []
        for _ in range(2):
            state, metrics = exp.train_step(state, exp.global_batch(next(batches)))
            losses.append(float(metrics["loss"]))
        out[name] = (jax.device_get(state), losses)
    return out


def test_bf16_step_loss_is_close_to_float32_but_computed_in_bf16(runs):
    (_, f32), (_, bf16) = runs["f32"], runs["bf16"]
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 2e-3 per op): the loss of the same
    # parameters differs by about that much, and by a little more after one bf16-gradient update
    np.testing.assert_allclose(bf16, f32, rtol=2e-2)
    assert bf16[0] != f32[0]  # the bf16 step did run in bf16


def test_training_keeps_float32_master_weights_and_optimizer_state(runs):
    state, _ = runs["bf16"]
    floats = [
        x for x in jax.tree.leaves((state.params, state.opt_state)) if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    assert floats and all(x.dtype == jnp.float32 for x in floats)


def test_activations_in_compute_dtype_logits_in_output_dtype_loss_in_float32():
    output = "bfloat16"  # the float32 default is test_decoder's
    cfg = tiny_model_config(precision=dict(compute="bfloat16", output=output))
    model = build_model("decoder", cfg)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), TOKENS)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    logits, sown = jax.eval_shape(lambda v: model.apply(v, TOKENS, mutable=["intermediates"]), variables)
    assert logits.dtype == jnp.dtype(output)
    blocks = sown["intermediates"]["layers"]
    assert {x.dtype for x in jax.tree.leaves(blocks)} == {jnp.dtype(jnp.bfloat16)}
    batch = {"inputs": TOKENS, "targets": TOKENS}
    loss, _ = jax.eval_shape(
        lambda v: next_token_loss(model, v, batch, rng=jax.random.PRNGKey(0), step=0, train=True), variables
    )
    assert loss.dtype == jnp.float32


@pytest.mark.parametrize("gradients", ["float32", "bfloat16"])
def test_weight_gradients_come_out_in_the_gradient_dtype(gradients):
    cfg = tiny_model_config(precision=dict(compute="bfloat16", gradients=gradients))
    model = build_model("decoder", cfg)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), TOKENS)["params"]
    batch = {"inputs": TOKENS, "targets": TOKENS}

    def loss_fn(p):
        return next_token_loss(model, {"params": p}, batch, rng=jax.random.PRNGKey(0), step=0, train=True)

    (loss, _), grads = jax.eval_shape(value_and_grad_in(loss_fn, jnp.dtype(gradients)), params)
    assert loss.dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(gradients)}


@pytest.mark.parametrize("field", ["params", "compute", "output", "gradients"])
def test_an_unknown_dtype_name_is_one_line_naming_the_field(field):
    for name in ("bf17", "half"):  # "half" is float16 or bfloat16 depending on the platform in jmp
        with pytest.raises(ConfigError, match=rf"^model\.precision\.{field}='{name}'; expected") as e:
            model_config_from({"precision": {field: name}})
        assert "\n" not in str(e.value)


def test_gradient_dtype_must_be_the_master_or_the_compute_dtype_and_masters_float32():
    with pytest.raises(ConfigError, match=r"model\.precision\.gradients='float16' must be"):
        model_config_from({"precision": {"compute": "bfloat16", "gradients": "float16"}})
    with pytest.raises(ConfigError, match=r"model\.precision\.params='bfloat16': training keeps"):
        Experiment(tiny_train_config(**{"model.precision.params": "bfloat16"}), devices=ONE_DEVICE)


def test_old_dtype_fields_are_read_as_the_policy_and_old_bf16_runs_resume_in_bf16():
    cfg = tiny_model_config(dtype="bfloat16", param_dtype="float32")
    assert (cfg.precision.compute, cfg.precision.params) == ("bfloat16", "float32")
    with pytest.raises(ConfigError, match=r"model\.dtype='float16' \(the old name"):
        tiny_model_config(dtype="float16", precision=dict(compute="bfloat16"))
    stored = {"model.dtype": "bfloat16", "model.param_dtype": "float32", "data.name": "synthetic"}
    assert checkpoint.legacy_values(stored) == {"model.precision.compute": "bfloat16"}
    assert checkpoint.legacy_values(dict(stored, **{"model.dtype": "float32"})) == {}
