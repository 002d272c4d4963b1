"""The CPU fast paths (model.weight_grad_matmul, model.layer_loop) change speed, never the model.

For every model family that goes through `nn.projection.Projection` and the scanned layer stack
(decoder with each token mixer and each feed-forward, MoT with both dispatches, TokenFormer, the
MLM-U encoder-decoder), 3 training steps from one initialisation with the fast paths on
("canonical", "unroll") and off ("xla", "scan") give the same parameter tree, losses equal to 1e-5
and parameters equal to float32 tolerance: the two paths compute the same sums in a different order
and memory layout. Both paths initialise the same parameters, bit for bit. (The LSA
model has neither projections nor a layer stack, so the options do not reach it.) A checkpoint
written one way resumes in a run built the other way.
"""

import jax
import numpy as np
import pytest

from jaxformers.config import ConfigError, model_config_from
from jaxformers.testing import tiny_train_config
from jaxformers.train import train_and_evaluate
from jaxformers.train.experiment import Experiment
from jaxformers.train.metrics import read_metrics

ON = {"weight_grad_matmul": "canonical", "layer_loop": "unroll"}
OFF = {"weight_grad_matmul": "xla", "layer_loop": "scan"}

MAZES = dict(name="mazes", grid_n=3, num_train=64, num_validation=16, maze_seed=0)
TWO_MODALITY = dict(name="two_modality", seq_len=16)
FAMILIES = {
    "attention+swiglu": {},
    "gla+moe": {
        "model.token_mixer": "gla",
        "model.feed_forward": "moe",
        "model.moe": dict(num_experts=4, k=2),
        "model.gla": dict(chunk_size=8),
    },
    "linear_attention+dense_mlp": {
        "model.token_mixer": "linear_attention",
        "model.feed_forward": "dense_mlp",
        "model.linear_attention": dict(chunk_size=8),
    },
    "mot_grouped": {
        "model.num_modalities": 2,
        "model.modality_dispatch": "grouped",
        "model.mot": dict(tile_size=8),
        "model.vocab_size": 256,
        "data": TWO_MODALITY,
    },
    "mot_select": {"model.num_modalities": 2, "model.vocab_size": 256, "data": TWO_MODALITY},
    "tokenformer": {
        "model.projections": "pattention",
        "model.feed_forward": "pattention",
        "model.pattention": dict(attn_tokens=8, ffn_tokens=16),
    },
    "encdec_mlm_u": {
        "model_family": "encdec",
        "objective": "mlm_u",
        "model.vocab_size": 24,
        "model.max_len": 64,
        "data": MAZES,
        "batch_size": 8,
    },
}


def _experiment(overrides, fast):
    config = tiny_train_config(**overrides)
    config.model.update(fast)
    config.mesh.update(data=1, fsdp=1, tensor=1)
    return Experiment(config, devices=jax.devices()[:1])


def _train(exp, start, batch, steps=3):
    """`steps` train steps of `exp` from the host copy `start` of a state (the step donates it)."""
    state, losses = jax.device_put(start, exp.state_shardings), []
    for _ in range(steps):
        state, metrics = exp.train_step(state, batch)
        losses.append(float(metrics["total_loss"]))
    return np.array(losses), jax.device_get(state.params)


def _assert_same_params(params_a, params_b, **tolerance):
    assert jax.tree.structure(params_a) == jax.tree.structure(params_b)
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        if tolerance:  # none: abstract trees, only structure, shapes and dtypes
            np.testing.assert_allclose(a, b, **tolerance)


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_paths_on_and_off_train_the_same_model(family):
    # Both runs start from one initialisation (the init with the fast paths on is compared with
    # the one with them off in the next test): the abstract parameter trees must agree first.
    exp_on, exp_off = _experiment(FAMILIES[family], ON), _experiment(FAMILIES[family], OFF)
    _assert_same_params(exp_on.abstract_state.params, exp_off.abstract_state.params)
    start = jax.device_get(exp_off.fresh_state())
    batch = exp_off.global_batch(next(exp_off.make_iterator("train")))
    losses_on, params_on = _train(exp_on, start, batch)
    losses_off, params_off = _train(exp_off, start, batch)
    np.testing.assert_allclose(losses_on, losses_off, rtol=1e-5, atol=1e-5)
    _assert_same_params(params_on, params_off, rtol=1e-4, atol=1e-5)


def test_fast_paths_on_and_off_initialise_the_same_parameters():
    """The fast paths reach initialisation only through the layer loop: every family's layers are
    `models.decoder.layer_stack` (one nn.scan, unrolled or not, same split RNGs), and the canonical
    weight-gradient matmul changes only the backward pass. So one family checks it for all."""
    exp_on, exp_off = _experiment({}, ON), _experiment({}, OFF)
    _assert_same_params(
        jax.device_get(exp_on.fresh_state().params),
        jax.device_get(exp_off.fresh_state().params),
        rtol=0,
        atol=0,
    )


def test_a_checkpoint_written_scanned_resumes_unrolled(tmp_path):
    config = tiny_train_config(num_steps=4, checkpoint_every=2, eval_every=0)
    config.model.update(OFF)
    train_and_evaluate(config, tmp_path / "run", stop_at_step=2)
    config.model.update(ON)
    train_and_evaluate(config, tmp_path / "run")  # resumes at step 2 with the other layout
    straight = tiny_train_config(num_steps=4, checkpoint_every=0, eval_every=0)
    straight.model.update(OFF)
    train_and_evaluate(straight, tmp_path / "straight")
    resumed = [r["total_loss"] for r in read_metrics(str(tmp_path / "run"), "train")]
    np.testing.assert_allclose(
        resumed, [r["total_loss"] for r in read_metrics(str(tmp_path / "straight"), "train")], rtol=1e-5
    )


@pytest.mark.parametrize("field", ["weight_grad_matmul", "layer_loop"])
def test_an_unknown_fast_path_value_is_a_one_line_config_error(field):
    with pytest.raises(ConfigError, match=f"model.{field}") as error:
        model_config_from({field: "fast"})
    assert "\n" not in str(error.value)


def test_auto_turns_the_fast_paths_on_for_the_cpu_backend_only(monkeypatch):
    cfg = model_config_from({})
    assert cfg.weight_grad_matmul == cfg.layer_loop == "auto"
    assert cfg.canonical_matmul and cfg.unroll_layers  # the tests run on the CPU backend
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not cfg.canonical_matmul and not cfg.unroll_layers
    forced = model_config_from(ON)
    assert forced.canonical_matmul and forced.unroll_layers
