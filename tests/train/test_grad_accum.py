"""Gradient accumulation (config.grad_accum_steps): one step on a batch of 32 equals the same
batch as 4 accumulated micro-batches of 8 on a 4-device data-parallel mesh;
MoE auxiliary losses and the MoT per-modality losses go through the scan; a step count that does
not divide the per-device batch is one line. Experiments run on one device unless the test is
about the mesh: the 8 simulated devices of the conftest would compile every step 8-way."""

import jax
import numpy as np
import pytest

from jaxformers.config import ConfigError
from jaxformers.testing import tiny_train_config
from jaxformers.train.experiment import Experiment, split_micro_batches

ONE_DEVICE = jax.devices()[:1]


def _one_step(accum, devices=ONE_DEVICE, start=None, **overrides):
    """(params, metrics) after one step, and the host copy of the state it started from. `start`:
    such a copy to step from instead of a fresh init (one init compile per model, not per mesh)."""
    config = tiny_train_config(batch_size=32, grad_accum_steps=accum, **overrides)
    exp = Experiment(config, devices=devices)
    state = exp.fresh_state() if start is None else jax.device_put(start, exp.state_shardings)
    start = jax.device_get(state)  # before the step donates it
    batch = exp.global_batch(next(exp.make_iterator("train")))
    new_state, metrics = exp.train_step(state, batch)
    return (jax.device_get(new_state.params), jax.device_get(metrics)), start


@pytest.fixture(scope="module")
def whole_batch():
    """One unaccumulated step on one device: the reference step, and its initial state."""
    return _one_step(1)


def _assert_same_step(step, reference):
    (params, metrics), (ref_params, ref_metrics) = step, reference
    np.testing.assert_allclose(metrics["total_loss"], ref_metrics["total_loss"], rtol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], ref_metrics["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert set(metrics) == set(ref_metrics)


def test_4_accumulated_micro_batches_of_8_on_a_4_device_mesh_equal_one_step_on_batch_32(whole_batch):
    """Each device holds 8 rows, 2 of every micro-batch (interleaved split: no data moves); the
    accumulated, data-parallel step equals the plain step on one device (one claim, one compile:
    accumulation and the mesh together)."""
    assert len(jax.devices()) >= 4
    reference, start = whole_batch
    _assert_same_step(_one_step(4, devices=jax.devices()[:4], start=start)[0], reference)


def test_micro_batches_interleave_rows_and_cover_the_batch():
    x = np.arange(12)
    micro = split_micro_batches({"x": x}, 3)["x"]
    np.testing.assert_array_equal(micro, [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]])


def test_moe_aux_loss_and_mot_per_modality_metrics_are_accumulated():
    (_, moe), _ = _one_step(4, **{"model.feed_forward": "moe", "model.moe.load_balance_weight": 0.01})
    aux = [k for k in moe if "balance" in k or "aux" in k]
    assert aux and all(np.isfinite(moe[k]) for k in aux)
    mot_overrides = {
        "model.num_modalities": 2,
        "data": dict(name="two_modality", variant="synthetic", seq_len=16, num_validation=32),
    }
    (_, mot1), start = _one_step(1, **mot_overrides)
    (_, mot4), _ = _one_step(4, start=start, **mot_overrides)
    per_modality = [k for k in mot1 if k.startswith("loss_m")]
    assert per_modality
    for k in per_modality:
        np.testing.assert_allclose(mot4[k], mot1[k], rtol=1e-5)


def test_accum_steps_not_dividing_the_per_device_batch_is_one_line():
    with pytest.raises(ConfigError, match=r"config.grad_accum_steps=3 does not divide") as info:
        Experiment(tiny_train_config(grad_accum_steps=3))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"config.grad_accum_steps=0 must be a positive int"):
        Experiment(tiny_train_config(grad_accum_steps=0))
