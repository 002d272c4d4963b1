"""Resuming an "mtp" run with another head count is refused in one line naming the field."""

import pytest

from jaxformers.testing import tiny_train_config
from jaxformers.train import train_and_evaluate
from jaxformers.train.checkpoint import CheckpointError


def test_resume_with_another_num_future_tokens_is_a_one_line_error(tmp_path):
    cfg = tiny_train_config(
        num_steps=4,
        checkpoint_every=2,
        eval_every=0,
        model_family="mtp",
        objective="mtp",
        **{"model.mtp.num_future_tokens": 2},
    )
    train_and_evaluate(cfg, tmp_path, stop_at_step=2)
    cfg.model.mtp.num_future_tokens = 4
    with pytest.raises(CheckpointError) as error:
        train_and_evaluate(cfg, tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "model.mtp.num_future_tokens: 2 -> 4" in message
