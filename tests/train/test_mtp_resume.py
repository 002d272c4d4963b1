"""Resuming an "mtp" run: another head count is refused in one line naming the field; the
one-head backward (same arrays, same gradients) may be switched."""

import json

import jax
import pytest

from jaxformers.testing import tiny_train_config
from jaxformers.train import checkpoint as ckpt
from jaxformers.train import train_and_evaluate
from jaxformers.train.experiment import Experiment


def test_resume_with_another_num_future_tokens_is_a_one_line_error(tmp_path):
    cfg = tiny_train_config(model_family="mtp", objective="mtp", **{"model.mtp.num_future_tokens": 2})
    # A checkpoint of the n = 2 run as the training loop writes it (no step needs compiling; one
    # device: the init's compile is the test's cost, and an 8-way sharded one is larger).
    exp = Experiment(cfg, str(tmp_path), devices=jax.devices()[:1])
    manager = ckpt.make_manager(str(tmp_path))
    ckpt.save(manager, exp.fresh_state(), data_state=exp.make_iterator("train").get_state(),
              config=cfg, force=True)  # fmt: skip
    manager.wait_until_finished()
    manager.close()
    cfg.model.mtp.num_future_tokens = 4
    with pytest.raises(ckpt.CheckpointError) as error:
        train_and_evaluate(cfg, tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "model.mtp.num_future_tokens: 2 -> 4" in message


def test_the_one_head_backward_may_be_switched_on_resume_but_not_the_head_count():
    # The one-head-at-a-time backward stores the same arrays and computes the same gradients
    # (tests/models/test_mtp_sequential.py), so resuming with it switched on is allowed.
    cfg = tiny_train_config(model_family="mtp", objective="mtp", **{"model.mtp.num_future_tokens": 2})
    stored = json.loads(cfg.to_json_best_effort())
    cfg.model.mtp.backward = "one_head_at_a_time"
    assert ckpt.config_differences(stored, cfg) == []
    cfg.model.mtp.num_future_tokens = 4
    assert ckpt.config_differences(stored, cfg) == ["model.mtp.num_future_tokens: 2 -> 4"]
