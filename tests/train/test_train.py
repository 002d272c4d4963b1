"""The training loop: learning, mesh independence, exact resume, checkpoint portability, errors."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from jaxformers.testing import tiny_train_config
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import latest_step, load_variables
from jaxformers.train.loop import NonFiniteLossError
from jaxformers.train.metrics import read_metrics


def _train_losses(workdir):
    return np.array([r["total_loss"] for r in read_metrics(str(workdir), "train")])


# One 30-step run (8 devices, checkpoints and evaluation at 15 and 30) read by the tests of learning,
# exact resume, metrics files, init_from and the non-finite stop: they need a trained run, not
# their own. Checkpoints and evaluation do not change the training losses (the resume test checks
# them against a run that stopped at a checkpoint).
STRAIGHT = dict(num_steps=30, checkpoint_every=15, eval_every=15)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    train_and_evaluate(tiny_train_config(**STRAIGHT), workdir)
    return workdir


def test_tiny_run_lowers_the_loss(straight):
    losses = _train_losses(straight)
    assert len(losses) == 30
    assert losses[-5:].mean() < losses[:3].mean() - 0.3


@pytest.fixture(scope="module")
def single_device_losses(tmp_path_factory):
    cfg = tiny_train_config(eval_every=0, checkpoint_every=0)
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    workdir = tmp_path_factory.mktemp("single")
    train_and_evaluate(cfg, workdir, devices=jax.devices()[:1])
    return _train_losses(workdir)


@pytest.mark.parametrize("mesh", [(2, 2, 2), (8, 1, 1)])
def test_losses_do_not_depend_on_the_mesh(tmp_path, mesh, single_device_losses):
    cfg = tiny_train_config(eval_every=0, checkpoint_every=0)
    cfg.mesh.update(data=mesh[0], fsdp=mesh[1], tensor=mesh[2])
    train_and_evaluate(cfg, tmp_path / "mesh")
    np.testing.assert_allclose(_train_losses(tmp_path / "mesh"), single_device_losses, atol=1e-5)


def test_resume_is_bitwise_exact(tmp_path, straight):
    cfg = tiny_train_config(**STRAIGHT)
    train_and_evaluate(cfg, tmp_path / "pieces", stop_at_step=15)
    assert latest_step(str(tmp_path / "pieces")) == 15
    train_and_evaluate(cfg, tmp_path / "pieces")
    _, straight_vars, _ = load_variables(str(straight))
    _, pieces, step = load_variables(str(tmp_path / "pieces"))
    assert step == 30
    jax.tree.map(np.testing.assert_array_equal, straight_vars, pieces)
    np.testing.assert_array_equal(_train_losses(straight), _train_losses(tmp_path / "pieces"))


def test_checkpoint_from_8_devices_restores_on_1_and_continues(tmp_path):
    cfg = tiny_train_config(num_steps=12, checkpoint_every=6, eval_every=0)
    cfg.mesh.update(data=2, fsdp=2, tensor=2)
    train_and_evaluate(cfg, tmp_path, stop_at_step=6)
    cfg.mesh.update(data=1, fsdp=1, tensor=1)
    train_and_evaluate(cfg, tmp_path, devices=jax.devices()[:1])
    assert latest_step(str(tmp_path)) == 12
    steps = [r["step"] for r in read_metrics(str(tmp_path), "train")]
    assert steps == list(range(1, 13))


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, straight):
    workdir = shutil.copytree(straight, tmp_path / "run")  # resumes at its step-30 checkpoint
    cfg = tiny_train_config(**dict(STRAIGHT, num_steps=40))
    cfg.learning_rate = 1e35
    cfg.grad_clip = 1e35
    with pytest.raises(NonFiniteLossError, match="non-finite .* at step .* last good checkpoint"):
        train_and_evaluate(cfg, workdir)
    _, variables, step = load_variables(str(workdir))
    assert step == 30
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(variables))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"learning_rat": 1.0}, "unknown config key config.learning_rat"),
        ({"model.num_layer": 2}, "unknown config key model.num_layer"),
        ({"model.embed_dim": "32"}, "model.embed_dim='32' has type str"),
        ({"mesh.data": 3}, "does not divide the 8 available devices"),
        ({"batch_size": 6}, "batch_size=6 is not divisible by the data-parallel mesh size"),
        ({"init_from.workdir": "/nonexistent/run"}, "no checkpoints in workdir '/nonexistent/run'"),
        ({"objective": "nope"}, "config.objective='nope'"),
        ({"data.name": "nope"}, "config.data.name='nope'"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_the_field(tmp_path, overrides, message):
    cfg = tiny_train_config(checkpoint_every=0, eval_every=0)
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        with node.ignore_type():
            node[leaf] = value
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        train_and_evaluate(cfg, tmp_path)
    assert "\n" not in str(info.value)


def test_init_from_identity_starts_at_step_0_with_fresh_optimizer(tmp_path, straight):
    cfg = tiny_train_config(num_steps=1, checkpoint_every=0, eval_every=0)
    cfg.init_from.workdir = str(straight)
    train_and_evaluate(cfg, tmp_path / "child")
    first = read_metrics(str(tmp_path / "child"), "train")[0]
    assert first["step"] == 1 and first["learning_rate"] == 0.0  # warm-up restarted at 0
    base_rows = read_metrics(str(straight), "train")
    # The child's first loss is the base's trained loss level, not a fresh init's.
    assert first["loss"] < base_rows[0]["loss"] - 0.1


def test_metrics_are_written_as_jsonl_and_tensorboard(straight):
    rows = [json.loads(x) for x in open(straight / "metrics.jsonl")]
    assert {"train", "validation"} == {r["split"] for r in rows}
    train_row = [r for r in rows if r["split"] == "train"][-1]
    for key in ("loss", "tokens_per_s", "steps_per_s", "mfu", "flops_per_token", "grad_norm"):
        assert np.isfinite(train_row[key]), key
    assert os.listdir(straight / "tensorboard")
